#!/usr/bin/env python3
"""Live parity of tokenizer.c with Hugging Face GPT2TokenizerFast and tiktoken.

Run by `make test-hf` (needs tiktoken, tokenizers, transformers; no network).

  1. ids: every case of tests/build_corpus.py (Debian fortunes in several
     languages, the KJV, source code, designed edge cases, code point sweeps)
     through tests/build/test_tokenizer, compared with tiktoken (an Encoding
     built offline from vocab.json) and GPT2TokenizerFast loaded from
     tests/data/gpt2: encode_ordinary / split_special_tokens=True for plain
     cases, allowed_special="all" / default HF for [special] cases.
  2. pre-tokenization: our piece boundaries against HF's ByteLevel pre-tokenizer.
  3. classes: the L / N / S / O class of every code point U+0000..U+10FFFF as
     HF's pre-tokenizer sees it (and tiktoken for planes 0-3 and 14), against
     the generated table.
  4. decode: random id sequences decode to tiktoken's bytes.
  5. another vocabulary: a byte-level BPE trained here with HF tokenizers on
     part of the corpus, exported with export.py, against HF.
"""
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

BUILD = os.path.join(ROOT, "tests", "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
GPT2_DIR = os.path.join(HERE, "data", "gpt2")
GPT2_TOK = os.path.join(BUILD, "gpt2.tok")
PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def byte_decoder():
    """GPT-2's printable character -> byte table (inverse of bytes_to_unicode)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def tiktoken_encoding(hf_dir=GPT2_DIR, name="gpt2-offline"):
    """A tiktoken Encoding built from vocab.json without any download."""
    import tiktoken
    with open(os.path.join(hf_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    dec = byte_decoder()
    ranks, specials = {}, {}
    for tok, i in vocab.items():
        if tok == EOT:
            specials[tok] = i
        else:
            ranks[bytes(dec[c] for c in tok)] = i
    return tiktoken.Encoding(name, pat_str=PAT, mergeable_ranks=ranks, special_tokens=specials)


def hf_tokenizer(hf_dir=GPT2_DIR):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from transformers import GPT2TokenizerFast
    return GPT2TokenizerFast.from_pretrained(hf_dir)


def export_tok(hf_dir, out):
    os.makedirs(os.path.dirname(out), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--tokenizer-only", hf_dir, out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def hf_encode(hf, text, special):
    return hf.encode(text, add_special_tokens=False, split_special_tokens=not special)


def tk_encode(enc, text, special):
    return enc.encode(text, allowed_special="all") if special else enc.encode_ordinary(text)


def hf_piece_lengths(pre, text):
    """Byte lengths of HF's pre-tokens of text (offsets are in characters)."""
    out = []
    for _piece, (s, e) in pre.pre_tokenize_str(text):
        out.append(len(text[s:e].encode("utf-8")))
    return out


def hf_classes(pre):
    """Class of every code point as HF's pre-tokenizer sees it: 'x'+c is one
    piece iff c is of the class of x (L: 'a', N: '1', O: '!'); S otherwise."""
    cls = {}
    for plane in range(17):
        cps = [c for c in range(plane << 16, (plane + 1) << 16) if not 0xD800 <= c < 0xE000]
        for p, name in (("a", "L"), ("1", "N"), ("!", "O")):
            text = "".join(p + chr(c) + "\n" for c in cps)
            for _piece, (s, e) in pre.pre_tokenize_str(text):
                if e - s == 2 and text[s] == p and text[s + 1] != "\n":
                    cls[ord(text[s + 1])] = name
        for c in cps:
            cls.setdefault(c, "S")
    return cls


def tiktoken_classes(planes):
    """The same probe through tiktoken: an Encoding whose vocabulary holds
    x+c for every code point c, so a whole piece x+c comes back as one id."""
    import tiktoken
    cls = {}
    for plane in planes:
        cps = [c for c in range(plane << 16, (plane + 1) << 16) if not 0xD800 <= c < 0xE000]
        ranks = {bytes([i]): i for i in range(256)}
        for p in "a1!":
            for c in cps:
                ranks[(p + chr(c)).encode()] = len(ranks)
        enc = tiktoken.Encoding(f"probe{plane}", pat_str=PAT, mergeable_ranks=ranks, special_tokens={})
        for p, name in (("a", "L"), ("1", "N"), ("!", "O")):
            for i in enc.encode_ordinary("".join(p + chr(c) + "\n" for c in cps)):
                if i >= 256:
                    cls[ord(enc.decode_single_token_bytes(i)[1:].decode())] = name
        for c in cps:
            cls.setdefault(c, "S")
    return cls


def our_classes():
    out = subprocess.run([DRIVER, "classes", GPT2_TOK], stdout=subprocess.PIPE, check=True).stdout
    starts = []
    for line in out.decode().split("\n"):
        if line.strip():
            a, k = line.split()
            starts.append((int(a, 16), k))
    cls = {}
    for i, (a, k) in enumerate(starts):
        b = starts[i + 1][0] if i + 1 < len(starts) else 0x110000
        for c in range(a, b):
            cls[c] = k
    return cls


def main():
    from harness import Harness
    import build_corpus
    h = Harness("hf_tokenizer_parity")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer exists (make tests/build/test_tokenizer)", False)
        h.done()
    export_tok(GPT2_DIR, GPT2_TOK)
    enc = tiktoken_encoding()
    hf = hf_tokenizer()
    pre = hf.backend_tokenizer.pre_tokenizer
    tmp = os.path.join(BUILD, "parity_cases.bin")

    # 1. ids over the corpus.
    t0 = time.time()
    cases = build_corpus.corpus()
    n_bytes, kinds = build_corpus.summary(cases)
    print(f"  corpus: {len(cases)} cases, {n_bytes} bytes (" +
          ", ".join(f"{k} {n}" for k, (n, _b) in sorted(kinds.items())) + ")", flush=True)
    ours = build_corpus.run_cases(DRIVER, GPT2_TOK, cases, tmp)
    bad_tk, bad_hf, shown = 0, 0, 0
    n_special = sum(1 for c in cases if c[2])
    for (name, text, special), got in zip(cases, ours):
        want_tk = tk_encode(enc, text, special)
        want_hf = hf_encode(hf, text, special)
        if got != want_tk:
            bad_tk += 1
        if got != want_hf:
            bad_hf += 1
        if (got != want_tk or got != want_hf) and shown < 10:
            shown += 1
            print(f"  mismatch {name}: text {text[:60]!r}\n    ours {got[:16]}\n"
                  f"    tiktoken {want_tk[:16]}\n    hf {want_hf[:16]}")
    h.check(f"corpus of at least 2,000 cases and 2 MB ({len(cases)} cases, {n_bytes} bytes)",
            len(cases) >= 2000 and n_bytes >= 2_000_000)
    h.check(f"ids == tiktoken on {len(cases)} cases ({n_special} with special tokens): "
            f"{len(cases) - bad_tk} exact", bad_tk == 0)
    h.check(f"ids == HF GPT2TokenizerFast on {len(cases)} cases: {len(cases) - bad_hf} exact",
            bad_hf == 0)
    print(f"  ids: {len(cases) - bad_tk}/{len(cases)} exact vs tiktoken, "
          f"{len(cases) - bad_hf}/{len(cases)} exact vs HF, {n_bytes} bytes "
          f"({time.time() - t0:.1f} s)", flush=True)

    # 2. pre-tokenization boundaries.
    plain = [c for c in cases if not c[2]]
    ours_split = build_corpus.run_cases(DRIVER, GPT2_TOK, plain, tmp, split=True)
    bad = 0
    for (name, text, _sp), got in zip(plain, ours_split):
        want = hf_piece_lengths(pre, text)
        if got != want:
            bad += 1
            if bad <= 5:
                print(f"  split mismatch {name}: {text[:60]!r}\n    ours {got[:20]}\n    hf   {want[:20]}")
    h.check(f"pre-token boundaries == HF on {len(plain)} cases", bad == 0)

    # 3. character classes of every code point.
    t0 = time.time()
    mine = our_classes()
    theirs = hf_classes(pre)
    diff = [c for c in theirs if theirs[c] != mine[c]]
    h.check(f"class of all {len(theirs)} code points == HF pre-tokenizer",
            not diff, [f"U+{c:04X} ours {mine[c]} hf {theirs[c]}" for c in diff[:10]])
    tk = tiktoken_classes([0, 1, 2, 3, 14])
    diff = [c for c in tk if tk[c] != mine[c]]
    h.check(f"class of {len(tk)} code points (planes 0-3, 14) == tiktoken",
            not diff, [f"U+{c:04X} ours {mine[c]} tiktoken {tk[c]}" for c in diff[:10]])
    print(f"  classes checked ({time.time() - t0:.1f} s)", flush=True)

    # 4. decode of random ids.
    rng = random.Random(7)
    bad = 0
    for i in range(300):
        ids = [rng.randrange(50257) for _ in range(rng.randint(0, 40))]
        got = subprocess.run([DRIVER, "decode", GPT2_TOK], input=" ".join(map(str, ids)).encode(),
                             stdout=subprocess.PIPE).stdout
        if got != enc.decode_bytes(ids):
            bad += 1
    h.check("300 random id sequences decode to tiktoken's bytes", bad == 0)

    # 5. a freshly trained byte-level BPE (another vocabulary and size).
    from tokenizers import ByteLevelBPETokenizer
    trained_dir = os.path.join(BUILD, "trained_bpe")
    os.makedirs(trained_dir, exist_ok=True)
    train = [t for _n, t, _s in cases[::7]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(train, vocab_size=3000, min_frequency=2, special_tokens=[EOT],
                            show_progress=False)
    bpe.save_model(trained_dir)
    trained_tok = os.path.join(BUILD, "trained_bpe.tok")
    export_tok(trained_dir, trained_tok)
    hf2 = hf_tokenizer(trained_dir)
    sub = cases[1::5]
    ours2 = build_corpus.run_cases(DRIVER, trained_tok, sub, tmp)
    bad = 0
    for (name, text, special), got in zip(sub, ours2):
        want = hf_encode(hf2, text, special)
        if got != want:
            bad += 1
            if bad <= 5:
                print(f"  trained-BPE mismatch {name}: {text[:60]!r}\n    ours {got[:16]}\n    hf   {want[:16]}")
    h.check(f"trained {hf2.vocab_size}-token BPE: ids == HF on {len(sub)} cases", bad == 0)
    h.done()


if __name__ == "__main__":
    main()
