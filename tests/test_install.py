#!/usr/bin/env python3
"""make install / make uninstall, into temporary roots only (standard library
only): what gets installed, that the installed run works from its installed
model and runs on any x86-64 (its AVX2 code only in the functions compiled for
it, the kernels chosen at start-up), that run-export and the man pages work,
and that uninstall leaves the install root as it was."""
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

h = Harness("install")
PROMPT = "It is a truth universally acknowledged"
X86 = platform.machine().lower() in ("x86_64", "amd64")


def make(*args):
    """make in ROOT with the variables the outer make was given (say CC; they
    come in MAKEFLAGS), but no sanitizer: the build a user installs. The outer
    make's job server is not passed down, so it is left out."""
    env = dict(os.environ)
    env["MAKEFLAGS"] = re.sub(r"\s*--jobserver-(?:auth|fds)=\S+", "", env.get("MAKEFLAGS", ""))
    return run_cmd(["make", "-C", ROOT, "SANITIZE=", *args], env=env, timeout=120)


def tree(root):
    """Every file and directory under root, as relative paths ('/' after dirs)."""
    found = set()
    for d, dirs, files in os.walk(root):
        rel = os.path.relpath(d, root)
        found.update(os.path.normpath(os.path.join(rel, n)) + "/" for n in dirs)
        found.update(os.path.normpath(os.path.join(rel, n)) for n in files)
    return found


def mode(path):
    return oct(os.stat(path).st_mode & 0o777) if os.path.exists(path) else "missing"


def tail(p):
    return (p.stdout + p.stderr).decode("utf-8", "replace")[-800:]


def avx2_region_functions():
    """The functions run.c defines between AVX2_BEGIN and AVX2_END."""
    src = open(os.path.join(ROOT, "run.c"), encoding="utf-8").read()
    m = re.search(r"^AVX2_BEGIN\s*$(.*?)^AVX2_END\b", src, re.S | re.M)
    return set(re.findall(r"^static\s+(?:inline\s+)?[\w \*]*?\b(\w+)\(", m.group(1), re.M)) if m else set()


