#!/usr/bin/env python3
"""Section version 4 (SentencePiece-style BPE with byte fallback: Llama-2's and
TinyLlama's tokenizer.json) in `make test` (cc, make, python3 only).

Builds each variant of tests/tokenizer_spm.py from the committed base
tokenizer, exports it with export.py --tokenizer-only, checks the section
header (version 4, normalizer, pre-tokenizer, flags, unk_id, BOS), replays
tests/tokenizer/spm.jsonl (ids and decoded text made by Hugging Face through
tests/gen_tokenizer_spm_cases.py) through tests/build/test_tokenizer (ids
by the direct BPE scan and by the heap, decoding as a whole text) and, for a
few, ./run --tokenize / --detokenize; round trips of bytes that are not
UTF-8; a 1 MB line (one BPE word) in a few seconds; then the loader's refusals
of corrupt version-4 sections, each with its reason.
"""
import json
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import Harness, RUN, run_cmd  # noqa: E402
import build_corpus  # noqa: E402
import tokenizer_spm as S  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
CASES = os.path.join(HERE, "tokenizer", "spm.jsonl")
OUT = os.path.join(BUILD, "spm")


def header(data):
    version, n_tokens, n_merges, n_added, blob, _r = struct.unpack_from("<6I", data, 8)
    normalizer, bos, pre, flags, unk = struct.unpack_from("<IiIIi", data, 32)
    return dict(version=version, n_tokens=n_tokens, n_merges=n_merges, n_added=n_added, blob=blob,
                normalizer=normalizer, bos=bos, pre=pre, flags=flags, unk=unk)


def decodes(tok, id_lists, path):
    """Each id list decoded as a whole text by the driver (bytes)."""
    with open(path, "w") as f:
        for ids in id_lists:
            f.write(" ".join(map(str, ids)) + "\n")
    data = subprocess.run([DRIVER, "decodes", tok, path], stdout=subprocess.PIPE, check=True,
                          timeout=300).stdout
    out, pos = [], 0
    for _ in id_lists:
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl])
        out.append(data[nl + 1:nl + 1 + n])
        pos = nl + 1 + n
    return out


def export(h, name, d, tok):
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok])
    err = p.stderr.decode(errors="replace")
    ok = h.check(f"{name}: export.py --tokenizer-only exports it", p.returncode == 0, err)
    if ok and name.startswith("hub_llama"):
        h.check(f"{name}: export.py warns that transformers 5 rebuilds the tokenizer (and tokenizers' "
                f"reading of tokenizer.json differs)", "transformers 5 rebuilds" in err and "Metaspace" in err, err)
    elif ok:
        h.check(f"{name}: no warning", err == "", err)
    return ok


def check_refusals(h, tok_path):
    """Edit one field of a good version-4 section: the loader must refuse it
    with its reason (run exits 3)."""
    with open(tok_path, "rb") as f:
        good = f.read()
    hd = header(good)
    added_at = 64 + 4 * (hd["n_tokens"] + 1) + 12 * hd["n_merges"]
    bad_dir = os.path.join(OUT, "bad")
    os.makedirs(bad_dir, exist_ok=True)
    u32 = lambda v: struct.pack("<I", v & 0xFFFFFFFF)  # noqa: E731
    edits = [
        ("normalizer 1 (NFC)", 32, u32(1), "unknown normalizer 1 for version 4"),
        ("normalizer 3", 32, u32(3), "unknown normalizer 3 for version 4"),
        ("pre-tokenizer 2", 40, u32(2), "unknown pre-tokenizer 2 for version 4"),
        ("flags bit 6", 44, u32(hd["flags"] | 64), "unknown flags"),
        ("prepend_scheme 3", 44, u32(hd["flags"] | 12), "unknown prepend_scheme 3"),
        ("unk_id past n_tokens", 48, u32(hd["n_tokens"]), "unk_id"),
        ("unk_id -2", 48, u32(-2), "unk_id -2"),
        ("bos_id past n_tokens", 36, u32(hd["n_tokens"] + 5), "bos_id"),
        ("reserved field 52", 52, u32(1), "reserved"),
        ("reserved field 60", 60, u32(7), "reserved"),
        ("added token flag 8", added_at + 4, u32(8 | 1), "unknown flags 0x9"),
        ("n_tokens one more", 12, u32(hd["n_tokens"] + 1), "size mismatch"),
        ("a merge of tokens that do not join", 64 + 4 * (hd["n_tokens"] + 1) + 8, u32(5), "not the concatenation"),
    ]
    if hd["pre"] == 0:
        edits.append(("split without Metaspace", 44, u32(hd["flags"] | 16), "without the Metaspace"))
    for name, off, val, want in edits:
        data = bytearray(good)
        data[off:off + len(val)] = val
        path = os.path.join(bad_dir, name.replace(" ", "_") + ".tok")
        with open(path, "wb") as f:
            f.write(bytes(data))
        p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
        err = p.stderr.decode(errors="replace")
        h.check(f"loader refuses a version-4 section with {name}: exit 3, names the file and says {want!r}",
                p.returncode == 3 and want in err and path in err, f"{p.returncode} {err[:300]}")
    for cut in (63, len(good) - 1):
        path = os.path.join(bad_dir, f"cut_{cut}.tok")
        with open(path, "wb") as f:
            f.write(good[:cut])
        p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
        h.check(f"loader refuses a version-4 section cut to {cut} bytes (exit 3)", p.returncode == 3,
                p.stderr.decode(errors="replace")[:200])


