#!/usr/bin/env python3
"""What a newcomer meets in a terminal and in scripts (standard library only).

Terminal behaviour is tested under a real pseudo-terminal (pty.fork: the
program's stdout and stderr are the terminal, its window has a known size,
Ctrl-C is a real SIGINT from the line discipline), pipes with pipes:
  - the text ends with a newline on a terminal, not in a pipe; a note on
    stderr starts on its own line; a view starts on its own line
  - the heatmap fits the window, marks cut keys, and TERM=dumb / NO_COLOR
    get no escape sequences
  - multi-byte text: labels show characters (我(1/3)), never escapes of valid
    UTF-8; --explain escapes quotes and backslashes; --pieces; the HTML page
  - input: one final newline of a stdin/-f prompt is dropped for generation
    (--keep-newline keeps it), other modes keep every byte
  - hints for the common mistakes; options that do nothing are errors;
    write targets are checked before any work
  - -i under a pty (Ctrl-C, Ctrl-D, context left) and with piped stdin
  - --context-shift; the sampling penalties and min-p against hand-computed
    choices from the model's own logits (--score --dump-logits)
"""
import errno
import json
import math
import os
import pty
import re
import select
import signal
import struct
import sys
import tempfile
import termios
import time
import fcntl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

h = Harness("terminal")
MODEL = os.path.join(ROOT, "models", "model.bin")
tmp = tempfile.mkdtemp(prefix="terminal-")
ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def run(*args, input=None, env=None):
    return run_cmd([RUN, MODEL, *args], input=input, env=env)


class Pty:
    """The program on a pseudo-terminal of `cols` columns."""

    def __init__(self, args, cols=80, env=None):
        pid, fd = pty.fork()
        if pid == 0:  # the child: its stdin, stdout and stderr are the terminal
            try:
                os.execve(RUN, [RUN, *args], dict(os.environ, **(env or {})))
            finally:
                os._exit(127)
        self.pid, self.fd, self.out = pid, fd, b""
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
        self.attrs = termios.tcgetattr(fd)

    def read_until(self, pattern, timeout=60):
        """Read until `pattern` (bytes regex) appears after what was seen; True if it did."""
        start = len(self.out)
        end = time.time() + timeout
        while time.time() < end:
            if re.search(pattern, self.out[start:]):
                return True
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # the program ended
                        return bool(re.search(pattern, self.out[start:]))
                    raise
                if not data:
                    break
                self.out += data
        return bool(re.search(pattern, self.out[start:]))

    def send(self, data):
        os.write(self.fd, data)

    def wait(self, timeout=60):
        self.read_until(rb"\Z(?!x)", timeout=0.5)
        end = time.time() + timeout
        while time.time() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.read_rest()
                return os.waitstatus_to_exitcode(status)
            self.read_until(rb"(?!x)x", timeout=0.2)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None

    def read_rest(self):
        while True:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if not r:
                return
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.out += data


def on_pty(args, cols=80, env=None):
    t = Pty([MODEL, *args], cols=cols, env=env)
    code = t.wait()
    return code, t.out


def columns(line):
    """Terminal columns of a line of UTF-8 (wide East Asian characters count 2)."""
    text = ANSI.sub(b"", line).decode("utf-8", "replace")
    wide = re.compile("[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
                      "\uf900-\ufaff\uff00-\uff60\uffe0-\uffe6]")
    return sum(2 if wide.match(ch) else 1 for ch in text)


# --- output in a terminal -----------------------------------------------------
code, out = on_pty(["-p", "Once upon a time", "-n", "12", "-s", "1"])
h.check("on a terminal the text ends with a newline", code == 0 and out.endswith(b"\r\n"), out[-40:])
p = run("-p", "Once upon a time", "-n", "12", "-s", "1")
h.check("into a pipe the bytes are exactly the text (no newline added)",
        p.returncode == 0 and not p.stdout.endswith(b"\n") and p.stdout.replace(b"\n", b"\r\n") == out[:-2],
        (p.stdout[-40:], out[-40:]))

code, out = on_pty(["-p", "Once upon a time", "-s", "1", "-n", "300"])
h.check("the context-full note starts on its own line on a terminal",
        code == 0 and re.search(rb"(^|\r\n)run: stopping: the context window of 256 tokens is full", out) is not None,
        out[-200:])
