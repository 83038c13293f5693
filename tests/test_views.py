#!/usr/bin/env python3
"""The second round of views (standard library only): --logit-lens,
--find-heads, --value-weighted, --trace and the model view of the HTML page.

- The logit lens's last layer is the model's own prediction: its top token and
  probability at every position equal softmax of the logits `--score
  --dump-logits` writes, on models of every family (GPT-2, GPT-Neo, GPT-NeoX,
  OPT, Llama, Qwen2 fixtures); greedy generation picks the lens's last-layer
  token. The other layers are checked against transformers in
  tests/hf_views_parity.py (make test-hf).
- The tables fit an 80- and a 50-column terminal, have no escapes with
  NO_COLOR or TERM=dumb, and show Chinese labels as real characters.
- --find-heads ranks every head once, by the stated rule, reproducibly; its
  scores on constructed attention are checked exactly in tests/test_views.c.
- --trace's numbers agree with the other views of the same run (the softmax
  with --attention's row, the logits with --dump-logits, the argmax with the
  greedy pick); against transformers in tests/hf_views_parity.py.
- The page renders in headless Chromium: every head's grid cell, the head
  view's lines, the lens table, no console error.
"""
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
import math

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

h = Harness("views")
BUILD = os.path.join(ROOT, "tests", "build")
DEFAULT = os.path.join(ROOT, "models", "model.bin")
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
os.makedirs(BUILD, exist_ok=True)


def export(fixdir, name):
    out = os.path.join(BUILD, f"views-{name}.bin")
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", os.path.join(fixdir, name, "hf"), out])
    if p.returncode != 0:
        sys.exit(f"cannot export {name}: {p.stderr.decode()}")
    return out


def parse_lens(text):
    """Plain --logit-lens lines: i, token, layer ('emb' or n), id, label, p -> {(i, layer): (id, p)}."""
    rows = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) != 6 or line.startswith("#"):
            continue
        rows[(int(f[0]), -1 if f[2] == "emb" else int(f[2]))] = (int(f[3]), float(f[5]))
    return rows


def softmax_top(row):
    m = max(row)
    best = row.index(m)
    return best, 1.0 / sum(math.exp(x - m) for x in row)


