#!/usr/bin/env python3
"""The views into the model: --attention, --attention-overview,
--attention-html and --explain (standard library only).

The attention weights are compared with what transformers returned with
output_attentions=True on the same fixtures (tests/attention/expected.json,
written by tests/gen_attention_expected.py). The HTML page is loaded in
headless Chromium when it is installed (.ci/run installs it): it must render
the matrix without a script error.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

BUILD = os.path.join(ROOT, "tests", "build")
h = Harness("attention")
expected = json.load(open(os.path.join(ROOT, "tests", "attention", "expected.json")))


def export(name):
    out = os.path.join(BUILD, f"attn-{name}.bin")
    os.makedirs(BUILD, exist_ok=True)
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"),
                 os.path.join(ROOT, "tests", "fixtures", name, "hf"), out])
    if p.returncode != 0:
        sys.exit(f"cannot export {name}: {p.stderr.decode()}")
    return out


def parse_matrix(text):
    """The plain --attention output: '# header' then 'i<TAB>token<TAB>w0 w1 ..'."""
    rows = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        i, _tok, ws = line.split("\t")
        rows.append((int(i), [float(x) for x in ws.split()]))
    return rows


# --- the weights equal transformers' ------------------------------------------
for case in expected["cases"]:
    model = export(case["fixture"])
    ids = " ".join(map(str, case["ids"]))
    att = case["attention"]
    worst = 0.0
    for layer, heads in enumerate(att):
        for head, want in enumerate(heads):
            p = run_cmd([RUN, model, "--ids", "-p", ids, "-n", "0", "--attention",
                         "--layer", str(layer), "--head", str(head)])
            if not h.check(f"{case['fixture']} L{layer} H{head}: exits 0", p.returncode == 0, p.stderr):
                continue
            text = p.stdout.decode()
            got = parse_matrix(text.split("\n", 1)[1] if text.startswith("\n") else text)
            h.check(f"{case['fixture']} L{layer} H{head}: one row per position",
                    [i for i, _ in got] == list(range(len(want))), [i for i, _ in got])
            sums_ok = all(abs(sum(r) - 1.0) < 1e-5 * len(r) + 1e-6 for _, r in got)
            h.check(f"{case['fixture']} L{layer} H{head}: rows sum to 1", sums_ok)
            diff = max((abs(a - b) for (_, r), w in zip(got, want) for a, b in zip(r, w)), default=1.0)
            same_shape = all(len(r) == len(w) for (_, r), w in zip(got, want))
            worst = max(worst, diff)
            h.check(f"{case['fixture']} L{layer} H{head}: equals transformers' output_attentions",
                    same_shape and diff < 2e-5, f"max diff {diff}")
    print(f"  {case['fixture']}: {len(att)} layers x {len(att[0])} heads, max |diff| vs transformers {worst:.2g}")

model = export("f32_st_basic")

# --- with generation: the matrix grows by one row per generated token ---------
p = run_cmd([RUN, model, "-p", "The keeper wrote", "-n", "5", "-t", "0", "--attention"])
text = p.stdout.decode("utf-8", "replace")
greedy = run_cmd([RUN, model, "-p", "The keeper wrote", "-n", "5", "-t", "0"]).stdout.decode("utf-8", "replace")
n_prompt = len(run_cmd([RUN, model, "--tokenize", "-p", "The keeper wrote"]).stdout.split())
h.check("--attention: the generated text comes first, unchanged", text.startswith(greedy), (text[:80], greedy))
rows = parse_matrix(text[len(greedy):])
h.check("--attention: a row for the prompt and each generated token", len(rows) == n_prompt + 5, len(rows))
ids_all = " ".join(map(str, expected["cases"][0]["ids"]))
full = parse_matrix(run_cmd([RUN, model, "--ids", "-p", ids_all, "-n", "0", "--attention"]).stdout.decode())
inc = parse_matrix(run_cmd([RUN, model, "--ids", "-p", " ".join(ids_all.split()[:4]), "-n", "0",
                            "--attention"]).stdout.decode())
h.check("--attention: rows do not depend on later tokens (the causal mask)", full[:4] == inc, (full[:4], inc))

# --- errors ---------------------------------------------------------------------
p = run_cmd([RUN, model, "-p", "x", "--attention", "--layer", "9"])
h.check("--layer out of range: exit 2 naming it", p.returncode == 2 and b"--layer" in p.stderr, p.stderr)
p = run_cmd([RUN, model, "-p", "x", "--attention", "--head", "4"])
h.check("--head out of range: exit 2 naming it", p.returncode == 2 and b"--head" in p.stderr, p.stderr)
p = run_cmd([RUN, model, "-p", "x y", "--score", "--attention"])
h.check("--attention with --score: exit 2", p.returncode == 2, p.stderr)

# --- overview ---------------------------------------------------------------------
p = run_cmd([RUN, model, "--ids", "-p", ids_all, "-n", "0", "--attention-overview"])
lines = [l for l in p.stdout.decode().splitlines() if l and not l.startswith("#")]
h.check("--attention-overview: one line per head", p.returncode == 0 and len(lines) == 2 * 4, lines)
ok = True
for l in lines:
    f = l.split("\t")
    ok = ok and len(f) == 7 and all(0.0 <= float(x) <= 1.0 for x in f[2:5]) and float(f[5]) >= 0
h.check("--attention-overview: prev/first/self in [0,1], entropy >= 0", ok, lines[:2])
# on a terminal: a heatmap (script(1) gives the program a pseudo-terminal)
if shutil.which("script"):
    cmd = f"'{RUN}' '{model}' --ids -p '{ids_all}' -n 0 --attention"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env={**os.environ, "TERM": "xterm-256color"}, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    h.check("--attention on a terminal draws 256-colour cells", "\x1b[48;5;" in out, out[:200])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env={**os.environ, "TERM": "xterm-256color", "NO_COLOR": "1"}, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    h.check("--attention with NO_COLOR draws shade blocks", "\x1b[48;5;" not in out and re.search("[\u2591-\u2593\u2588]", out), out[:200])

# --- explain ----------------------------------------------------------------------
p = run_cmd([RUN, model, "-p", "The keeper", "-n", "3", "-t", "0", "--explain", "4"])
err = p.stderr.decode("utf-8", "replace")
blocks = re.findall(r"\[explain\].*?\n((?:  .*\n)+)", err)
h.check("--explain: one block per generated token", len(blocks) == 3, err[:500])
for b in blocks:
    rows = [l for l in b.splitlines() if re.match(r"\s+\d+\s", l)]
    probs = [float(r.split()[1]) for r in rows]
    h.check("--explain: N rows, most likely first", len(rows) == 4 and probs == sorted(probs, reverse=True), rows)
    h.check("--explain greedy: the top token is picked", "<- picked" in rows[0], rows)
p2 = run_cmd([RUN, model, "-p", "The keeper", "-n", "3", "-t", "0"])
h.check("--explain does not change stdout", p.stdout == p2.stdout)
p = run_cmd([RUN, model, "-p", "The keeper", "-n", "4", "-t", "0.9", "-k", "3", "-s", "5", "--explain", "5"])
err = p.stderr.decode("utf-8", "replace")
h.check("--explain with top-k says how many were kept", "drawn from 3 of" in err, err[:300])
sampled = [float(l.split()[2]) for l in err.splitlines() if re.match(r"\s+\d+\s+[\d.]+\s+[\d.]+\s", l)]
h.check("--explain with top-k: tokens past the cut have sampled p 0",
        len(sampled) >= 5 and all(x == 0.0 for x in sampled[3:5]), sampled[:5])

# --- HTML ---------------------------------------------------------------------------
tmp = tempfile.mkdtemp(prefix="attn-")
page = os.path.join(tmp, "attention.html")
p = run_cmd([RUN, model, "-p", "The keeper wrote", "-n", "6", "-t", "0", "--attention-html", page])
h.check("--attention-html exits 0 and writes the page", p.returncode == 0 and os.path.exists(page), p.stderr)
html = open(page, encoding="utf-8").read() if os.path.exists(page) else ""
h.check("the page is self-contained (no external resources)",
        not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and "@import" not in html and "url(" not in html)
h.check("the stdout text is unchanged by --attention-html",
        p.stdout == run_cmd([RUN, model, "-p", "The keeper wrote", "-n", "6", "-t", "0"]).stdout)
p = run_cmd([RUN, model, "-p", "x", "-n", "2", "--attention-html", os.path.join(tmp, "missing", "a.html")])
h.check("--attention-html into a missing directory: exit 1, names the file",
        p.returncode == 1 and b"missing/a.html" in p.stderr, p.stderr)
h.check("no temporary file is left behind", sorted(os.listdir(tmp)) == ["attention.html"], os.listdir(tmp))

chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if not chromium:
    print("  (skipped: headless Chromium is not installed; .ci/run installs it)")
else:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp}/profile", "--enable-logging=stderr", "--v=0"]
    p = subprocess.run([chromium, *flags, "--virtual-time-budget=3000", "--dump-dom", "file://" + page],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    dom = p.stdout.decode("utf-8", "replace")
    log = p.stderr.decode("utf-8", "replace")
    m = re.search(r'data-rendered="(\d+)"', dom)
    n_tok = len(run_cmd([RUN, model, "--tokenize", "-p", "The keeper wrote"]).stdout.split()) + 6
    h.check("Chromium renders the matrix (every lower-triangle cell)",
            m is not None and int(m.group(1)) == n_tok * (n_tok + 1) // 2, (m and m.group(1), n_tok, dom[:300]))
    body = re.search(r"<body[^>]*>", dom)
    h.check("Chromium: no script error", body is not None and "data-error" not in body.group(0)
            and "error:" not in dom.split("</title>")[0], body and body.group(0))
    console_errors = [l for l in log.splitlines() if "CONSOLE" in l and ("Uncaught" in l or "ERROR" in l)]
    h.check("Chromium: no console errors", not console_errors, console_errors[:3])
    h.check("Chromium: the layer and head selectors are filled",
            dom.count("<option") == 2 + 4, dom.count("<option"))

shutil.rmtree(tmp, ignore_errors=True)
h.done()