def functions_using_avx(binary):
    """Functions of binary with VEX/EVEX instructions or ymm/zmm registers."""
    p = run_cmd(["objdump", "-d", "--no-show-raw-insn", binary])
    found, fn = set(), None
    for line in p.stdout.decode("utf-8", "replace").split("\n"):
        m = re.match(r"[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            fn = m.group(1).split(".")[0]  # matmul_rows_fast.part.0 -> matmul_rows_fast
        elif re.match(r"\s*[0-9a-f]+:\s+v[a-z0-9]+\s", line) or re.search(r"%[yz]mm|\{%k", line):
            found.add(fn)
    return found


def check_man_page(what, page, options):
    text = open(page, encoding="utf-8").read() if os.path.exists(page) else ""
    h.check(f"{what}: starts with .TH", text.startswith(".TH "), text[:200])
    for sec in ("NAME", "SYNOPSIS", "OPTIONS"):
        h.check(f"{what}: has a {sec} section", re.search(rf"^\.SH {sec}$", text, re.M), text[:400])
    missing = [o for o in options if o.replace("-", "\\-") not in text]
    h.check(f"{what}: lists every option of --help ({len(options)})", options and not missing, missing)
    if shutil.which("man"):
        p = run_cmd(["man", "-l", page], env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
        shown = re.sub(r".\x08", "", p.stdout.decode("utf-8", "replace"))
        h.check(f"{what}: man -l renders it", p.returncode == 0 and "SYNOPSIS" in shown and "OPTIONS" in shown, tail(p))
    if shutil.which("groff"):
        p = run_cmd(["groff", "-ww", "-man", "-z", page])
        h.check(f"{what}: groff -ww has no warnings", p.returncode == 0 and not p.stderr, tail(p))


tmp = tempfile.mkdtemp(prefix="run-install-")
try:
    # --- PREFIX=<tmp>/usr: a root where bin/ already exists (empty) and
    # share/man/man1 holds someone else's page; uninstall must keep both
    prefix = os.path.join(tmp, "usr")
    os.makedirs(os.path.join(prefix, "bin"))
    os.makedirs(os.path.join(prefix, "share", "man", "man1"))
    open(os.path.join(prefix, "share", "man", "man1", "other.1"), "w").write(".TH OTHER 1\n")
    before = tree(tmp)
    p = make("install", f"PREFIX={prefix}")
    h.check("make install PREFIX=<tmp>/usr", p.returncode == 0, tail(p))
    run = os.path.join(prefix, "bin", "run")
    run_export = os.path.join(prefix, "bin", "run-export")
    model = os.path.join(prefix, "share", "run", "model.bin")
    man1 = os.path.join(prefix, "share", "man", "man1")
    for path, want in ((run, "0o755"), (run_export, "0o755"), (model, "0o644"),
                       (os.path.join(man1, "run.1"), "0o644"), (os.path.join(man1, "run-export.1"), "0o644")):
        h.check(f"installed {os.path.relpath(path, prefix)} with mode {want}", mode(path) == want, mode(path))
    with open(model, "rb") as a, open(os.path.join(ROOT, "models", "model.bin"), "rb") as b:
        h.check("the installed model is models/model.bin", a.read() == b.read())

    # the installed run: its default model is the installed one; greedy text
    # and every logit are the same bits as ./run's (make's -march=native build)
    p = run_cmd([run, "--help"])
    h.check("installed run --help names the installed model", model in p.stdout.decode(), p.stdout[:300])
    options = sorted(set(re.findall(r"--[a-z][a-z-]+", p.stdout.decode())))
    p = run_cmd([run, "-p", PROMPT, "-n", "40", "-t", "0", "-v"])
    err = p.stderr.decode("utf-8", "replace")
    h.check("installed run generates from its default model", p.returncode == 0 and p.stdout.strip()
            and f"model {model} (" in err, tail(p))
    kernels = re.search(r"^kernels: (.*)$", err, re.M)
    h.check("installed run -v says which kernels it chose", kernels, err)
    if X86:
        h.check("x86-64: the kernels are chosen at start-up", kernels and "chosen by CPU at start-up" in kernels.group(1), err)
    ref = run_cmd([RUN, os.path.join(ROOT, "models", "model.bin"), "-p", PROMPT, "-n", "40", "-t", "0"])
    h.check("installed run's greedy text is ./run's", ref.returncode == 0 and p.stdout == ref.stdout,
            f"installed {p.stdout[:200]!r}\n./run     {ref.stdout[:200]!r}")
    text = os.path.join(tmp, "score.txt")
    with open(os.path.join(ROOT, "models", "valid.txt"), encoding="utf-8") as f:
        open(text, "w", encoding="utf-8").write(f.read(1500))
    logits = []
    for binary in (run, RUN):
        out = os.path.join(tmp, "logits-" + ("installed" if binary == run else "native"))
        q = run_cmd([binary, model, "--score", "-f", text, "--dump-logits", out])
        logits.append(open(out, "rb").read() if q.returncode == 0 and os.path.exists(out) else tail(q))
    h.check("installed run's --score logits are ./run's, bit for bit", isinstance(logits[0], bytes) and
            len(logits[0]) > 0 and logits[0] == logits[1], [str(x)[:200] for x in logits if not isinstance(x, bytes)])

    if X86 and shutil.which("objdump"):
        allowed = avx2_region_functions()
        used = functions_using_avx(run)
        h.check("run.c names the functions compiled for AVX2", {"matmul_rows_fast", "gemm_6x16", "softmax_fast"} <= allowed,
                sorted(allowed))
        h.check("the installed run has AVX2 code", used, "no AVX instructions found: the kernels are not in")
        h.check("AVX instructions only in functions compiled for AVX2", used and used <= allowed, sorted(used - allowed))
    if X86 and shutil.which("qemu-x86_64"):
        # a CPU without AVX (qemu's Nehalem): the installed run takes the
        # portable kernels; with AVX2 and FMA (Haswell) the AVX2 ones
        args = [run, "-p", PROMPT, "-n", "8", "-t", "0", "-v"]
        p = run_cmd(["qemu-x86_64", "-cpu", "Nehalem", *args])
        h.check("on a CPU without AVX the installed run takes the portable kernels",
                p.returncode == 0 and p.stdout.strip() and b"kernels: portable C" in p.stderr, tail(p))
        p = run_cmd(["qemu-x86_64", "-cpu", "Haswell", *args])
        h.check("on a CPU with AVX2 and FMA it takes the AVX2 kernels",
                p.returncode == 0 and b"kernels: AVX2+FMA" in p.stderr, tail(p))
        if "avx2" in open("/proc/cpuinfo").read().split():
            p = run_cmd(["qemu-x86_64", "-cpu", "Nehalem", RUN, os.path.join(ROOT, "models", "model.bin"), *args[1:]])
            h.check("(the control: ./run, built for this machine's AVX2, fails on that CPU)", p.returncode != 0, tail(p))

    # run-export: its help under its installed name, and it exports
    p = run_cmd([run_export, "--help"])
    h.check("run-export --help", p.returncode == 0 and p.stdout.startswith(b"usage: run-export "), tail(p))
    export_options = sorted(set(re.findall(r"--[a-z][a-z-]+", p.stdout.decode())))
    small = os.path.join(tmp, "small.bin")
    p = run_cmd([run_export, "-q", os.path.join(ROOT, "tests", "fixtures", "f32_st_basic", "hf"), small])
    h.check("run-export exports a model", p.returncode == 0 and os.path.exists(small), tail(p))
    p = run_cmd([run, small, "-p", "hello", "-n", "4", "-t", "0"])
    h.check("the installed run runs what run-export wrote", p.returncode == 0, tail(p))

    check_man_page("run.1", os.path.join(man1, "run.1"), options)
    check_man_page("run-export.1", os.path.join(man1, "run-export.1"), export_options)

    p = make("uninstall", f"PREFIX={prefix}")
    h.check("make uninstall PREFIX=<tmp>/usr", p.returncode == 0, tail(p))
    after = tree(tmp) - {"score.txt", "small.bin", "logits-installed", "logits-native"}
    h.check("uninstall leaves the root as it was (the old empty bin/ and other.1 too)", after == before,
            f"left over: {sorted(after - before)}; gone: {sorted(before - after)}")

    # --- DESTDIR=<tmp>/stage PREFIX=/usr, installed twice: the binary looks
    # for /usr/share/run/model.bin; uninstall empties the stage again
    stage = os.path.join(tmp, "stage")
    os.makedirs(stage)
    for attempt in ("", " again"):
        p = make("install", f"DESTDIR={stage}", "PREFIX=/usr")
        h.check(f"make install DESTDIR=<tmp>/stage PREFIX=/usr{attempt}", p.returncode == 0, tail(p))
    staged = os.path.join(stage, "usr", "bin", "run")
    p = run_cmd([staged, "--help"])
    h.check("the staged run's default model is /usr/share/run/model.bin", b"/usr/share/run/model.bin" in p.stdout, p.stdout[:300])
    p = run_cmd([staged, os.path.join(stage, "usr", "share", "run", "model.bin"), "-p", "hello", "-n", "4", "-t", "0"])
    h.check("the staged run generates from the staged model", p.returncode == 0 and p.stdout.strip(), tail(p))
    p = make("uninstall", f"DESTDIR={stage}", "PREFIX=/usr")
    h.check("make uninstall DESTDIR=<tmp>/stage PREFIX=/usr", p.returncode == 0, tail(p))
    h.check("uninstall empties the stage", os.listdir(stage) == [], sorted(tree(stage)))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
h.done()