code, out = on_pty(["-p", "Elizabeth looked at Mr. Darcy", "-n", "3", "-t", "0", "--explain", "3"])
lines = out.split(b"\r\n")
h.check("each --explain note starts on its own line on a terminal",
        code == 0 and out.count(b"[explain]") == 3 and all(l.startswith(b"[explain]") for l in lines if b"[explain]" in l),
        out[:400])
p = run_cmd(["sh", "-c", f"'{RUN}' '{MODEL}' -p 'Elizabeth looked' -n 3 -t 0 --explain 2 2>&1"])
h.check("2>&1 into a pipe: the notes start on their own line too",
        all(l.startswith(b"[explain]") for l in p.stdout.split(b"\n") if b"[explain]" in l), p.stdout[:300])

p = run("-p", "Once upon a time", "-n", "5", "-t", "0", "--attention-overview")
first = p.stdout.split(b"\n")
h.check("--attention-overview in a pipe: the TSV header has a line of its own",
        p.returncode == 0 and any(l.startswith(b"# layer\thead") for l in first) and
        not any(b"# layer" in l and not l.startswith(b"# layer") for l in first), p.stdout[:200])

# --- the heatmap fits the terminal ----------------------------------------------
long_prompt = "我喜欢学习 and then a few more words so that the map is wider than sixty columns, surely"
for cols in (60, 80):
    code, out = on_pty(["-p", long_prompt, "-n", "2", "-t", "0", "--attention"], cols=cols)
    text_lines = out.split(b"\r\n")
    widest = max(columns(l) for l in text_lines)
    h.check(f"--attention on a {cols}-column terminal: no line is wider", code == 0 and widest <= cols,
            (widest, [l for l in text_lines if columns(l) > cols][:2]))
    cut = b"are cut (<)" in out
    h.check(f"--attention on a {cols}-column terminal: cut keys are marked", cut and b" <" in out, out[:300])
code, out = on_pty(["-p", long_prompt, "-n", "2", "-t", "0", "--attention"], cols=200)
h.check("--attention on a wide terminal: nothing cut", code == 0 and b"are cut" not in out, out[:300])
h.check("--attention on a terminal: colour escapes", b"\x1b[48;5;" in out)
for env in ({"TERM": "dumb"}, {"NO_COLOR": "1"}):
    code, out = on_pty(["-p", "Once upon a time", "-n", "2", "-t", "0", "--attention", "--attention-overview"], env=env)
    h.check(f"{env}: no escape sequences", code == 0 and b"\x1b" not in out and "\u2588".encode() in out + "\u2588".encode(),
            out[:200])
code, out = on_pty(["-p", "Once upon a time", "-n", "2", "-t", "0", "--attention-overview"], cols=50)
h.check("--attention-overview fits a 50-column terminal",
        code == 0 and max(columns(l) for l in out.split(b"\r\n")) <= 50, out[:300])

# --- multi-byte text in every view ----------------------------------------------
zh = "我喜欢学习"
p = run("-p", zh, "-n", "0", "--attention")
rows = [l.split(b"\t") for l in p.stdout.decode().encode().split(b"\n") if l and not l.startswith(b"#")]
labels = [r[1].decode() for r in rows if len(r) > 2]
h.check("--attention labels a split character on each of its tokens: 我(1/3) 我(2/3) 我(3/3)",
        labels[:3] == ["我(1/3)", "我(2/3)", "我(3/3)"] and all("\\x" not in l for l in labels), labels)
code, out = on_pty(["-p", zh, "-n", "0", "--attention"])
h.check("--attention on a terminal shows the characters", "我(1/3)".encode() in out and b"\\xE6" not in out, out[:300])
p = run("--tokenize", "--pieces", "-p", zh + " ok")
pieces = [l.split("\t") for l in p.stdout.decode().splitlines()]
ids = run("--tokenize", "-p", zh + " ok").stdout.split()
h.check("--tokenize --pieces: each id with its text, one per line",
        p.returncode == 0 and [x[0].encode() for x in pieces] == ids and pieces[0][1] == "我(1/3)" and
        "".join(x[1] for x in pieces[15:]) == " ok", pieces)
p = run("--pieces", "-p", "a\nb\\n\"")
pieces = [l.split("\t", 1)[1] for l in p.stdout.decode().splitlines()]
h.check("--pieces escapes a newline and a backslash, so a token \\n and a newline differ",
        "".join(pieces) == 'a\\nb\\\\n"', pieces)
