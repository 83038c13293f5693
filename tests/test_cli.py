#!/usr/bin/env python3
"""The command line of ./run: flags, modes, streams, exit codes (standard
library only). Uses the fixture tests/fixtures/f32_st_basic exported with
export.py: a small random model, so the checks are about behaviour, not text.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

BUILD = os.path.join(ROOT, "tests", "build")
MODEL = os.path.join(BUILD, "cli.bin")
N_CTX = 32      # of the fixture
EOS = 384

h = Harness("cli")


def run(*args, input=None, env=None):
    return run_cmd([RUN, *args], input=input, env=env)


def export():
    os.makedirs(BUILD, exist_ok=True)
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"),
                 os.path.join(ROOT, "tests", "fixtures", "f32_st_basic", "hf"), MODEL])
    if p.returncode != 0:
        print(p.stderr.decode())
        sys.exit("cannot export the fixture")


def expect(what, p, code, stderr_has=None, stdout_empty=False):
    err = p.stderr.decode("utf-8", "replace")
    ok = p.returncode == code
    if ok and stderr_has:
        ok = all(re.search(s, err) for s in ([stderr_has] if isinstance(stderr_has, str) else stderr_has))
    if ok and stdout_empty:
        ok = p.stdout == b""
    h.check(what, ok, f"exit {p.returncode} (want {code}); stderr: {err.strip()[:300]}")


export()

# --- help and version -------------------------------------------------------
p = run("--help")
help_text = p.stdout.decode()
h.check("--help exits 0 on stdout", p.returncode == 0 and "usage: run" in help_text, p.stderr)
src = open(os.path.join(ROOT, "run.c")).read()
longopts = re.findall(r'\{"([a-z-]+)", (?:no|required)_argument', src)
h.check("run.c declares its long options", len(longopts) >= 15, longopts)
for name in longopts:
    h.check(f"--help lists --{name}", f"--{name}" in help_text)
h.check("--help names the default model", "models/" in help_text or "share/run" in help_text)
p = run("--version")
h.check("--version", p.returncode == 0 and re.match(rb"run \d+\.\d+\.\d+\n", p.stdout), p.stdout)

# --- usage errors: exit 2 with the flag named --------------------------------
for args, needle in [
    (["--bogus"], "--bogus"),
    (["-x"], "-x"),
    (["-n", "abc"], "--steps"),
    (["-n", "-3"], "--steps"),
    (["-n", "5x"], "--steps"),
    (["-t", "-0.5"], "--temperature"),
    (["-t", "nan"], "--temperature"),
    (["-t", "hot"], "--temperature"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["-k", "-1"], "--top-k"),
    (["--threads", "0"], "--threads"),
    (["-s", "-4"], "--seed"),
    (["--stop", ""], "--stop"),
    (["--tokenize", "--score"], "exclude"),
    (["-p", "a", "-f", "b"], "-p or -f"),
    (["--dump-logits", "x.f32"], "--score"),
]:
    expect(f"usage error {' '.join(args)}", run(MODEL, *args, "-p", "hi"), 2, needle, stdout_empty=True)
expect("missing value for -n", run(MODEL, "-p", "hi", "-n"), 2, "'-n' needs a value", stdout_empty=True)
expect("missing value for --top-p", run(MODEL, "-p", "hi", "--top-p"), 2, "'--top-p' needs a value", stdout_empty=True)
expect("two positional arguments", run(MODEL, "extra", "-p", "hi"), 2, "extra", stdout_empty=True)

# --- model errors: exit 3 with the path named ---------------------------------
expect("missing model", run(os.path.join(BUILD, "no-such.bin"), "-p", "x"), 3, "no-such.bin")
expect("a directory as model", run(BUILD, "-p", "x"), 3, "not a regular file")
expect("/dev/null as model", run("/dev/null", "-p", "x"), 3, "/dev/null")
data = open(MODEL, "rb").read()
bad = os.path.join(BUILD, "cli-bad.bin")
for what, blob, needle in [
    ("truncated model", data[:len(data) - 100], "truncated|bytes"),
    ("wrong magic", b"XXXXXXXX" + data[8:], "magic"),
    ("wrong version", data[:8] + b"\x09\x00\x00\x00" + data[12:], "version"),
    ("n_head 0", data[:20] + b"\x00\x00\x00\x00" + data[24:], "n_head"),
    ("huge n_embd", data[:24] + b"\xff\xff\xff\x7f" + data[28:], "n_embd"),
]:
    with open(bad, "wb") as f:
        f.write(blob)
    expect(what, run(bad, "-p", "x"), 3, [needle, "cli-bad.bin"], stdout_empty=True)
os.remove(bad)

# --- input errors: exit 4 ------------------------------------------------------
expect("--ids out of range", run(MODEL, "--ids", "-p", "1 2 999"), 4, "999", stdout_empty=True)
expect("--ids not a number", run(MODEL, "--ids", "-p", "1 two"), 4, "two", stdout_empty=True)
expect("--ids negative", run(MODEL, "--ids", "-p", "-1"), 4, "-1", stdout_empty=True)
expect("--detokenize out of range", run(MODEL, "--detokenize", "-p", "5 100000"), 4, "100000")
long_ids = " ".join(["7"] * (N_CTX + 1))
expect("prompt longer than the context", run(MODEL, "--ids", "-p", long_ids, "-n", "1"), 4, "context")
expect("--score on one token", run(MODEL, "--score", "--ids", "-p", "7"), 4, "at least 2")
expect("missing prompt file", run(MODEL, "-f", os.path.join(BUILD, "nope.txt")), 4, "nope.txt")

# --- generation ---------------------------------------------------------------
def gen(*args, input=None):
    return run(MODEL, "-n", "12", *args, input=input)


a = gen("-p", "The keeper", "-s", "7")
b = gen("-p", "The keeper", "-s", "7")
h.check("generation exits 0", a.returncode == 0, a.stderr)
h.check("same seed, same text", a.stdout == b.stdout and a.stdout != b"")
c = gen("-p", "The keeper", "-s", "7", "--threads", "1")
d = gen("-p", "The keeper", "-s", "7", "--threads", "3")
h.check("thread count does not change the text", a.stdout == c.stdout == d.stdout)
e = gen("-p", "The keeper", "-s", "8")
f = gen("-p", "The keeper", "-s", "9")
h.check("different seeds give different samples", len({a.stdout, e.stdout, f.stdout}) > 1)
h.check("stderr is quiet without -v", a.stderr == b"", a.stderr)
v = gen("-p", "The keeper", "-v", "-t", "0.7")
err = v.stderr.decode()
h.check("-v reports timings and tokens/s", "tokens/s" in err and "prompt:" in err, err)
h.check("-v reports the random seed", re.search(r"seed \d+", err), err)

g1 = gen("-p", "The keeper", "-t", "0")
g2 = gen("-p", "The keeper", "-t", "0", "-s", "123")
h.check("greedy ignores the seed", g1.stdout == g2.stdout)
p = run(MODEL, "-n", "12", "-t", "0", input=b"The keeper")
h.check("prompt from stdin when it is not a terminal", p.stdout == g1.stdout, (p.stdout, g1.stdout))
prompt_file = os.path.join(BUILD, "cli-prompt.txt")
with open(prompt_file, "wb") as fh:
    fh.write(b"The keeper")
p = run(MODEL, "-n", "12", "-t", "0", "-f", prompt_file)
h.check("prompt from -f FILE", p.stdout == g1.stdout)
p = run(MODEL, "-n", "12", "-t", "0", "-f", "-", input=b"The keeper")
h.check("prompt from -f -", p.stdout == g1.stdout)
p = gen("-p", "The keeper", "-t", "0", "--echo")
h.check("--echo prints the prompt first", p.stdout == b"The keeper" + g1.stdout, p.stdout)

# ids and text agree: tokenize | generate --ids | detokenize == generate on text
ids = run(MODEL, "--tokenize", "-p", "The keeper").stdout
h.check("--tokenize prints one line of ids", re.fullmatch(rb"\d+( \d+)*\n", ids), ids)
gi = run(MODEL, "--ids", "-n", "12", "-t", "0", input=ids)
h.check("--ids output is one line of ids", re.fullmatch(rb"(\d+( \d+)*)?\n", gi.stdout), gi.stdout)
txt = run(MODEL, "--detokenize", input=gi.stdout).stdout
h.check("tokenize | --ids | detokenize equals text generation", txt == g1.stdout, (txt, g1.stdout))
ge = run(MODEL, "--ids", "--echo", "-n", "12", "-t", "0", input=ids)
h.check("--ids --echo prints prompt ids then generated ids",
        ge.stdout == ids.strip() + (b" " + gi.stdout if gi.stdout.strip() else b"\n"), ge.stdout)

# the step limit, end of text and the context
ids12 = gi.stdout.split()
h.check("-n bounds the tokens generated", len(ids12) <= 12)
p = run(MODEL, "--ids", "-p", "5 6 7", "-n", "0")
h.check("-n 0 generates nothing", p.returncode == 0 and p.stdout == b"\n", p.stdout)
p = run(MODEL, "--ids", "-p", "5 6 7", "-n", "1000", "-t", "0", "-v")
out_ids = [int(x) for x in p.stdout.split()]
err = p.stderr.decode()
if "context window" in err:
    h.check("generation stops when the context is full", len(out_ids) == N_CTX - 3 + 1, (len(out_ids), err))
else:
    h.check("generation stops at end of text", "end of text" in err, err)
h.check("generation past the context exits 0", p.returncode == 0, err)
h.check("no end-of-text id is printed", EOS not in out_ids)

# stop strings: the output ends before the first occurrence of a stop string
full = run(MODEL, "-n", "20", "-t", "0", "-p", "The").stdout
if len(full) >= 6:
    stop = full[3:5]
    p = run(MODEL, "-n", "20", "-t", "0", "-p", "The", "--stop", stop.decode("latin-1"))
    want = full[:full.index(stop)]
    h.check("--stop ends the output before the stop string", p.returncode == 0 and p.stdout == want,
            (stop, p.stdout, want))
    p = run(MODEL, "-n", "20", "-t", "0", "-p", "The", "--stop", "\x01never", "--stop", stop.decode("latin-1"))
    h.check("--stop is repeatable", p.stdout == want)
else:
    h.check("greedy output long enough to test --stop", False, full)

# empty prompt: start from the beginning-of-text token
p = run(MODEL, "-p", "", "-n", "5", "-t", "0")
h.check("empty prompt starts from <|endoftext|>", p.returncode == 0, p.stderr)

# odd bytes in the prompt
p = run(MODEL, "-n", "5", "-t", "0", input=b"caf\xc3\xa9 \xff\xfe\x00 bytes\x00")
h.check("invalid UTF-8 and NUL bytes on stdin are text", p.returncode == 0, p.stderr)
tok = run(MODEL, "--tokenize", input=b"\xff\x00a\xe2\x82")
back = run(MODEL, "--detokenize", input=tok.stdout)
h.check("odd bytes round-trip through --tokenize/--detokenize", back.stdout == b"\xff\x00a\xe2\x82", back.stdout)

# --score
p = run(MODEL, "--score", "-p", "The keeper wrote in her log")
lines = p.stdout.decode().splitlines()
h.check("--score exits 0", p.returncode == 0, p.stderr)
h.check("--score prints pos<TAB>id<TAB>logprob", lines and all(re.fullmatch(r"\d+\t\d+\t-?\d+\.\d{6}", l) for l in lines), lines[:3])
h.check("--score positions run 1..T-1", [int(l.split("\t")[0]) for l in lines] == list(range(1, len(lines) + 1)))
m = re.search(r"score: tokens=(\d+) mean_nll=([\d.]+) perplexity=([\d.]+)", p.stderr.decode())
h.check("--score summary on stderr", m and int(m.group(1)) == len(lines), p.stderr)

# streams: a reader that goes away, a full disk
p = subprocess.run(f"set -o pipefail; '{RUN}' '{MODEL}' --ids -p '5 6 7' -n 25 -t 0 --threads 1 | head -c 3 >/dev/null",
                   shell=True, executable="/bin/bash", stderr=subprocess.PIPE)
h.check("| head: exits quietly", p.returncode == 0 and p.stderr == b"", (p.returncode, p.stderr))
p = subprocess.run(f"'{RUN}' '{MODEL}' -p 'The keeper' -n 10 -t 0 >/dev/full",
                   shell=True, stderr=subprocess.PIPE)
h.check("stdout on a full disk: exit 1 with a message",
        p.returncode == 1 and b"standard output" in p.stderr, (p.returncode, p.stderr))

h.done()
