#!/usr/bin/env python3
"""GPT-Neo, GPT-NeoX and OPT end to end on the committed fixtures (standard
library only).

For each tests/fixtures_families/<name>/ (made by tests/gen_family_fixtures.py
from transformers): export hf/ with export.py to tests/build/<name>.bin
(checkpoint format version 2), then check ./run against what transformers
computed:
  - the logits at every position of the scored ids (--score --ids
    --dump-logits) within max|diff| <= 1e-4 * max|logit|;
  - the --score log-probs within twice that (+1e-6 for the printed rounding);
  - greedy ids (--ids -t 0 -n 64) equal to generate(do_sample=False); a
    divergence is accepted only where the reference's top-two logits are
    closer than the tolerance and run took the runner-up.

VERBOSE=1 prints every passing check; FIXTURES=a,b limits the run.
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

FIXDIR = os.path.join(ROOT, "tests", "fixtures_families")
BUILD = os.path.join(ROOT, "tests", "build")
EXPORT = os.path.join(ROOT, "export.py")
REL_TOL = 1e-4


def read_f32(path):
    with open(path, "rb") as f:
        data = f.read()
    return struct.unpack("<%df" % (len(data) // 4), data[:len(data) // 4 * 4])


def tail(b, n=600):
    s = b.decode("utf-8", "replace").strip()
    return s if len(s) <= n else "..." + s[-n:]


def parse_score(stdout):
    rows = []
    for line in stdout.decode("utf-8", "replace").splitlines():
        pos, tok, lp = line.split("\t")
        rows.append((int(pos), int(tok), float(lp)))
    return rows


def check_fixture(h, name, fixdir=FIXDIR, check_header=None, reference="generate(do_sample=False)"):
    """Export fixtures `fixdir`/`name` and check run against it; `check_header(h, tag, exp,
    header bytes)` checks the family's own header fields; `reference` names what made the
    greedy ids."""
    fdir = os.path.join(fixdir, name)
    with open(os.path.join(fdir, "expected.json"), encoding="utf-8") as f:
        exp = json.load(f)
    tag = f"{name} ({exp['family']})"
    out = os.path.join(BUILD, name + ".bin")
    if os.path.exists(out):
        os.remove(out)
    p = run_cmd([sys.executable, EXPORT, "-q", os.path.join(fdir, "hf"), out])
    if not h.check(f"{tag}: export.py exports it ({exp['about']})", p.returncode == 0, tail(p.stderr)):
        return
    with open(out, "rb") as f:
        head = f.read(256)
    version = struct.unpack_from("<I", head, 8)[0]
    h.check(f"{tag}: written as checkpoint format version 2", version == 2, version)
    if check_header:
        check_header(h, tag, exp, head)

    tol = REL_TOL * exp["max_abs_logit"]
    want = read_f32(os.path.join(fdir, exp["logits_file"]))
    dump = os.path.join(BUILD, name + ".logits")
    if os.path.exists(dump):
        os.remove(dump)
    ids = " ".join(map(str, exp["score_ids"]))
    p = run_cmd([RUN, out, "--score", "--ids", "--dump-logits", dump], input=ids)
    if h.check(f"{tag}: run --score --ids --dump-logits exits 0", p.returncode == 0,
               f"exit {p.returncode}\n{tail(p.stderr)}"):
        got = read_f32(dump) if os.path.exists(dump) else ()
        worst = max((abs(a - b) for a, b in zip(got, want)), default=float("inf"))
        h.check(f"{tag}: logits at all {len(exp['score_ids'])} positions equal transformers' "
                f"(worst {worst:.2e}, bound {tol:.2e})", len(got) == len(want) and worst <= tol,
                f"{len(got)} values, want {len(want)}; worst {worst}")
        try:
            rows = parse_score(p.stdout)
        except ValueError:
            rows = None
        worst_lp = max((abs(a[2] - b[2]) for a, b in zip(rows or (), exp["score"])), default=float("inf"))
        ok = rows is not None and len(rows) == len(exp["score"]) and all(
            (a[0], a[1]) == (b[0], b[1]) and abs(a[2] - b[2]) <= 2 * tol + 1e-6
            for a, b in zip(rows, exp["score"]))
        h.check(f"{tag}: --score log-probs equal transformers' (worst {worst_lp:.2e}, "
                f"bound {2 * tol + 1e-6:.2e})", ok, tail(p.stdout, 300))

    g = exp["greedy"]
    want_ids = list(g["ids"])
    if want_ids and g["stopped_at_eos"] and want_ids[-1] == exp["eos_token_id"]:
        want_ids = want_ids[:-1]   # run stops at end-of-text without printing it
    p = run_cmd([RUN, out, "--ids", "-t", "0", "-n", str(g["max_new_tokens"]),
                 "-p", " ".join(map(str, g["prompt_ids"]))])
    if not h.check(f"{tag}: greedy --ids exits 0", p.returncode == 0, f"exit {p.returncode}\n{tail(p.stderr)}"):
        return
    try:
        got = [int(x) for x in p.stdout.split()]
    except ValueError:
        got = None
    if not h.check(f"{tag}: greedy --ids prints one line of ids", got is not None, tail(p.stdout)):
        return
    what = f"{tag}: greedy {g['max_new_tokens']} ids equal {reference}"
    for k, (a, b) in enumerate(zip(got, want_ids)):
        if a != b:
            if g["top2_margins"][k] < tol and a in g["top2_ids"][k]:
                print(f"  note {name}: greedy diverges at step {k} at a near-tie of the reference "
                      f"(top-two margin {g['top2_margins'][k]:.3g} < {tol:.3g})")
                h.check(what, True)
            else:
                h.check(what, False, f"first difference at step {k}: got {a}, want {b}\n"
                        f"got  {got}\nwant {want_ids}")
            return
    h.check(what, len(got) == len(want_ids), f"got {len(got)} ids, want {len(want_ids)}")


def main():
    h = Harness("families")
    os.makedirs(BUILD, exist_ok=True)
    names = sorted(d for d in os.listdir(FIXDIR) if os.path.isdir(os.path.join(FIXDIR, d)))
    only = [n for n in os.environ.get("FIXTURES", "").split(",") if n]
    h.check("the family fixtures are there (GPT-Neo, GPT-NeoX and OPT)", len(names) >= 6, names)
    for name in names:
        if not only or name in only:
            check_fixture(h, name)
    h.done()


if __name__ == "__main__":
    main()
