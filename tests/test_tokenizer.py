#!/usr/bin/env python3
"""Tokenizer tests for `make test` (cc, make, python3 only).

Builds tests/build/gpt2.tok from tests/data/gpt2 with export.py, runs the C
unit tests (tests/build/test_tokenizer unit), then checks the driver against
the expected values committed in tests/tokenizer/ (made by the reference
tokenizers through tests/gen_tokenizer_cases.py):
  cases.jsonl   ids of edge cases and samples of several languages and code,
                and the byte lengths of the pre-tokens of the plain ones
  classes.txt   L / N / S / O class of every code point
and checks that the generated Unicode table in tokenizer.c is well formed.
"""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import Harness, run_cmd  # noqa: E402
import build_corpus  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
TOK = os.path.join(BUILD, "gpt2.tok")
DATA = os.path.join(HERE, "tokenizer")


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    h = Harness("tokenizer")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer is built (make tests/build/test_tokenizer)", False)
        h.done()
    os.makedirs(BUILD, exist_ok=True)
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "--tokenizer-only",
                 os.path.join(HERE, "data", "gpt2"), TOK])
    if not h.check("export.py --tokenizer-only builds tests/build/gpt2.tok", p.returncode == 0,
                   p.stderr.decode(errors="replace")):
        h.done()

    # C unit tests: fold their counts into ours.
    p = run_cmd([DRIVER, "unit", TOK], timeout=600)
    out = p.stdout.decode(errors="replace")
    m = re.search(r"^(\d+) passed, (\d+) failed\s*$", out, re.M)
    for line in out.splitlines():
        if line.strip().startswith("FAIL") or "error" in line:
            print(line)
    if m:
        h.passed += int(m.group(1))
        h.failed += int(m.group(2))
        print(f"  C unit tests: {m.group(1)} passed, {m.group(2)} failed")
    h.check("C unit tests ran to the end and exited 0", m is not None and p.returncode == 0,
            f"exit {p.returncode}; stderr: {p.stderr.decode(errors='replace')[-500:]}")

    # Expected ids from the reference tokenizers.
    cases = load_jsonl(os.path.join(DATA, "cases.jsonl"))
    got = build_corpus.run_cases(DRIVER, TOK, [(c["name"], c["text"], c["special"]) for c in cases],
                                 os.path.join(BUILD, "test_cases.bin"))
    bad = [c for c, g in zip(cases, got) if g != c["ids"]]
    for c in bad[:10]:
        g = got[cases.index(c)]
        print(f"  mismatch {c['name']}: {c['text'][:60]!r}\n    got  {g[:16]}\n    want {c['ids'][:16]}")
    n_bytes = sum(len(c["text"].encode()) for c in cases)
    h.check(f"ids of {len(cases)} committed cases ({n_bytes} bytes) match tiktoken/HF",
            not bad and len(got) == len(cases), f"{len(bad)} mismatched")
    names = {c["name"] for c in cases}
    for kind in ("contraction", "ws run", "space U+", "emoji", "flags", "combining", "CJK", "Arabic",
                 "Devanagari", "Thai", "Lm", "Lo", "Nd", "Nl", "No", "astral", "10k", "special",
                 "fortune:zh", "fortune:ru", "fortune:de", "fortune:es", "fortune:cs",
                 "fortune:bg", "fortune:pt", "fortune:it", "bible:", "source:"):
        h.check(f"committed cases cover {kind!r}", any(kind in n for n in names))

    # Pre-token boundaries.
    splits = [c for c in cases if "lengths" in c]
    got = build_corpus.run_cases(DRIVER, TOK, [(s["name"], s["text"], False) for s in splits],
                                 os.path.join(BUILD, "test_splits.bin"), split=True)
    bad = [s for s, g in zip(splits, got) if g != s["lengths"]]
    for s in bad[:5]:
        print(f"  split mismatch {s['name']}: {s['text'][:60]!r}")
    h.check(f"pre-token boundaries of {len(splits)} cases match HF's pre-tokenizer", not bad,
            f"{len(bad)} mismatched")

    # Character classes of every code point.
    want = []
    with open(os.path.join(DATA, "classes.txt")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                a, k = line.split()
                want.append((int(a, 16), k))
    p = run_cmd([DRIVER, "classes", TOK])
    mine = [(int(a, 16), k) for a, k in (line.split() for line in p.stdout.decode().splitlines())]
    h.check(f"class ranges of all code points match the references ({len(want)} ranges)",
            mine == want, next((f"first difference: ours {x} want {y}"
                                for x, y in zip(mine, want) if x != y), f"{len(mine)} vs {len(want)}"))

    # Driver modes and special tokens.
    p = run_cmd([DRIVER, "encode", TOK], input=b"Hello<|endoftext|>")
    q = run_cmd([DRIVER, "encode", TOK, "--special"], input=b"Hello<|endoftext|>")
    h.check("special tokens are plain text unless --special",
            "50256" not in p.stdout.decode().split() and q.stdout.decode().split()[-1] == "50256")
    text = "Grüße, 世界! 👍🏽 \xff\xfe".encode("utf-8", "surrogateescape") + b"\xff\xe4\xbd"
    p = run_cmd([DRIVER, "encode", TOK], input=text)
    q = run_cmd([DRIVER, "decode", TOK], input=p.stdout)
    h.check("encode then streaming decode returns the bytes (invalid UTF-8 included)",
            q.stdout == text, f"{q.stdout!r} vs {text!r}")

    # The generated table in tokenizer.c: markers, version, sorted ranges.
    with open(os.path.join(ROOT, "tokenizer.c"), encoding="utf-8") as f:
        src = f.read()
    m = re.search(r"BEGIN GENERATED UNICODE TABLE.*?UCLASS_UNICODE_VERSION \"([\d.]+)\".*?"
                  r"uclass_ranges\[(\d+)\] = \{(.*?)\};.*?END GENERATED UNICODE TABLE", src, re.S)
    ok = m is not None
    if ok:
        vals = [int(v, 16) for v in re.findall(r"0x[0-9A-F]+", m.group(3))]
        ok = (len(vals) == int(m.group(2)) and vals == sorted(vals) and m.group(1) == "16.0.0")
    h.check("generated Unicode 16.0.0 table in tokenizer.c is well formed", ok)
    h.done()


if __name__ == "__main__":
    main()
