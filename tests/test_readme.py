#!/usr/bin/env python3
"""README.md is kept true:
- it points into run.c by line number ("`name` ([run.c:N](run.c#LN))"); each
  such line must still hold what the README says it does;
- every option of run is in the README;
- every command of "Using it" runs as written (in a scratch directory that
  holds ./run and models/, as a fresh clone after `make run` does), and where
  a comment shows the output (`# → ...`) it is what the command prints;
- every `$ command` block of "Looking inside" prints what the block shows
  (under an 80-column pseudo-terminal when the command sets NO_COLOR, as
  the capture was taken).
Standard library only."""
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT  # noqa: E402

h = Harness("readme")
readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
lines = open(os.path.join(ROOT, "run.c"), encoding="utf-8").read().split("\n")

refs = re.findall(r"`([^`]+)` \(\[run\.c:(\d+)\]\(run\.c#L(\d+)\)\)", readme)
h.check("the README points into run.c", len(refs) >= 10, len(refs))
for name, n, anchor in refs:
    n = int(n)
    text = name.rstrip("()")
    h.check(f"run.c:{n} holds `{text}`", n == int(anchor) and 0 < n <= len(lines) and text in lines[n - 1],
            f"line {n}: {lines[n - 1] if 0 < n <= len(lines) else '(none)'}")

src = "\n".join(lines)
for opt in re.findall(r'\{"([a-z-]+)", (?:no|required|optional)_argument', src):
    h.check(f"README documents --{opt}", f"--{opt}" in readme)


def section(title):
    start = readme.index(f"## {title}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:end if end > 0 else len(readme)]


def code_blocks(text):
    return re.findall(r"```\n(.*?)```", text, re.S)


scratch = tempfile.mkdtemp(prefix="readme-")
os.symlink(os.path.join(ROOT, "run"), os.path.join(scratch, "run"))
os.symlink(os.path.join(ROOT, "models"), os.path.join(scratch, "models"))


def shell(cmd):
    return subprocess.run(["bash", "-c", cmd], cwd=scratch, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)


def on_pty(cmd, cols=80):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(scratch)
        os.execv("/bin/bash", ["bash", "-c", cmd])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.replace(b"\r\n", b"\n")


using = code_blocks(section("Using it"))
h.check("\"Using it\" has its commands", using and len(using[0].splitlines()) >= 8)
for line in (using[0].splitlines() if using else []):
    cmd, _, comment = line.partition("  # ")
    cmd = cmd.strip()
    if not cmd:
        continue
    p = shell(cmd)
    h.check(f"Using it: `{cmd}` runs (exit 0)", p.returncode == 0, p.stderr.decode("utf-8", "replace")[-300:])
    shown = re.match(r"\s*→ (.*)", comment)
    if shown:
        h.check(f"Using it: `{cmd}` prints what the README shows", p.stdout.decode().strip() == shown.group(1).strip(),
                (p.stdout[:200], shown.group(1)))

# the chat example builds its model from a test fixture first
chat = [b for b in using if "fixtures_chat" in b]
h.check("\"Using it\" has the chat example", len(chat) == 1)
for block in chat:
    os.symlink(os.path.join(ROOT, "export.py"), os.path.join(scratch, "export.py"))
    os.symlink(os.path.join(ROOT, "tests"), os.path.join(scratch, "tests"))
    p = shell(block)
    h.check("Using it: the chat example runs and shows the ChatML markers",
            p.returncode == 0 and b"<|im_start|>" in p.stdout and b"<|im_end|>" in p.stdout,
            p.stderr.decode("utf-8", "replace")[-300:])

inside = [b for b in code_blocks(section("Looking inside")) if b.startswith("$ ")]
h.check("\"Looking inside\" has its captures", len(inside) >= 2, len(inside))
for block in inside:
    first, _, want = block.partition("\n")
    cmd = first[2:]
    if "NO_COLOR" in cmd:
        code, out = on_pty(cmd)
    else:
        p = shell(cmd)
        code, out = p.returncode, p.stdout
    got = [l.rstrip() for l in out.decode("utf-8", "replace").rstrip("\n").split("\n")]
    want_lines = [l.rstrip() for l in want.rstrip("\n").split("\n")]
    h.check(f"Looking inside: `{cmd}` prints what the README shows", code == 0 and got == want_lines,
            "\n".join(f"got  {g!r}\nwant {w!r}" for g, w in zip(got, want_lines) if g != w)[:800] or (code, len(got),
                                                                                                   len(want_lines)))

shutil.rmtree(scratch, ignore_errors=True)
h.done()