def check_long_line(h, tok, name):
    """A 1 MB line with no newline is one BPE word (no pre-tokenizer): the heap
    keeps it O(n log n). The scan/heap and cached/uncached ids agree."""
    # letters and spaces only: no byte token (none of which is in a merge of
    # this vocabulary) cuts the word, so the heap holds the whole line
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Grüße", "мир",
             "and", "of", "", "x"]
    parts, n, i = [], 0, 0
    while n < 1 << 20:
        w = words[(i * 7 + i // 5) % len(words)]
        parts.append(w)
        n += len(w.encode()) + 1
        i += 1
    text = " ".join(parts).encode()
    path = os.path.join(OUT, "long_line.txt")
    with open(path, "wb") as f:
        f.write(text)
    t0 = time.time()
    out = subprocess.run([DRIVER, "bench", tok, path, "1"], stdout=subprocess.PIPE, timeout=120).stdout.split()
    secs = time.time() - t0
    h.check(f"{name}: a {len(text)}-byte line (one BPE word) encodes in under 10 s "
            f"({secs:.2f} s, {out[1].decode() if len(out) > 1 else '?'} tokens)", len(out) > 2 and secs < 10,
            out[:3])
    cases = [("long", text.decode(), False)]
    a = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, "long_cases.bin"))
    b = run_heap(tok, cases)
    h.check(f"{name}: the 1 MB line's ids are the same by the heap without cache", a == b and len(a[0]) > 1000)


def run_heap(tok, cases):
    path = os.path.join(OUT, "heap_cases.bin")
    build_corpus.write_cases(path, cases)
    proc = subprocess.run([DRIVER, "cases", tok, path, "--heap"], stdout=subprocess.PIPE, check=True,
                          timeout=300)
    lines = proc.stdout.decode().split("\n")
    return [[int(x) for x in line.split()] for line in lines[:len(cases)]]


