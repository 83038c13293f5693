#!/usr/bin/env python3
"""The default model in models/: the C engine reproduces the validation
perplexity recorded at training time, and `./run` with no model argument
generates text from it.

Standard library only. Needs ./run (make run) and models/model.bin.
"""
import json
import math
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, RUN, Harness, run_cmd  # noqa: E402

MODELS = os.path.join(ROOT, "models")
MODEL = os.path.join(MODELS, "model.bin")
VALID = os.path.join(MODELS, "valid.txt")
PPL_JSON = os.path.join(MODELS, "valid_ppl.json")
SCORE_LINE = re.compile(r"^score: tokens=(\d+) mean_nll=(\S+) perplexity=(\S+)$")


def run(args, **kw):
    # relative paths on purpose: the default model path is relative to the repo
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        return run_cmd([RUN] + args, **kw)
    finally:
        os.chdir(old)


def main():
    h = Harness("model")
    have = {p: os.path.exists(p) for p in (RUN, MODEL, VALID, PPL_JSON)}
    for p, ok in have.items():
        h.check(f"{os.path.relpath(p, ROOT)} exists", ok)
    if not all(have.values()):
        h.done()

    with open(PPL_JSON) as f:
        rec = json.load(f)
    want_ppl, want_tokens = rec["perplexity"], rec["tokens"]
    h.check("valid_ppl.json is consistent",
            abs(math.exp(rec["mean_nll"]) - want_ppl) < 1e-6 * want_ppl
            and rec["tokens"] == rec["valid_tokens"] - rec["chunks"],
            rec)

    # The C tokenizer splits valid.txt into as many tokens as the trainer's.
    p = run(["models/model.bin", "--tokenize", "-f", "models/valid.txt"], timeout=300)
    ids = p.stdout.split()
    h.check("--tokenize valid.txt exits 0", p.returncode == 0, p.stderr.decode(errors="replace")[-500:])
    h.check("--tokenize valid.txt gives the trainer's token count",
            len(ids) == rec["valid_tokens"], f"got {len(ids)} want {rec['valid_tokens']}")

    # Scoring the held-out text reproduces the recorded perplexity within 1%.
    p = run(["models/model.bin", "--score", "-f", "models/valid.txt"], timeout=900)
    err = p.stderr.decode(errors="replace")
    h.check("--score valid.txt exits 0", p.returncode == 0, err[-500:])
    lines = err.strip().splitlines()
    m = SCORE_LINE.match(lines[-1]) if lines else None
    if h.check("--score prints the score: line last on stderr", m is not None, err[-500:]):
        tokens, nll, ppl = int(m.group(1)), float(m.group(2)), float(m.group(3))
        h.check("scored token count matches training-time evaluation",
                tokens == want_tokens, f"got {tokens} want {want_tokens}")
        h.check("perplexity within 1%% of models/valid_ppl.json (%.4f)" % want_ppl,
                abs(ppl - want_ppl) <= 0.01 * want_ppl, f"got {ppl} want {want_ppl}")
        rows = p.stdout.decode(errors="replace").splitlines()
        try:
            total = -sum(float(r.split("\t")[2]) for r in rows)
        except (IndexError, ValueError):
            total = float("nan")
        h.check("per-token logprobs add up to the reported mean_nll",
                len(rows) == tokens and abs(total / max(tokens, 1) - nll) < 1e-4,
                f"{len(rows)} rows, mean {total / max(tokens, 1)} vs {nll}")

    # With no model argument, ./run uses the default model and prints text.
    p = run(["-n", "20", "-s", "1", "-p", "It is a truth universally acknowledged"], timeout=120)
    out = p.stdout.decode("utf-8", errors="replace")
    h.check("./run -n 20 -s 1 -p ... (default model) exits 0", p.returncode == 0,
            p.stderr.decode(errors="replace")[-500:])
    h.check("... and prints text", len(out.strip()) > 0 and sum(c.isalpha() for c in out) >= 10,
            repr(out))
    p2 = run(["-n", "20", "-s", "1", "-p", "It is a truth universally acknowledged"], timeout=120)
    h.check("... the same text again with the same seed", p2.stdout == p.stdout,
            f"{out!r} vs {p2.stdout.decode(errors='replace')!r}")
    h.done()


if __name__ == "__main__":
    main()