page = os.path.join(tmp, "zh.html")
p = run("-p", zh, "-n", "2", "-t", "0", "--attention-html", page)
html = open(page, encoding="utf-8").read() if os.path.exists(page) else ""
h.check("the HTML page shows the characters", "我(1/3)" in html and "\\\\x" not in html, html[:100])
p = run("-p", "He said,\n\n", "-n", "1", "-t", "0", "--explain", "10")
h.check("--explain escapes a quote in its quoted labels, and shows a newline as \\n",
        p.returncode == 0 and b'"\\""   <- picked' in p.stderr and b'"\\n"' in p.stderr, p.stderr[:600])
p = run("--pieces", "-p", "a\\b")
h.check("a backslash in a label is \\\\", p.stdout.decode().replace("\t", "").count("\\\\") >= 1, p.stdout)
p = run("-p", zh, "-n", "3", "-t", "0", "--explain", "5")
h.check("--explain on Chinese text: no escapes of valid UTF-8 in the candidates",
        p.returncode == 0 and b"\\xE6" not in p.stderr, p.stderr[:600])

# --- input ----------------------------------------------------------------------
a = run("-n", "6", "-t", "0", input="The answer is\n").stdout
b = run("-p", "The answer is", "-n", "6", "-t", "0").stdout
c = run("-n", "6", "-t", "0", "--keep-newline", input="The answer is\n").stdout
d = run("-p", "The answer is\n", "-n", "6", "-t", "0").stdout
h.check("a prompt from stdin loses its final newline", a == b, (a, b))
h.check("--keep-newline keeps it", c == d and c != a, (c, d))
pf = os.path.join(tmp, "prompt.txt")
with open(pf, "w") as f:
    f.write("The answer is\r\n")
h.check("a prompt from -f loses its final (CRLF) newline", run("-f", pf, "-n", "6", "-t", "0").stdout == b)
t1 = run("--tokenize", input="hi\n").stdout
t2 = run("--tokenize", "-p", "hi\n").stdout
h.check("--tokenize keeps every byte of stdin", t1 == t2 and t1 != run("--tokenize", "-p", "hi").stdout, (t1, t2))

# --- hints and errors -------------------------------------------------------------
p = run_cmd([RUN, "Once upon a time"])
h.check("a prompt given as the model: exit 2, suggests -p",
        p.returncode == 2 and b'-p "Once upon a time"' in p.stderr and not p.stdout, p.stderr)
hfdir = os.path.join(ROOT, "tests", "contract", "eps0_gelu_new", "hf")
p = run_cmd([RUN, hfdir, "-p", "x"])
h.check("a Hugging Face directory as the model: exit 3, says to export it with the command",
        p.returncode == 3 and b"python3 export.py " + hfdir.encode() in p.stderr, p.stderr)
p = run_cmd([RUN, os.path.join(hfdir, "model.safetensors"), "-p", "x"])
h.check("a .safetensors file as the model: exit 3, says to export its directory",
        p.returncode == 3 and b"safetensors" in p.stderr and b"export.py" in p.stderr, p.stderr)
for args, needle in [(["--layer", "1", "-p", "x"], "--attention"), (["--head", "1", "-p", "x"], "--attention"),
                     (["--tokenize", "-n", "3", "-p", "x"], "--steps does nothing with --tokenize"),
                     (["--tokenize", "-t", "0", "-p", "x"], "--temperature does nothing with --tokenize"),
                     (["--tokenize", "--echo", "-p", "x"], "--echo does nothing with --tokenize"),
                     (["--detokenize", "--special", "-p", "1"], "--special does nothing with --detokenize"),
                     (["--score", "--stop", "x", "-p", "a b"], "--stop does nothing with --score"),
                     (["--tokenize", "--threads", "2", "-p", "x"], "--threads does nothing with --tokenize"),
                     (["--keep-newline", "-p", "x"], "--keep-newline"),
                     (["-i", "--ids"], "-i")]:
    p = run(*args)
    h.check(f"{' '.join(args)}: exit 2, says so", p.returncode == 2 and needle.encode() in p.stderr and not p.stdout,
            p.stderr)
p = run("-p", "The keeper", "-n", "1", "-t", "0", "--explain")
h.check("--explain without a number shows 5", p.returncode == 0 and len(re.findall(rb"\n +\d+ +0\.\d{4}", p.stderr)) == 5,
        p.stderr)
p = run("-p", "The keeper", "-n", "1", "-t", "0", "--explain", "2")
h.check("--explain 2 (a number after a space) still works", p.returncode == 0 and
        len(re.findall(rb"\n +\d+ +0\.\d{4}", p.stderr)) == 2, p.stderr)