def read_rows(path, V):
    data = open(path, "rb").read()
    vals = struct.unpack("<%df" % (len(data) // 4), data)
    return [list(vals[i:i + V]) for i in range(0, len(vals), V)]


def on_pty(args, cols=80, env=None):
    pid, fd = pty.fork()
    if pid == 0:
        if env:
            os.environ.update(env)
        os.execv(RUN, [RUN, *args])
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


def columns(line):
    text = ANSI.sub(b"", line).decode("utf-8", "replace")
    wide = re.compile("[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3"
                      "\uf900-\ufaff\uff00-\uff60\uffe0-\uffe6]")
    return sum(2 if wide.match(ch) else 1 for ch in text)


# --- the logit lens: the last layer is the model's own prediction --------------
FAMILIES = [(os.path.join(ROOT, "tests", "fixtures"), "f32_st_basic"),
            (os.path.join(ROOT, "tests", "fixtures_families"), "neo_local_st"),
            (os.path.join(ROOT, "tests", "fixtures_families"), "neox_parallel_hub_bf16_st"),
            (os.path.join(ROOT, "tests", "fixtures_families"), "opt_postln_proj_st"),
            (os.path.join(ROOT, "tests", "fixtures_llama"), "llama_gqa3_llama3_hub_bf16"),
            (os.path.join(ROOT, "tests", "fixtures_llama"), "qwen2_gqa2_t5_bf16_sharded")]
ids = "5 17 99 42 7 260 33 120 8 77 5 17 99 42"
tmp = tempfile.mkdtemp(prefix="views-")
q8 = os.path.join(BUILD, "views-default-q8.bin")  # the default model in 8 bits: the lens reads its Matrix weights too
p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--dtype", "q8", DEFAULT, q8])
h.check("the default model exports to q8", p.returncode == 0, p.stderr)
for fixdir, name in FAMILIES + [(None, "default-q8")]:
    model = export(fixdir, name) if fixdir else q8
    p = run_cmd([RUN, model, "--ids", "-p", ids, "-n", "0", "--logit-lens"])
    if not h.check(f"{name}: --logit-lens exits 0", p.returncode == 0, p.stderr):
        continue
    lens = parse_lens(p.stdout.decode("utf-8", "replace"))
    n_layer = max(l for _, l in lens) + 1
    n = len(ids.split())
    h.check(f"{name}: a line for every position and layer (and the embedding)",
            sorted(lens) == [(i, l) for i in range(n) for l in range(-1, n_layer)], sorted(lens)[:5])
    dump = os.path.join(tmp, name + ".f32")
    q = run_cmd([RUN, model, "--ids", "-p", ids, "--score", "--dump-logits", dump])
    V = os.path.getsize(dump) // 4 // n
    rows = read_rows(dump, V)
    worst, same = 0.0, True
    for i in range(n):
        best, prob = softmax_top(rows[i])
        got = lens.get((i, n_layer - 1), (-1, 0.0))
        top2 = sorted(rows[i])[-2:]
        same = same and (got[0] == best or top2[1] - top2[0] < 1e-4)
        worst = max(worst, abs(got[1] - prob))
    h.check(f"{name}: the last layer's top token is the model's own (--dump-logits)", same)
    h.check(f"{name}: the last layer's probability is softmax of the model's logits", worst < 2e-5, worst)
    ok = all(0.0 < p_ <= 1.0 and 0 <= t < V for t, p_ in lens.values())
    h.check(f"{name}: every probability in (0, 1], every id in the vocabulary", ok)

# greedy generation picks the last layer's token; the generated tokens get rows too
p = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at Mr. Darcy", "-n", "5", "-t", "0", "--logit-lens"])
prompt_ids = run_cmd([RUN, DEFAULT, "--tokenize", "-p", "Elizabeth looked at Mr. Darcy"]).stdout.decode().strip()
greedy = run_cmd([RUN, DEFAULT, "-p", prompt_ids, "-n", "5", "-t", "0", "--ids"]).stdout.split()
text = p.stdout.decode("utf-8", "replace")
plain = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at Mr. Darcy", "-n", "5", "-t", "0"]).stdout.decode()
h.check("--logit-lens: the generated text comes first, unchanged", text.startswith(plain), text[:80])
lens = parse_lens(text[len(plain):])
h.check("--logit-lens: rows for the 6 prompt tokens and the 5 generated", max(i for i, _ in lens) == 10, max(lens))
h.check("--logit-lens: greedy picks the last layer's top token at each step",
        [lens[(5 + k, 3)][0] for k in range(5)] == [int(x) for x in greedy], (greedy, [lens[(5 + k, 3)] for k in range(5)]))
p1 = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at", "-n", "3", "-t", "0", "--logit-lens", "--threads", "1"])
p2 = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at", "-n", "3", "-t", "0", "--logit-lens", "--threads", "2"])
h.check("--logit-lens: the same for any thread count", p1.stdout == p2.stdout and p1.returncode == 0)

# --- the lens in a terminal ------------------------------------------------------
for cols in (80, 50):
    code, out = on_pty([DEFAULT, "-p", "Elizabeth looked at Mr. Darcy, and then at her sister", "-n", "4", "-t", "0",
                        "--logit-lens"], cols=cols, env={"TERM": "xterm-256color"})
    lines = out.split(b"\n")
    h.check(f"--logit-lens on a {cols}-column terminal: exits 0, 256-colour cells",
            code == 0 and b"\x1b[48;5;" in out, out[:200])
    wide = [l for l in lines if columns(l) > cols]
    h.check(f"--logit-lens on a {cols}-column terminal: no line is wider", not wide, wide[:2])
    h.check(f"--logit-lens on a {cols}-column terminal: a header row names the layers",
            any(b"layer 3" in l for l in lines), lines[:8])
    if cols == 50:
        h.check("--logit-lens on 50 columns says which layers are cut", any(b"are cut" in l for l in lines), lines[:8])
for env in ({"TERM": "xterm-256color", "NO_COLOR": "1"}, {"TERM": "dumb"}):
    code, out = on_pty([DEFAULT, "-p", "Elizabeth looked at", "-n", "2", "-t", "0", "--logit-lens"], env=env)
    h.check(f"--logit-lens with {env}: no escapes, a table", code == 0 and b"\x1b[" not in out and b"layer 0" in out,
            out[:300])
code, out = on_pty([DEFAULT, "-p", "我喜欢学习", "-n", "0", "--logit-lens"], env={"TERM": "dumb"})
h.check("--logit-lens labels a split Chinese character as itself with its part",
        "我(1/3)" in out.decode("utf-8", "replace"), out[:400])
p = run_cmd([RUN, DEFAULT, "-p", "我喜欢学习", "-n", "0", "--logit-lens"])
h.check("--logit-lens (plain) labels a split Chinese character as itself with its part",
        "\t我(2/3)\t" in p.stdout.decode("utf-8", "replace"), p.stdout[:300])

# --- errors ---------------------------------------------------------------------------
for args, what in ((["--logit-lens", "--context-shift"], "--context-shift"), (["--logit-lens", "-i"], "-i"),
                   (["--logit-lens", "--score"], "--score"), (["--value-weighted"], "--value-weighted"),
                   (["--find-heads", "-p", "x"], "--prompt"), (["--find-heads", "-n", "3"], "--steps"),
                   (["--find-heads", "--trace"], "--trace"), (["--trace", "--tokenize"], "--trace")):
    p = run_cmd([RUN, DEFAULT, "-p", "x", *args] if "--find-heads" not in args else [RUN, DEFAULT, *args])
    h.check(f"{' '.join(args)}: exit 2 naming {what}", p.returncode == 2 and what.encode() in p.stderr, p.stderr)

# --- find-heads ------------------------------------------------------------------------
p = run_cmd([RUN, DEFAULT, "--find-heads", "-s", "3"])
rows = [l.split("\t") for l in p.stdout.decode().splitlines() if l and not l.startswith("#")]
h.check("--find-heads: exits 0, one row per head (4 layers x 3 heads)", p.returncode == 0 and len(rows) == 12, rows)
h.check("--find-heads: ranks 1..12, every (layer, head) once",
        [int(r[0]) for r in rows] == list(range(1, 13)) and sorted((int(r[1]), int(r[2])) for r in rows)
        == [(l, hh) for l in range(4) for hh in range(3)], rows)
h.check("--find-heads: scores in [0, 1]", all(0 <= float(x) <= 1 for r in rows for x in r[3:6]), rows)


def role(prev, ind, sink):
    return "induction" if ind >= 0.3 else "previous token" if prev >= 0.4 else "sink" if sink >= 0.5 else "-"


def rank_key(r):
    prev, ind, sink = map(float, r[3:6])
    name = role(prev, ind, sink)
    order = ["induction", "previous token", "sink", "-"].index(name)
    score = {"induction": ind, "previous token": prev, "sink": sink}.get(name, max(prev, ind, sink))
    return order, -score


h.check("--find-heads: each role as README defines it (thresholds 0.3, 0.4, 0.5)",
        all(r[6] == role(*map(float, r[3:6])) for r in rows), rows)
keys = [rank_key(r) for r in rows]
h.check("--find-heads: ranked by role, then score", all(keys[i] <= keys[i + 1] for i in range(len(keys) - 1)), keys)
h.check("--find-heads: the same seed gives the same table",
        p.stdout == run_cmd([RUN, DEFAULT, "--find-heads", "-s", "3", "--threads", "1"]).stdout)
h.check("--find-heads: another seed, other tokens, other scores",
        p.stdout != run_cmd([RUN, DEFAULT, "--find-heads", "-s", "4"]).stdout)
# the other views show its last sequence: 50 random tokens, then the same 50 again (after the model's BOS token)
q = run_cmd([RUN, DEFAULT, "--find-heads", "--attention", "--layer", "0", "--head", "0"])
att = [l.split("\t") for l in q.stdout.decode("utf-8", "replace").split("# attention", 1)[-1].splitlines()[1:]]
n_heads_seq = len(att)
h.check("--find-heads --attention: the matrix of the repeated sequence (+ BOS <|endoftext|>)",
        q.returncode == 0 and len(att) == 101 and att[0][1] == "<|endoftext|>"
        and [a[1] for a in att[1:51]] == [a[1] for a in att[51:]], (len(att), att[:2]))
for extra in ([], ["--value-weighted"]):
    code, out = on_pty([DEFAULT, "--find-heads", *extra], env={"TERM": "xterm-256color"})
    h.check(f"--find-heads {' '.join(extra)} on a terminal: an aligned table under 80 columns",
            code == 0 and b"rank  layer  head" in out and all(columns(l) <= 80 for l in out.split(b"\n")), out[:300])

# on a GPT-2 built by hand whose heads do known jobs (tests/heads_model.py)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import heads_model  # noqa: E402
heads_model.write(os.path.join(tmp, "heads-hf"))
hand = os.path.join(BUILD, "views-heads.bin")
p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", os.path.join(tmp, "heads-hf"), hand])
h.check("the hand-built model exports", p.returncode == 0, p.stderr)
p = run_cmd([RUN, hand, "--find-heads"])
rows = [l.split("\t") for l in p.stdout.decode().splitlines() if l and not l.startswith("#")]
h.check("hand-built model: --find-heads names each head's job, induction first",
        [(r[1], r[2], r[6]) for r in rows] == [("1", "0", "induction"), ("0", "0", "previous token"),
                                              ("1", "1", "sink"), ("0", "1", "-")], rows)
score = {("1", "0"): 4, ("0", "0"): 3, ("1", "1"): 5}
h.check("hand-built model: the job's score is 1 (to 1e-3)",
        all(float(r[score[(r[1], r[2])]]) > 0.999 for r in rows[:3]), rows)
harmonic = lambda n: sum(1.0 / k for k in range(1, n + 1))  # noqa: E731
even = ((harmonic(101) - 1) / 100, (harmonic(101) - harmonic(51)) / 50, (harmonic(101) - 1) / 100)
got = [float(x) for x in rows[3][3:6]] if len(rows) == 4 else []
h.check("hand-built model: the all-zero head spreads evenly, P = S = (H_101 - 1)/100, I = (H_101 - H_51)/50",
        len(got) == 3 and all(abs(a - b) < 1e-4 for a, b in zip(got, even)), (got, even))
p = run_cmd([RUN, hand, "--find-heads", "--value-weighted"])
vw_rows = {(r[1], r[2]): [float(x) for x in r[3:6]] for r in
           (l.split("\t") for l in p.stdout.decode().splitlines() if l and not l.startswith("#"))}
h.check("hand-built model, --value-weighted: heads whose values are zero read nothing",
        all(vw_rows.get(k) == [0.0, 0.0, 0.0] for k in (("0", "1"), ("1", "0"), ("1", "1"))), vw_rows)
h.check("hand-built model, --value-weighted: the previous-token head still reads the token before",
        vw_rows.get(("0", "0"), [0])[0] > 0.999, vw_rows)
hand_page = os.path.join(tmp, "hand.html")
p = run_cmd([RUN, hand, "--find-heads", "--attention-html", hand_page])
h.check("hand-built model: --find-heads --attention-html", p.returncode == 0 and os.path.exists(hand_page), p.stderr)

# --- value-weighted ---------------------------------------------------------------------
model = os.path.join(BUILD, "views-f32_st_basic.bin")


def matrix(args):
    p = run_cmd([RUN, model, "--ids", "-p", ids, "-n", "0", "--attention", *args])
    return [[float(x) for x in l.split("\t")[2].split()] for l in p.stdout.decode().splitlines()
            if l and not l.startswith("#")]


raw, vw = matrix([]), matrix(["--value-weighted"])
h.check("--value-weighted: rows still sum to 1", all(abs(sum(r) - 1) < 1e-5 for r in vw) and len(vw) == len(raw))
h.check("--value-weighted: zero where the weight is zero, different elsewhere",
        all((a == 0) == (b == 0) for r, s in zip(raw, vw) for a, b in zip(r, s)) and raw != vw)
# w |v_j| renormalised: the ratio vw/w is the same |v_j| (up to a row's factor) in every row
ratios = [[b / a for a, b in zip(r, s)] for r, s in zip(raw, vw) if len(r) >= 3]
rel = [[x / row[0] for x in row] for row in ratios]
consistent = all(abs(rel[k][j] - rel[-1][j]) < 2e-3 * abs(rel[-1][j]) for k in range(len(rel)) for j in range(len(rel[k])))
h.check("--value-weighted: each key's factor |v_j| is the same in every row", consistent, rel[:2])

# --- trace --------------------------------------------------------------------------------
p = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at Mr. Darcy", "-n", "1", "-t", "0", "--trace"])
out = p.stdout.decode("utf-8", "replace")
steps = re.findall(r"^  (\S.{12}) (\(.{11}) (.*)$", out, re.M)
names = [s[0].strip() for s in steps]
want = ["x = wte+wpe"] + ["ln_1(x)", "q", "k", "v", "scores", "softmax", "weighted sum", "projection",
                          "x + attention", "ln_2(x)", "act(fc)", "mlp", "x"] * 4 + ["ln_f(x)", "logits"]
h.check("--trace: every step of every layer in the README's order", p.returncode == 0 and names == want, names)
h.check("--trace names the token it follows", 'position 5, token 1071 " Darcy"' in out, out[:200])
shapes = dict((s[0].strip(), s[1].strip()) for s in steps)
h.check("--trace: the shapes (C = 192, hd = 64, F = 768, V = 4096, 6 keys)",
        [shapes[k] for k in ("ln_1(x)", "q", "scores", "act(fc)", "logits")]
        == ["(192)", "(64) head 0", "(6) head 0", "(768)", "(4096)"], shapes)
softmax = [[float(x) for x in s[2].split()] for s in steps if s[0].strip() == "softmax"]
att0 = [run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at Mr. Darcy", "-n", "0", "--attention", "--layer", str(l),
                 "--head", "0", "--plain-kernels"]).stdout.decode().splitlines()[-1].split("\t")[2].split()
        for l in range(4)]