def main():
    h = Harness("tokenizer_spm")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer is built (make tests/build/test_tokenizer)", False)
        h.done()
    os.makedirs(OUT, exist_ok=True)
    with open(CASES, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    toks = {}
    for name in S.VARIANTS:
        d = S.write(name, os.path.join(OUT, name))
        tok = os.path.join(OUT, name + ".tok")
        if not export(h, name, d, tok):
            continue
        toks[name] = tok
        with open(tok, "rb") as f:
            hd = header(f.read(64))
        norm, pre, flags, unk = S.expected_header(name)
        want = dict(version=4, normalizer=norm, pre=pre, flags=flags, unk=unk, bos=1, n_added=S.n_added(name))
        got = {k: hd[k] for k in want}
        h.check(f"{name}: section header {want}", got == want, got)

        mine = [r for r in rows if name in r["ids"]]
        cases = [(r["name"], r["text"], r["special"]) for r in mine]
        got = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, f"{name}.bin"))
        bad = [(r, g) for r, g in zip(mine, got) if g != r["ids"][name]]
        for r, g in bad[:5]:
            print(f"  mismatch {name} {r['name']} special={r['special']}: {r['text'][:50]!r}\n"
                  f"    got  {g[:16]}\n    want {r['ids'][name][:16]}")
        n_special = sum(1 for r in mine if r["special"])
        h.check(f"{name}: ids of {len(mine)} committed cases ({n_special} with special tokens) == HF's",
                mine and not bad and len(got) == len(mine), f"{len(bad)} mismatched")
        heap = run_heap(tok, cases)
        h.check(f"{name}: the same ids with every word through the heap and no word cache", heap == got)
        dec = decodes(tok, [r["ids"][name] for r in mine], os.path.join(OUT, f"{name}.ids"))
        want_dec = [r["decoded"].get(name, r["text"]).encode() for r in mine]
        bad = [(r, g, w) for r, g, w in zip(mine, dec, want_dec) if g != w]
        for r, g, w in bad[:3]:
            print(f"  decode mismatch {name} {r['name']}: got {g[:60]!r} want {w[:60]!r}")
        h.check(f"{name}: HF's ids of the {len(mine)} cases decode to HF's text (Strip of the start's "
                f"space {'on' if flags & 32 else 'off'})", not bad, f"{len(bad)} mismatched")
        names = {r["name"] for r in mine}
        for what in ("empty", "leading space", "trailing spaces", "double space", "newline", "meta x",
                     "chinese", "emoji text", "bos text", "text bos text", "unk in text", "added th"):
            h.check(f"{name}: committed cases cover {what!r}", what in names)

    # run --tokenize / --detokenize on a few, with and without --special.
    for name in ("hub", "hub_llama", "tf5"):
        if name not in toks:
            continue
        for r in [r for r in rows if r["name"] in ("bos space text", "text bos text", "emoji text",
                                                   "leading space", "meta and spaces", "empty")]:
            args = [RUN, toks[name], "--tokenize"] + (["--special"] if r["special"] else [])
            p = run_cmd(args, input=r["text"].encode())
            h.check(f"{name}: run --tokenize{' --special' if r['special'] else ''} on {r['name']!r} gives HF's ids",
                    p.stdout.decode().split() == [str(i) for i in r["ids"][name]],
                    p.stdout.decode()[:200] + p.stderr.decode(errors="replace")[:200])
            p = run_cmd([RUN, toks[name], "--detokenize"], input=" ".join(map(str, r["ids"][name])).encode())
            h.check(f"{name}: run --detokenize on those ids gives HF's decode",
                    p.returncode == 0 and p.stdout == r["decoded"].get(name, r["text"]).encode(),
                    p.stdout[:100])

    # Bytes that are not UTF-8 go through byte fallback and come back.
    raw = b"\xff\xfe ok \xe4\xb8 \xf0\x9f\x99 x\x80y"
    for name in ("hub", "tf5", "meta_always_split"):
        if name in toks:
            p = run_cmd([RUN, toks[name], "--tokenize"], input=raw)
            ids = p.stdout.split()
            q = run_cmd([RUN, toks[name], "--detokenize"], input=b" ".join(ids[1:]))
            h.check(f"{name}: bytes that are not UTF-8 round-trip through --tokenize / --detokenize "
                    f"(less the BOS <s>)", p.returncode == 0 and ids[:1] == [b"1"] and q.stdout == raw,
                    (p.stdout[:80], q.stdout[:80]))
    for name in ("hub", "tf5"):
        if name in toks:
            check_long_line(h, toks[name], name)
    if "hub" in toks:
        check_refusals(h, toks["hub"])
    if "meta_first_split" in toks:
        with open(toks["meta_first_split"], "rb") as f:
            data = bytearray(f.read())
        data[40:44] = struct.pack("<I", 0)   # split and a scheme without Metaspace
        path = os.path.join(OUT, "bad", "scheme_without_metaspace.tok")
        with open(path, "wb") as f:
            f.write(bytes(data))
        p = run_cmd([RUN, path, "--tokenize"], input=b"hi")
        h.check("loader refuses prepend_scheme/split flags without the Metaspace pre-tokenizer",
                p.returncode == 3 and "without the Metaspace" in p.stderr.decode(errors="replace"),
                p.stderr.decode(errors="replace")[:200])
    h.done()


if __name__ == "__main__":
    main()
