#!/usr/bin/env python3
"""Chat forms (run.c IV.2) in `make test` (cc, make, python3 only).

For each directory of tests/fixtures_chat/ (made by
tests/gen_chat_fixtures.py with transformers: a tiny random GPT-2 with a
ChatML, ChatML-with-its-own-system-message, Zephyr or Llama 3 chat template):
  - export.py records the form (SPEC 1b, offsets 148 and 152) and the
    template's own system message;
  - `run --tokenize --chat` gives, for each conversation, the ids
    apply_chat_template gave (expected.json);
  - `run -i -n 0` under a pseudo-terminal: after each line the context holds
    exactly the ids of the conversation so far (empty replies), as the
    `[left/n_ctx]` prompt shows;
then what export.py does with templates it does not write (a note, no chat
field), and what run refuses (a bad chat field, options that need a chat).
tests/hf_chat_templates.py runs check_form live against transformers.
"""
import errno
import json
import os
import pty
import re
import select
import shutil
import signal
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402
import chat_forms as F  # noqa: E402

EXPORT = os.path.join(ROOT, "export.py")
FIXTURES = os.path.join(HERE, "fixtures_chat")
BUILD = os.path.join(HERE, "build", "chat")


def export(hf_dir, out):
    return run_cmd([sys.executable, EXPORT, hf_dir, out])


def header_u32(path, offset):
    with open(path, "rb") as f:
        return struct.unpack_from("<I", f.read(offset + 4), offset)[0]