for flag, extra in (("--attention-html", ["-n", "200"]), ("--dump-logits", ["--score"])):
    p = run("-p", "x " * 50, flag, os.path.join(tmp, "missing", "out"), *extra)
    h.check(f"{flag} into a missing directory fails before any work: exit 1, nothing on stdout",
            p.returncode == 1 and not p.stdout and b"missing" in p.stderr, p.stderr)
p = run("-h")
h.check("--help says where the speed is shown (-v)", re.search(rb"-v, --verbose .*tokens/s", p.stdout, re.S) is not None)

# --- interactive mode -------------------------------------------------------------
t = Pty([MODEL, "-i", "-n", "30", "-t", "0"])
ok = t.read_until(rb"\[256/256\] > ")
h.check("-i on a terminal: a prompt that shows the context left", ok, t.out)
t.send(b"Elizabeth said\n")
ok = t.read_until(rb"\r\n\[\d+/256\] > ")
left = re.findall(rb"\[(\d+)/256\] > ", t.out)
h.check("-i: a line gets a one-line reply, then the prompt again with less context left",
        ok and len(left) == 2 and int(left[1]) < 256, t.out[-300:])
t.send(b"Mr. Darcy\n")
t.read_until(rb"\r\n\[\d+/256\] > ")
left2 = re.findall(rb"\[(\d+)/256\] > ", t.out)
h.check("-i: the context grows with each turn (the cache is kept)", len(left2) == 3 and int(left2[2]) < int(left2[1]),
        left2)
t.send(b"\x04")  # Ctrl-D
code = t.wait()
h.check("-i: Ctrl-D leaves with exit 0", code == 0, (code, t.out[-200:]))
h.check("-i: the terminal is as it was", termios.tcgetattr(t.fd) == t.attrs if code is None else True)

# greedy on this line loops ("I am sure I am sure ...") with no newline: only Ctrl-C ends it
t = Pty([MODEL, "-i", "-n", "100000", "-t", "0", "--context-shift"])
t.read_until(rb"> ")
t.send(b"I am sure I am sure I am sure\n")
t.read_until(rb"sure you are", timeout=20)  # the reply has begun (not just the echo of the line)
t.send(b"\x03")  # Ctrl-C: stops the reply
ok = t.read_until(rb"stopped\r\n\[\d+/256\] > ", timeout=30)
h.check("-i: Ctrl-C stops a reply and the prompt comes back", ok, t.out[-300:])
t.send(b"\x03")  # Ctrl-C at the prompt: leaves
code = t.wait()
h.check("-i: Ctrl-C at the prompt leaves with exit 0", code == 0, (code, t.out[-200:]))

p = run("-i", "-n", "20", "-t", "0", input="Elizabeth said\nMr. Darcy replied\n")
lines = p.stdout.decode().split("\n")
h.check("-i with piped stdin: one reply line per input line, nothing else on stdout",
        p.returncode == 0 and len(lines) == 3 and lines[2] == "" and all(lines[:2]), p.stdout)
p2 = run("-i", "-n", "20", "-t", "0", input="Elizabeth said\nMr. Darcy replied\n")
h.check("-i with piped stdin: the same replies for the same input (greedy)", p.stdout == p2.stdout)

# --- past the context window --------------------------------------------------------
once = run("--tokenize", "-p", "Once").stdout.decode()
p = run("-n", "400", "-t", "0", "--ids", input=once)
h.check("without --context-shift generation stops at the context (256 tokens)",
        p.returncode == 0 and len(p.stdout.split()) == 255 and b"context window" in p.stderr, (len(p.stdout.split()), p.stderr))
p = run("-n", "400", "-t", "0", "--ids", "--context-shift", "-v", input=once)
h.check("--context-shift goes on past the context (400 tokens)",
        p.returncode == 0 and len(p.stdout.split()) == 400 and b"shifted" in p.stderr, (len(p.stdout.split()), p.stderr[-200:]))
q = run("-n", "400", "-t", "0", "--ids", "--context-shift", input=once)
h.check("--context-shift: the first 255 tokens are those of the run that stops", q.stdout.split()[:255] ==
        run("-n", "400", "-t", "0", "--ids", input=once).stdout.split())
p = run("-p", "Once", "--context-shift", "--attention", "-n", "3")
h.check("--context-shift with the attention views: exit 2", p.returncode == 2, p.stderr)

