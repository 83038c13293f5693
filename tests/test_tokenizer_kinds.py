#!/usr/bin/env python3
"""Section version 3 (issue 14: the pre-tokenizers of Llama-3, Qwen2 and
SmolLM2, and ignore_merges) in `make test` (cc, make, python3 only).

Builds the tokenizer.json files of tests/tokenizer_kinds.py, exports each with
export.py --tokenizer-only, checks the section header (version 3, its
pre-tokenizer kind, ignore_merges, BOS, normalizer), replays
tests/tokenizer/kinds.jsonl (ids made by Hugging Face through
tests/gen_tokenizer_kind_cases.py) through tests/build/test_tokenizer and, for
a few, ./run --tokenize; then checks that the loader refuses what section 2
does not allow, each with its reason.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import Harness, RUN, run_cmd  # noqa: E402
import build_corpus  # noqa: E402
import tokenizer_kinds as K  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
CASES = os.path.join(HERE, "tokenizer", "kinds.jsonl")


def header(data):
    version, n_tokens, n_merges, n_added, blob, _r = struct.unpack_from("<6I", data, 8)
    normalizer, bos, pretok, flags = struct.unpack_from("<IiII", data, 32)
    return dict(version=version, n_tokens=n_tokens, n_merges=n_merges, n_added=n_added, blob=blob,
                normalizer=normalizer, bos=bos, pretok=pretok, flags=flags)


def check_refusals(h, tok_path):
    """Edit one field of a good version-3 section; the loader must refuse it,
    saying why (run exits 3 with the reason)."""
    with open(tok_path, "rb") as f:
        good = f.read()
    hd = header(good)
    added_at = 48 + 4 * (hd["n_tokens"] + 1) + 12 * hd["n_merges"]
    bad_dir = os.path.join(BUILD, "kinds_bad")
    os.makedirs(bad_dir, exist_ok=True)
    edits = [
        ("pre-tokenizer 4", 40, struct.pack("<I", 4), "unknown pre-tokenizer 4"),
        ("flags bit 1", 44, struct.pack("<I", 2), "unknown flags 0x2"),
        ("version 5", 8, struct.pack("<I", 5), "unsupported version 5"),
        ("added token flag 8", added_at + 4, struct.pack("<I", 8 | 1), "unknown flags 0x9"),
    ]
    for name, off, val, want in edits:
        data = bytearray(good)
        data[off:off + len(val)] = val
        path = os.path.join(bad_dir, name.replace(" ", "_") + ".tok")
        with open(path, "wb") as f:
            f.write(bytes(data))
        p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
        err = p.stderr.decode(errors="replace")
        h.check(f"loader refuses a version-3 section with {name}: exit 3, names the file and says "
                f"{want!r}", p.returncode == 3 and want in err and path in err, f"{p.returncode} {err[:300]}")
    # Flag 4 (in the vocabulary) without ignore_merges: clear the section flag.
    data = bytearray(good)
    data[44:48] = struct.pack("<I", 0)
    data[added_at + 4:added_at + 8] = struct.pack("<I", 4 | 1)
    path = os.path.join(bad_dir, "in_vocab_without_ignore_merges.tok")
    with open(path, "wb") as f:
        f.write(bytes(data))
    p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
    err = p.stderr.decode(errors="replace")
    h.check("loader refuses added-token flag 4 without ignore_merges", p.returncode == 3 and
            "without ignore_merges" in err, f"{p.returncode} {err[:300]}")
    # A version-2 section may not use the fields version 3 gives a meaning.
    data = bytearray(good)
    data[8:12] = struct.pack("<I", 2)
    for i in range(hd["n_added"]):   # version 2 knows flags 1 and 2 only
        o = added_at + 8 * i + 4
        data[o:o + 4] = struct.pack("<I", struct.unpack_from("<I", data, o)[0] & 3)
    path = os.path.join(bad_dir, "v2_with_pretok.tok")
    with open(path, "wb") as f:
        f.write(bytes(data))
    p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
    err = p.stderr.decode(errors="replace")
    h.check("loader refuses a version-2 section whose reserved fields hold a pre-tokenizer",
            p.returncode == 3 and "reserved" in err, f"{p.returncode} {err[:300]}")


def main():
    h = Harness("tokenizer_kinds")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer is built (make tests/build/test_tokenizer)", False)
        h.done()
    kdir = os.path.join(BUILD, "kinds")
    toks = {}
    for kind, build in K.KINDS.items():
        d = build(os.path.join(kdir, kind))
        tok = os.path.join(kdir, kind + ".tok")
        p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok])
        if not h.check(f"{kind}: export.py --tokenizer-only exports it", p.returncode == 0,
                       p.stderr.decode(errors="replace")):
            continue
        toks[kind] = tok
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        ids = {t["content"]: t["id"] for t in tj["added_tokens"]}
        with open(tok, "rb") as f:
            hd = header(f.read(48))
        want = dict(version=3, pretok=K.KIND_IDS[kind],
                    flags=1 if tj["model"]["ignore_merges"] else 0,
                    normalizer=1 if tj["normalizer"] else 0,
                    bos=ids["<|begin_of_text|>"] if kind == "llama3" else -1, n_added=len(ids))
        got = {k: hd[k] for k in want}
        h.check(f"{kind}: section header {want}", got == want, got)

    # SmolLM2's own tokenizer_config.json names GPT2Tokenizer, which transformers 5
    # rebuilds without the Digits step: exported as tokenizer.json says, with a warning.
    if "smollm2" in toks:
        d = os.path.join(kdir, "smollm2")
        with open(os.path.join(d, "tokenizer_config.json")) as f:
            cfg = json.load(f)
        d2 = K.write(os.path.join(kdir, "smollm2_gpt2class"),
                     json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8")),
                     dict(cfg, tokenizer_class="GPT2Tokenizer"))
        tok2 = os.path.join(kdir, "smollm2_gpt2class.tok")
        p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d2, tok2])
        err = p.stderr.decode(errors="replace")
        h.check("smollm2 with tokenizer_class GPT2Tokenizer: exported as tokenizer.json says (the same "
                "section), with a warning that transformers 5 drops the Digits step",
                p.returncode == 0 and open(tok2, "rb").read() == open(toks["smollm2"], "rb").read()
                and "transformers 5 rebuilds it" in err and "Digits" in err, err)

    with open(CASES, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f if line.strip()]
    for kind, tok in toks.items():
        mine = [c for c in cases if c["kind"] == kind]
        got = build_corpus.run_cases(DRIVER, tok, [(c["name"], c["text"], c["special"]) for c in mine],
                                     os.path.join(BUILD, f"kinds_{kind}.bin"))
        bad = [(c, g) for c, g in zip(mine, got) if g != c["ids"]]
        for c, g in bad[:5]:
            print(f"  mismatch {kind} {c['name']} special={c['special']}: {c['text'][:50]!r}\n"
                  f"    got  {g[:16]}\n    want {c['ids'][:16]}")
        n_special = sum(1 for c in mine if c["special"])
        h.check(f"{kind}: ids of {len(mine)} committed cases ({n_special} with special tokens) == HF's",
                mine and not bad and len(got) == len(mine), f"{len(bad)} mismatched")
        names = {c["name"] for c in mine}
        for what in ("contraction IT'S", "contraction x'ſ", "digits 4", "newline \\r\\n between",
                     "newline   \\n   at end", "chat template", "whole words", "empty"):
            h.check(f"{kind}: committed cases cover {what!r}", what in names)
        for c in [c for c in mine if c["name"] in ("digits 7", "chat template", "contraction WE'Ve")]:
            args = [RUN, tok, "--tokenize"] + (["--special"] if c["special"] else [])
            p = run_cmd(args, input=c["text"].encode())
            h.check(f"{kind}: run --tokenize{' --special' if c['special'] else ''} on {c['name']!r} "
                    f"gives HF's ids", p.stdout.decode().split() == [str(i) for i in c["ids"]],
                    p.stdout.decode()[:200] + p.stderr.decode(errors="replace")[:200])
    # ignore_merges is seen: Llama-3's whole words are single tokens there.
    if "llama3" in toks:
        with open(os.path.join(kdir, "llama3", "tokenizer.json"), encoding="utf-8") as f:
            vocab = json.load(f)["model"]["vocab"]
        c = next(c for c in cases if c["kind"] == "llama3" and c["name"] == "whole words")
        whole = [vocab[w] for w in K.WHOLE_WORDS if vocab[w] > 50256]
        h.check("llama3: HF's ids of 'whole words' hold the words GPT-2's merges cannot build "
                "(ignore_merges at work)", all(i in c["ids"] for i in whole), (whole, c["ids"]))
        check_refusals(h, toks["llama3"])
    h.done()


if __name__ == "__main__":
    main()
