#!/usr/bin/env python3
"""Live parity of section version 3 (issue 14: the pre-tokenizers of Llama-3,
Qwen2 and SmolLM2, and ignore_merges) with Hugging Face tokenizers and
tiktoken; run by `make test-hf` (tokenizers, transformers, tiktoken, and the
npm package js-tiktoken for cl100k_base's ranks).

  1. For each kind, a small byte-level BPE trained here with tokenizers on part
     of the corpus with that pre-tokenizer (Llama-3's with ignore_merges, Qwen2's
     with NFC, SmolLM2's Digits then ByteLevel).
  2. The Llama-3-, Qwen2- and SmolLM2-style files of tests/tokenizer_kinds.py
     (GPT-2's vocabulary), by tokenizers and by transformers' AutoTokenizer.
     Their pre-tokenizers alone are also compared with tokenizers' on every
     code point.
  3. cl100k_base at full size: its ranks from js-tiktoken (installed with npm
     into tests/build/npm when missing), made into a tokenizer.json with the
     tokenizers library (Llama-3's Split, ByteLevel, ignore_merges, the merges
     of every split of each token in rank order); our ids must equal
     tiktoken's with the same ranks and Llama-3's pattern, and tokenizers'.
Each is exported with export.py --tokenizer-only; tests/build/test_tokenizer's
ids on the whole corpus of tests/build_corpus.py (and the kinds' texts) must
equal the reference's, 100%, with special tokens recognised or not as each
case says.
"""
import base64
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from harness import Harness  # noqa: E402
import build_corpus  # noqa: E402
import tokenizer_kinds as K  # noqa: E402
from hf_tokenizer_families import export, tokenizers_encoder, auto_encoder, reference  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
OUT = os.path.join(BUILD, "hf_kinds")
NPM_DIR = os.path.join(BUILD, "npm")
CL100K_JS = os.path.join(NPM_DIR, "node_modules", "js-tiktoken", "dist", "ranks", "cl100k_base.js")


def compare(h, label, tok, cases, encoders):
    t0 = time.time()
    ours = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, "cases.bin"))
    n_bytes = sum(len(c[1].encode("utf-8")) for c in cases)
    for name, enc in encoders:
        want = reference(enc, cases)
        bad = [(c, g, w) for c, g, w in zip(cases, ours, want) if g != w]
        for c, g, w in bad[:5]:
            print(f"  {label} mismatch {c[0]} special={c[2]}: {c[1][:60]!r}\n    ours {g[:16]}\n"
                  f"    {name} {w[:16]}")
        n_special = sum(1 for c in cases if c[2])
        h.check(f"{label}: ids == {name} on {len(cases)} cases ({n_special} with special tokens, "
                f"{n_bytes} bytes): {len(cases) - len(bad)} exact "
                f"({100.0 * (len(cases) - len(bad)) / len(cases):.2f}%)", not bad)
    print(f"  {label}: {len(cases)} cases ({time.time() - t0:.1f} s)", flush=True)


def train(kind, cases, d):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import trainers
    tok = Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    if kind == "smollm2":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        pat = K.LLAMA3_PATTERN if kind == "llama3" else K.QWEN2_PATTERN
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pat), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>"] + K.CHAT_SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for _n, t, _s in cases[::5]], trainer)
    tok.add_tokens([AddedToken("<|eot_id|>", special=True, normalized=False)])
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    return d


def cl100k_ranks():
    if not os.path.exists(CL100K_JS):
        os.makedirs(NPM_DIR, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", NPM_DIR, "js-tiktoken"], check=True,
                       stdout=subprocess.DEVNULL)
    with open(CL100K_JS, encoding="utf-8") as f:
        text = f.read()
    data = json.loads(text[text.index("{"):text.rindex("}") + 1])
    ranks = {}
    for line in data["bpe_ranks"].split("\n"):
        if not line:
            continue
        _name, offset, *toks = line.split(" ")
        for i, t in enumerate(toks):
            ranks[base64.b64decode(t)] = int(offset) + i
    return ranks, data["pat_str"]