def interactive(model, lines, extra=(), timeout=60):
    """`run MODEL -i -n 0 ...` on a pseudo-terminal, typing `lines`; returns
    the context left before each line and at the end, and the exit code."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(RUN, [RUN, model, "-i", "-n", "0", "-t", "0", *extra])
    out = b""

    def read_prompt():
        nonlocal out
        end = time.time() + timeout
        start = len(out)
        while time.time() < end:
            m = re.search(rb"\[(\d+)/(\d+)\] > ", out[start:])
            if m:
                return int(m.group(1))
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(fd, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:
                        return None
                    raise
                if not data:
                    return None
                out += data
        return None

    left = [read_prompt()]
    for line in lines:
        os.write(fd, line.encode() + b"\n")
        left.append(read_prompt())
    os.write(fd, b"\x04")
    code = None
    end = time.time() + timeout
    while time.time() < end:
        p, status = os.waitpid(pid, os.WNOHANG)
        if p:
            code = os.waitstatus_to_exitcode(status)
            break
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                pass
    if code is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(fd)
    return left, code, out


def check_form(h, name, hf_dir, expected, build):
    """Export hf_dir and check run's conversations against `expected`
    (chat_forms.expected)."""
    _template, _specials, _eos, _bos, code = F.FORMS[name]
    model = os.path.join(build, name + ".bin")
    r = export(hf_dir, model)
    if not h.check(f"{name}: export.py exports it", r.returncode == 0, r.stderr.decode(errors="replace")):
        return
    form = F.FORMS[name]
    h.check(f"{name}: export.py says which chat form", b"chat template: " in r.stderr, r.stderr[-300:])
    h.check(f"{name}: format version 2 with chat form {code} at offset 148",
            header_u32(model, 8) == 2 and header_u32(model, 148) == code,
            (header_u32(model, 8), header_u32(model, 148)))
    system = header_u32(model, 152)
    h.check(f"{name}: the template's own system message is recorded (and only then)",
            (system > 0) == (name == "chatml_system"), system)
    for conv in expected["conversations"]:
        r = run_cmd([RUN, model, "--tokenize", "--chat"], input=conv["lines"])
        got = [int(x) for x in r.stdout.split()] if r.returncode == 0 else None
        h.check(f"{name}: --tokenize --chat, {conv['conversation']}: the ids of apply_chat_template "
                f"({len(conv['ids'])} ids)", got == conv["ids"],
                f"exit {r.returncode} {r.stderr[-200:]!r}\ngot  {got}\nwant {conv['ids']}\n"
                f"text {conv['text']!r}")
    r = run_cmd([RUN, model, "--tokenize", "--chat", "--pieces"], input=expected["conversations"][0]["lines"])
    h.check(f"{name}: --chat --pieces labels every id", r.returncode == 0 and
            len(r.stdout.splitlines()) == len(expected["conversations"][0]["ids"]), r.stderr[-200:])
    # -i: each line is a user turn, the (empty) reply is closed as the form closes a turn
    extra = () if name == "chatml_system" else ("--system", F.INTERACTIVE_SYSTEM)
    left, code_i, out = interactive(model, F.INTERACTIVE_LINES, extra)
    n_ctx = 160
    want = [n_ctx] + [n_ctx - n for n in expected["interactive"]]
    h.check(f"{name}: -i -n 0 on a terminal: the context after each line is the conversation so far "
            f"({want})", left == want and code_i == 0, f"left {left} exit {code_i}\n{out[-400:]!r}")
    h.check(f"{name}: -i says it is a chat, naming the form", b"run: chat (" in out, out[:300])


def refusals(h):
    """Templates export.py does not write, and what run refuses."""
    base = os.path.join(FIXTURES, "llama3", "hf")
    cases = [
        ("unknown template", "{{ messages }}", "not one run writes"),
        ("Llama 3.1-style template", "Cutting Knowledge Date {{ x }}<|start_header_id|><|eot_id|>", "Llama 3.1"),
        ("ChatML template but no <|im_start|> token", "<|im_start|><|im_end|>", "lacks"),
    ]
    for what, template, msg in cases:
        d = os.path.join(BUILD, "refuse", "hf")
        shutil.rmtree(os.path.dirname(d), ignore_errors=True)
        shutil.copytree(base, d)
        with open(os.path.join(d, "chat_template.jinja"), "w") as f:
            f.write(template)
        out = os.path.join(BUILD, "refuse.bin")
        r = export(d, out)
        h.check(f"export, {what}: exported with a warning naming the file, no chat form (format 1)",
                r.returncode == 0 and msg.encode() in r.stderr and b"chat_template.jinja" in r.stderr
                and header_u32(out, 8) == 1, r.stderr[-300:])
    # the template given in tokenizer_config.json (older transformers), as a list with "default"
    d = os.path.join(BUILD, "in_config", "hf")
    shutil.rmtree(os.path.dirname(d), ignore_errors=True)
    shutil.copytree(os.path.join(FIXTURES, "chatml", "hf"), d)
    with open(os.path.join(d, "chat_template.jinja")) as f:
        template = f.read()
    os.remove(os.path.join(d, "chat_template.jinja"))
    with open(os.path.join(d, "tokenizer_config.json")) as f:
        cfg = json.load(f)
    cfg["chat_template"] = [{"name": "tool_use", "template": "{{ x }}"}, {"name": "default", "template": template}]
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f)
    out = os.path.join(BUILD, "in_config.bin")
    r = export(d, out)
    h.check("export: a chat_template list in tokenizer_config.json: its 'default' is recognised",
            r.returncode == 0 and header_u32(out, 148) == 1, r.stderr[-300:])
    # chat_template.json (what some transformers versions write) comes before tokenizer_config.json
    with open(os.path.join(d, "chat_template.json"), "w") as f:
        json.dump({"chat_template": "{{ messages }}"}, f)
    r = export(d, out)
    h.check("export: chat_template.json is read before tokenizer_config.json (here: not a form run writes)",
            r.returncode == 0 and b"chat_template.json" in r.stderr and header_u32(out, 8) == 1, r.stderr[-300:])
    os.remove(os.path.join(d, "chat_template.json"))
    cfg["chat_template"] = 7
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f)
    r = export(d, out)
    h.check("export: chat_template neither text nor list: refused, naming the file",
            r.returncode == 1 and b"tokenizer_config.json: chat_template" in r.stderr, r.stderr[-300:])

    # run: the chat field is checked like every other
    good = os.path.join(BUILD, "chatml_system.bin")
    with open(good, "rb") as f:
        data = bytearray(f.read())
    for what, off, value, msg in [("chat form 4", 148, 4, b"unknown chat template code 4"),
                                  ("system message past the weights", 152, 1 << 20, b"runs into the weights"),
                                  ("a system message without a form", 148, 0, b"without a chat template")]:
        bad = bytearray(data)
        struct.pack_into("<I", bad, off, value)
        path = os.path.join(BUILD, "bad.bin")
        with open(path, "wb") as f:
            f.write(bad)
        r = run_cmd([RUN, path, "-p", "x", "-n", "1"])
        h.check(f"run refuses a checkpoint with {what} (exit 3, names the file)",
                r.returncode == 3 and msg in r.stderr and path.encode() in r.stderr, r.stderr)
    chat = os.path.join(BUILD, "chatml.bin")
    for what, args, code, msg in [
        ("--system without -i", [chat, "--system", "x", "-p", "y"], 2, b"give -i too"),
        ("--no-chat without -i", [chat, "--no-chat", "-p", "y"], 2, b"give -i too"),
        ("--system with --tokenize but no --chat", [chat, "--tokenize", "--system", "x", "-p", "y"], 2,
         b"give --chat too"),
        ("--chat without --tokenize", [chat, "--chat", "-p", "y"], 2, b"--chat does nothing"),
        ("--chat on a model without a chat form", [os.path.join(ROOT, "models", "model.bin"), "--tokenize",
                                                  "--chat", "-p", "user: y"], 2, b"has no chat template"),
        ("--chat with a line without a role", [chat, "--tokenize", "--chat", "-p", "hello"], 4,
         b"does not start with system:, user: or assistant:"),
        ("-i -p with a chat model", [chat, "-i", "-p", "y"], 2, b"is a chat model (ChatML)"),
        ("--system -i on a model without a chat form", [os.path.join(ROOT, "models", "model.bin"), "-i",
                                                       "--system", "x"], 2, b"has no chat template"),
    ]:
        r = run_cmd([RUN, *args], input=b"")
        h.check(f"run: {what}: exit {code}, says why", r.returncode == code and msg in r.stderr,
                f"exit {r.returncode} {r.stderr!r}")
    r = run_cmd([RUN, chat, "-i", "--no-chat", "-p", "Hello", "-n", "2", "-t", "0"], input=b"there\n")
    h.check("run: -i --no-chat on a chat model continues the text", r.returncode == 0, r.stderr)


def main():
    h = Harness("chat")
    os.makedirs(BUILD, exist_ok=True)
    if not h.check("./run is built (make run)", os.path.exists(RUN)):
        h.done()
    for name in F.FORMS:
        with open(os.path.join(FIXTURES, name, "expected.json")) as f:
            expected = json.load(f)
        check_form(h, name, os.path.join(FIXTURES, name, "hf"), expected, BUILD)
    refusals(h)
    h.done()


if __name__ == "__main__":
    main()