h.check("--trace: the softmax is --attention's row of head 0",
        all(abs(a - float(b)) < 2e-6 for s, r in zip(softmax, att0) for a, b in zip(s, r)), (softmax[0], att0[0]))
q = run_cmd([RUN, DEFAULT, "--score", "--plain-kernels", "-p", "Elizabeth looked at Mr. Darcy",
             "--dump-logits", os.path.join(tmp, "trace.f32")])
last = read_rows(os.path.join(tmp, "trace.f32"), 4096)[-1]
logits = [float(x) for x in steps[-1][2].replace("...", "").split()]
h.check("--trace: the logits are the model's (--dump-logits)",
        len(logits) == 6 and all(abs(a - b) < 1e-5 * max(1, abs(b)) for a, b in zip(logits, last)), (logits, last[:6]))
argmax = re.search(r"^  argmax\s+(\d+)$", out, re.M)
greedy = run_cmd([RUN, DEFAULT, "-p", prompt_ids, "-n", "1", "-t", "0", "--ids"]).stdout.split()
h.check("--trace: its argmax is the greedy pick", argmax and [argmax.group(1).encode()] == greedy, (argmax, greedy))
x_lines = [[float(v) for v in s[2].replace("...", "").split()] for s in steps if s[0].strip() in ("x + attention", "x")]
proj = [[float(v) for v in s[2].replace("...", "").split()] for s in steps if s[0].strip() in ("projection", "mlp")]
emb = [float(v) for v in steps[0][2].replace("...", "").split()]
before = [emb] + [x_lines[k] for k in range(len(x_lines) - 1)]
h.check("--trace: each residual is the one before plus the sublayer's output",
        all(abs(b + d - a) < 1e-4 * max(1, abs(a)) for pre, d_, post in zip(before, proj, x_lines)
            for b, d, a in zip(pre, d_, post)))