def cl100k_tokenizer_json(ranks, d):
    """tokenizer.json of the cl100k_base ranks: ids = ranks, byte-level strings,
    the merges of every split of each token into two tokens of lower rank, in
    the order of (merged, left, right) ranks, Llama-3's Split and ignore_merges."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    sys.path.insert(0, ROOT)
    from export import bytes_to_unicode
    b2u = bytes_to_unicode()

    def s(b):
        return "".join(b2u[x] for x in b)
    merges = []
    for tok, r in ranks.items():
        for k in range(1, len(tok)):
            a, b = ranks.get(tok[:k]), ranks.get(tok[k:])
            if a is not None and b is not None and a < r and b < r:
                merges.append((r, a, b, tok[:k], tok[k:]))
    merges.sort()
    vocab = {s(t): r for t, r in ranks.items()}
    t = Tokenizer(models.BPE(vocab=vocab, merges=[(s(a), s(b)) for _r, _x, _y, a, b in merges],
                             ignore_merges=True))
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(K.LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    os.makedirs(d, exist_ok=True)
    t.save(os.path.join(d, "tokenizer.json"))
    return d


def check_pieces_every_code_point(h, kind, d, tok):
    """The pre-tokenizer alone: every code point (not surrogates), 128 to a
    text, each between letters, digits, spaces and punctuation; our pieces'
    byte lengths (test_tokenizer cases --split) against tokenizers'
    pre_tokenize_str."""
    from tokenizers import Tokenizer
    pre = Tokenizer.from_file(os.path.join(d, "tokenizer.json")).pre_tokenizer
    cases = []
    for base in range(0, 0x110000, 128):
        chars = [chr(c) for c in range(base, base + 128) if not 0xD800 <= c < 0xE000]
        if chars:
            cases.append((f"U+{base:05X}", "".join(f"a{ch}1{ch} {ch}'{ch}\n" for ch in chars), False))
    ours = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, "pieces.bin"), split=True)
    bad = []
    for (name, text, _s), got in zip(cases, ours):
        want = [len(text[a:b].encode("utf-8")) for _p, (a, b) in pre.pre_tokenize_str(text)]
        if got != want:
            bad.append(name)
    h.check(f"{kind}: pre-tokenizer pieces of every code point ({len(cases)} texts) == tokenizers'",
            not bad, bad[:10])


def main():
    h = Harness("hf_tokenizer_kinds")
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus.corpus()
    texts = [(n, t, sp) for n, t in K.kind_texts() for sp in (False, True)]
    cases = corpus + texts
    n_bytes = sum(len(c[1].encode("utf-8")) for c in corpus)
    print(f"  corpus: {len(corpus)} cases, {n_bytes} bytes", flush=True)
    for kind in K.KINDS:
        d = train(kind, corpus, os.path.join(OUT, "trained_" + kind))
        tok = os.path.join(OUT, f"trained_{kind}.tok")
        export(d, tok)
        compare(h, f"trained {kind}", tok, cases, [("tokenizers", tokenizers_encoder(d))])
    for kind, build in K.KINDS.items():
        d = build(os.path.join(OUT, kind))
        tok = os.path.join(OUT, kind + ".tok")
        export(d, tok)
        compare(h, f"{kind}-style", tok, cases, [("tokenizers", tokenizers_encoder(d)),
                                                   ("AutoTokenizer", auto_encoder(d))])
        check_pieces_every_code_point(h, kind, d, tok)

    import tiktoken
    ranks, js_pat = cl100k_ranks()
    h.check(f"cl100k_base: {len(ranks)} ranks from js-tiktoken, 0 .. {max(ranks.values())}",
            len(ranks) == 100256 and max(ranks.values()) == 100255)
    d = cl100k_tokenizer_json(ranks, os.path.join(OUT, "cl100k"))
    tok = os.path.join(OUT, "cl100k.tok")
    export(d, tok)
    enc = tiktoken.Encoding("cl100k_llama3_pattern", pat_str=K.LLAMA3_PATTERN, mergeable_ranks=ranks,
                            special_tokens={})
    plain = [(n, t, False) for n, t, _sp in cases]
    compare(h, "cl100k_base", tok, plain,
            [("tiktoken", lambda xs, _sp: enc.encode_ordinary_batch(xs)),
             ("tokenizers", tokenizers_encoder(d))])
    # What tiktoken's own cl100k_base pattern (\s++$ at the end) changes: reported only.
    real = tiktoken.Encoding("cl100k_own_pattern", pat_str=js_pat, mergeable_ranks=ranks, special_tokens={})
    a = enc.encode_ordinary_batch([c[1] for c in plain])
    b = real.encode_ordinary_batch([c[1] for c in plain])
    print(f"  note: js-tiktoken's cl100k_base pattern {js_pat!r} gives other ids than Llama-3's on "
          f"{sum(x != y for x, y in zip(a, b))} of {len(plain)} cases")
    h.done()


if __name__ == "__main__":
    main()