# --- sampling penalties and min-p, against hand-computed choices --------------------


def logits_after(ids):
    """The model's logits for the token after `ids` (its own --score --dump-logits)."""
    dump = os.path.join(tmp, "logits.f32")
    run("--score", "--ids", "--dump-logits", dump, input=" ".join(map(str, ids)) + " 0")
    data = open(dump, "rb").read()
    V = 4096
    rows = struct.unpack("<%df" % (len(data) // 4), data)
    return list(rows[(len(ids) - 1) * V:len(ids) * V])


def argmax(x):
    return max(range(len(x)), key=lambda i: (x[i], -i))


prompt = "I am sure I am sure I am sure I am"
pids = [int(x) for x in run("--tokenize", "-p", prompt).stdout.split()]
l0 = logits_after(pids)
ptext = " ".join(map(str, pids))
plain = int(run("-n", "1", "-t", "0", "--ids", input=ptext).stdout.split()[0])
h.check("greedy without penalties picks the argmax of the logits", plain == argmax(l0), (plain, argmax(l0)))
for r, last_n in ((1.5, 64), (3.0, 4), (0.5, 64)):
    lp = list(l0)
    for tid in set(pids[-last_n:]):
        lp[tid] = lp[tid] / r if lp[tid] > 0 else lp[tid] * r
    want = argmax(lp)
    got = int(run("-n", "1", "-t", "0", "--ids", "--repeat-penalty", str(r),
                  "--repeat-last-n", str(last_n), input=ptext).stdout.split()[0])
    h.check(f"--repeat-penalty {r} --repeat-last-n {last_n}: the pick is the argmax of "
            f"l/r (l > 0), l*r (l <= 0) over the last {last_n} tokens", got == want, (got, want, plain))

# presence and frequency: over generated tokens only; the second pick after the first
first = plain
l1 = logits_after(pids + [first])
for a, b in ((2.0, 0.0), (0.0, 3.0), (1.0, 1.0)):
    lp = list(l1)
    lp[first] -= b * 1 + a
    want = argmax(lp)
    got = [int(x) for x in run("-n", "2", "-t", "0", "--ids", "--presence-penalty", str(a),
                               "--frequency-penalty", str(b), input=ptext).stdout.split()]
    h.check(f"--presence-penalty {a} --frequency-penalty {b}: first pick as without (nothing generated yet), "
            f"second = argmax(l - {b} c - {a} [c > 0])", got[:1] == [first] and got[1:] == [want], (got, first, want))
# min-p: the candidates are the tokens with p >= min_p * max p (temperature 1)
m = max(l0)
e = [math.exp(v - m) for v in l0]
s = sum(e)
probs = [v / s for v in e]
for mp in (0.05, 0.2):
    want = sum(1 for q in probs if q >= mp * max(probs))
    p = run("-p", prompt, "-n", "1", "-t", "1", "-s", "1", "--min-p", str(mp), "--explain", "1")
    got = re.search(rb"drawn from (\d+) of 4096", p.stderr)
    h.check(f"--min-p {mp}: drawn from the {want} tokens with p >= {mp} max p",
            got is not None and abs(int(got.group(1)) - want) <= 1 and b"min-p" in p.stderr, (got and got.group(1), want))
p = run("-p", prompt, "-n", "1", "-t", "0", "--repeat-penalty", "1.5", "--presence-penalty", "0.5", "--explain", "2")
h.check("--explain shows the penalties", b"penalties on the logits: repeat 1.5" in p.stderr and b"presence 0.5" in p.stderr,
        p.stderr[:300])

# --- export.py -q ----------------------------------------------------------------
EXPORT = [sys.executable, os.path.join(ROOT, "export.py")]
hfdir = os.path.join(ROOT, "tests", "contract", "eps0_gelu_new", "hf")
for mode in ([], ["--tokenizer-only"]):
    p = run_cmd([*EXPORT, "-q", *mode, hfdir, os.path.join(tmp, "q.out")])
    h.check(f"export.py -q {' '.join(mode)}: nothing on stderr", p.returncode == 0 and not p.stderr and not p.stdout, p.stderr)
    p = run_cmd([*EXPORT, *mode, hfdir, os.path.join(tmp, "q.out")])
    h.check(f"export.py {' '.join(mode)} without -q: says what it wrote", p.returncode == 0 and b"wrote" in p.stderr, p.stderr)

import shutil  # noqa: E402
shutil.rmtree(tmp, ignore_errors=True)
h.done()