# --- the page ---------------------------------------------------------------------------------
page = os.path.join(tmp, "page.html")
p = run_cmd([RUN, DEFAULT, "-p", "Elizabeth looked at Mr. Darcy, and then at her sister, who", "-n", "8", "-t", "0",
             "--logit-lens", "--attention-html", page])
h.check("--attention-html with --logit-lens: exits 0", p.returncode == 0 and os.path.exists(page), p.stderr)
html = open(page, encoding="utf-8").read() if os.path.exists(page) else ""
h.check("the page is self-contained", not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
        and "@import" not in html and "url(" not in html and "http" not in html.split("<script>")[1])
h.check("the page carries the lens and each head's role scores", '"lens":[' in html and '"roles":[' in html)
fh = os.path.join(tmp, "heads.html")
p = run_cmd([RUN, DEFAULT, "--find-heads", "--attention-html", fh])
h.check("--find-heads --attention-html writes the page of the repeated sequence", p.returncode == 0 and os.path.exists(fh))

chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if not chromium:
    print("  (skipped: headless Chromium is not installed; .ci/run installs it)")
else:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp}/profile", "--enable-logging=stderr", "--v=0"]
    for path, n_tok, lens_on in ((page, 14 + 8, True), (fh, n_heads_seq, False)):
        p = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", "file://" + path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
        dom = p.stdout.decode("utf-8", "replace")
        log = p.stderr.decode("utf-8", "replace")
        tag = os.path.basename(path)
        body = re.search(r"<body[^>]*>", dom)
        b = body.group(0) if body else ""
        h.check(f"{tag}: no script error", body is not None and "data-error" not in b, b)
        errors = [l for l in log.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "ERROR" in l)]
        h.check(f"{tag}: no console errors", not errors, errors[:3])
        m = re.search(r'data-rendered="(\d+)"', b)
        h.check(f"{tag}: the matrix has every lower-triangle cell",
                m is not None and int(m.group(1)) == n_tok * (n_tok + 1) // 2, (b, n_tok))
        m = re.search(r'data-grid="(\d+)"', b)
        h.check(f"{tag}: the model view draws every head (4 x 3)", m is not None and int(m.group(1)) == 12, b)
        h.check(f"{tag}: 12 grid cells in the document", dom.count('<div class="cell') == 12, dom.count('<div class="cell'))
        m = re.search(r'data-lines="(\d+)"', b)
        h.check(f"{tag}: the head view draws lines", m is not None and int(m.group(1)) > n_tok, b)
        h.check(f"{tag}: a head toggle per head", dom.count('type="checkbox"') == 3, dom.count('type="checkbox"'))
        rows = dom.count("<tr>")
        h.check(f"{tag}: the lens table, a row per position" if lens_on else f"{tag}: no lens table without --logit-lens",
                rows == (n_tok + 1 if lens_on else 0), rows)
    p = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", "file://" + hand_page],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=180)
    cells = [(c.replace(" sel", ""), l, hh) for c, l, hh in  # "sel": the head open above
             re.findall(r'<div class="(cell[^"]*)"[^>]*title="layer (\d+), head (\d+)', p.stdout.decode("utf-8", "replace"))]
    h.check("hand-built model's page: the grid colours each head by its role",
            sorted(cells) == sorted([("cell role-previous", "0", "0"), ("cell", "0", "1"),
                                     ("cell role-induction", "1", "0"), ("cell role-sink", "1", "1")]), cells)
    # roles coloured: on the repeated sequence a page names roles the way --find-heads does
    fhtml = open(fh, encoding="utf-8").read()
    h.check("the --find-heads page carries --find-heads's scores",
            re.search(r'"roles":\[\[[0-9.]+,[0-9.]+,[0-9.]+\]', fhtml) is not None)

shutil.rmtree(tmp, ignore_errors=True)
h.done()
