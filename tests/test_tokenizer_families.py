#!/usr/bin/env python3
"""The tokenizers of the new model families (issue 13) in `make test` (cc, make,
python3 only).

Builds the GPT-NeoX-style and OPT-style tokenizer files of
tests/tokenizer_families.py, exports each with export.py --tokenizer-only,
checks the section (version 2, its normalizer, BOS and added tokens), and
replays tests/tokenizer/families.jsonl (ids made by Hugging Face through
tests/gen_tokenizer_family_cases.py) through tests/build/test_tokenizer and,
for a few, ./run --tokenize. Then checks tokenizer.c's NFC against Python's
unicodedata, code point by code point and on random strings, for the code
points of Unicode 9.0 (tests/tokenizer/unicode9.txt), whose data HF tokenizers'
NFC uses (tests/hf_tokenizer_families.py checks every code point against
tokenizers itself).
"""
import json
import os
import random
import struct
import sys
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import Harness, RUN, run_cmd  # noqa: E402
import build_corpus  # noqa: E402
import tokenizer_families as F  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
CASES = os.path.join(HERE, "tokenizer", "families.jsonl")


def section_header(path):
    with open(path, "rb") as f:
        data = f.read(48)
    version, n_tokens, _n_merges, n_added = struct.unpack_from("<4I", data, 8)
    normalizer, bos = struct.unpack_from("<Ii", data, 32)
    return version, n_tokens, n_added, normalizer, bos


def nfc_ours(tok, text):
    p = run_cmd([DRIVER, "nfc", tok], input=text.encode("utf-8", "surrogatepass"))
    return p.stdout.decode("utf-8", "surrogatepass") if p.returncode == 0 else None


def unicode9():
    present = bytearray(0x110000)
    with open(os.path.join(HERE, "tokenizer", "unicode9.txt")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                a, b = (int(x, 16) for x in line.split())
                present[a:b + 1] = b"\x01" * (b + 1 - a)
    return present


def check_nfc(h, tok):
    present = unicode9()
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and present[c]
           and unicodedata.category(chr(c)) != "Cn"]
    text = "".join("\n" + chr(c) for c in cps)
    want = "".join("\n" + unicodedata.normalize("NFC", chr(c)) for c in cps)
    got = nfc_ours(tok, text)
    bad = [] if got == want else [c for c in cps if nfc_ours(tok, chr(c)) != unicodedata.normalize("NFC", chr(c))]
    h.check(f"NFC of each of the {len(cps)} code points of Unicode 9.0 == Python's "
            f"(Unicode {unicodedata.unidata_version})",
            got == want, [f"U+{c:04X}" for c in bad[:10]])
    nfd = unicodedata.normalize("NFD", text)
    h.check("NFC of all those code points decomposed (NFD) == Python's", nfc_ours(tok, nfd) == want)
    newer = "".join(chr(c) for c in (0x1DF6, 0x11A34, 0x10F46, 0x0EBA, 0x1AC1, 0x0898))
    h.check("marks newer than Unicode 9.0 are left unordered, as tokenizers leaves them",
            nfc_ours(tok, "a\u0345" + newer) == "a\u0345" + newer)
    # Random strings of letters, combining marks of several classes, Hangul jamo
    # and characters with singleton or excluded decompositions.
    pool = (list("aeiouAEIOUcnszKk ") + [chr(c) for c in range(0x300, 0x370)] +
            [chr(c) for c in (0x1100, 0x1112, 0x1161, 0x1175, 0x11A8, 0x11C2, 0xAC00, 0xAC01, 0xD7A3,
                              0x0591, 0x05B0, 0x0E38, 0x0F71, 0x0F72, 0x0F73, 0x0F80, 0x302A, 0x3099,
                              0x304B, 0x0345, 0x0344, 0x0B47, 0x0B3E, 0x0B56, 0x0B57, 0x212B, 0x2126,
                              0x00C5, 0x1E9B, 0x017F, 0x03B1, 0x1F00, 0x0958, 0x0915, 0x093C, 0x1D15E,
                              0x1D165, 0x1D16E, 0x11131, 0x11127, 0x0CC6, 0x0CD5, 0x0CC2)])
    rng = random.Random(13)
    strings = ["".join(rng.choice(pool) for _ in range(rng.randint(1, 14))) for _ in range(4000)]
    joined = "".join(strings)
    h.check("NFC of 4,000 random strings of marks, jamo and letters, run together, == Python's",
            nfc_ours(tok, joined) == unicodedata.normalize("NFC", joined))
    bad = [s for s in strings[:300] if nfc_ours(tok, s) != unicodedata.normalize("NFC", s)]
    h.check("NFC of 300 of them one by one == Python's", not bad, [s.encode() for s in bad[:3]])
    raw = b"\xff" + "e\u0301\u1100\u1161".encode() + b"\xf0(" + "x\u0301".encode() + b"\xc3"
    want = b"\xff" + "\u00e9\uac00".encode() + b"\xf0(" + "x\u0301".encode() + b"\xc3"
    p = run_cmd([DRIVER, "nfc", tok], input=raw)
    h.check("ill-formed UTF-8 bytes pass NFC unchanged, the characters around them are normalized",
            p.stdout == want, p.stdout)


def main():
    h = Harness("tokenizer_families")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer is built (make tests/build/test_tokenizer)", False)
        h.done()
    fam_dir = os.path.join(BUILD, "families")
    toks = {}
    expect = {"neox": (1, -1, 2 + len(F.SPACE_RUNS)), "opt": (0, 2, 2)}
    for family, build in F.FAMILIES.items():
        d = build(os.path.join(fam_dir, family))
        tok = os.path.join(fam_dir, family + ".tok")
        p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok])
        if not h.check(f"{family}: export.py --tokenizer-only exports it", p.returncode == 0,
                       p.stderr.decode(errors="replace")):
            continue
        toks[family] = tok
        version, _n, n_added, norm, bos = section_header(tok)
        h.check(f"{family}: section version 2 with normalizer, BOS, added tokens {expect[family]}",
                (version, norm, bos, n_added) == (2,) + expect[family], (version, norm, bos, n_added))

    with open(CASES, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    for family, tok in toks.items():
        mine = [c for c in cases if c["family"] == family]
        got = build_corpus.run_cases(DRIVER, tok, [(c["name"], c["text"], c["special"]) for c in mine],
                                     os.path.join(BUILD, f"families_{family}.bin"))
        bad = [(c, g) for c, g in zip(mine, got) if g != c["ids"]]
        for c, g in bad[:5]:
            print(f"  mismatch {family} {c['name']} special={c['special']}: {c['text'][:50]!r}\n"
                  f"    got  {g[:16]}\n    want {c['ids'][:16]}")
        n_special = sum(1 for c in mine if c["special"])
        h.check(f"{family}: ids of {len(mine)} committed cases ({n_special} with special tokens) == HF's",
                mine and not bad and len(got) == len(mine), f"{len(bad)} mismatched")
        names = {c["name"] for c in mine}
        for kind in ("spaces 24 between", "spaces 25 between", "NFD accents", "Hangul jamo", "Chinese",
                     "emoji", "special </s>", "empty"):
            h.check(f"{family}: committed cases cover {kind!r}", any(n.startswith(kind) for n in names))
        # ./run on the same section file.
        for c in [c for c in mine if c["name"] in ("NFD accents", "spaces 30 between words",
                                                    "special </s> in text", "empty")]:
            args = [RUN, tok, "--tokenize"] + (["--special"] if c["special"] else [])
            p = run_cmd(args, input=c["text"].encode())
            h.check(f"{family}: run --tokenize{' --special' if c['special'] else ''} on {c['name']!r} "
                    f"gives HF's ids", p.stdout.decode().split() == [str(i) for i in c["ids"]],
                    p.stdout.decode()[:200] + p.stderr.decode(errors="replace")[:200])
    if "neox" in toks:
        check_nfc(h, toks["neox"])
    h.done()


if __name__ == "__main__":
    main()
