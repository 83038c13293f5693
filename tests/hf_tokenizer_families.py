#!/usr/bin/env python3
"""Live parity of the tokenizers of the new model families (issue 13) with
Hugging Face; run by `make test-hf` (tokenizers, transformers, unicodedata2).

  1. A GPT-NeoX (Pythia) style tokenizer trained here with tokenizers: byte-level
     BPE with the NFC normalizer, runs of 2..24 spaces as added tokens that are
     not special, <|endoftext|> and <|padding|> as special tokens.
  2. The GPT-NeoX-style and OPT-style files of tests/tokenizer_families.py
     (GPT-2's vocabulary; OPT's with <s> <pad> </s> <unk> at 0..3 and
     add_bos_token), loaded by tokenizers / transformers' AutoTokenizer.
Each is exported with export.py --tokenizer-only; the ids of
tests/build/test_tokenizer on the whole corpus of tests/build_corpus.py, on
the corpus decomposed (NFD) and on tokenizer_families.family_texts() must be
HF's, 100%, with special tokens recognised or not as each case says
(tokenizers' encode_special_tokens / transformers' split_special_tokens).
  3. NFC of tokenizer.c against tokenizers' NFC normalizer (whose data is
     Unicode 9.0's): every code point, every code point decomposed, random
     strings; and against unicodedata2 (Unicode 16.0) for the code points of
     Unicode 9.0.
"""
import os
import random
import subprocess
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from harness import Harness  # noqa: E402
import build_corpus  # noqa: E402
import tokenizer_families as F  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
OUT = os.path.join(BUILD, "hf_families")


def export(d, tok):
    subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok],
                   check=True)


def train_neox(cases, d):
    """A small GPT-NeoX-style tokenizer.json trained on part of the corpus."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t for _n, t, _s in cases[::5]], trainer)
    tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in F.SPACE_RUNS])
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    return d


def tokenizers_encoder(d):
    from tokenizers import Tokenizer
    t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))

    def enc(texts, special):
        t.encode_special_tokens = not special
        return [e.ids for e in t.encode_batch(texts)]
    return enc


def auto_encoder(d):
    from transformers import AutoTokenizer
    a = AutoTokenizer.from_pretrained(d)
    return lambda texts, special: [a.encode(x, split_special_tokens=not special) for x in texts]


def fast_file_encoder(d):
    from transformers import PreTrainedTokenizerFast
    a = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
    return lambda texts, special: [a.encode(x, split_special_tokens=not special) for x in texts]


def reference(enc, cases):
    out = [None] * len(cases)
    for special in (False, True):
        idx = [i for i, c in enumerate(cases) if c[2] == special]
        for i, ids in zip(idx, enc([cases[i][1] for i in idx], special)):
            out[i] = ids
    return out


def check_family(h, label, d, tok, encoders, cases):
    t0 = time.time()
    export(d, tok)
    ours = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, "cases.bin"))
    for name, enc in encoders:
        want = reference(enc, cases)
        bad = [(c, g, w) for c, g, w in zip(cases, ours, want) if g != w]
        for c, g, w in bad[:5]:
            print(f"  {label} mismatch {c[0]} special={c[2]}: {c[1][:60]!r}\n    ours {g[:16]}\n"
                  f"    {name} {w[:16]}")
        n_special = sum(1 for c in cases if c[2])
        h.check(f"{label}: ids == {name} on {len(cases)} cases ({n_special} with special tokens): "
                f"{len(cases) - len(bad)} exact", not bad)
    print(f"  {label}: {len(cases)} cases ({time.time() - t0:.1f} s)", flush=True)


def nfc_ours(tok, text):
    p = subprocess.run([DRIVER, "nfc", tok], input=text.encode("utf-8", "surrogatepass"),
                       stdout=subprocess.PIPE, check=True)
    return p.stdout.decode("utf-8", "surrogatepass")


def check_nfc(h, tok):
    import unicodedata2 as ud
    from tokenizers import normalizers
    import test_tokenizer_families
    hf_nfc = normalizers.NFC().normalize_str
    h.check("unicodedata2 has Unicode 16.0.0", ud.unidata_version == "16.0.0", ud.unidata_version)
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    text = "".join("\n" + chr(c) for c in cps)
    want = hf_nfc(text)
    got = nfc_ours(tok, text)
    bad = [] if got == want else [c for c in cps if nfc_ours(tok, chr(c)) != hf_nfc(chr(c))]
    h.check(f"NFC of each of the {len(cps)} code points == tokenizers' NFC", got == want,
            [f"U+{c:04X}" for c in bad[:10]])
    nfd = ud.normalize("NFD", text)
    h.check("NFC of every code point decomposed (NFD, Unicode 16.0) == tokenizers' NFC",
            nfc_ours(tok, nfd) == hf_nfc(nfd))
    present = test_tokenizer_families.unicode9()
    old = [c for c in cps if present[c]]
    text9 = "".join("\n" + chr(c) for c in old)
    h.check(f"NFC of the {len(old)} code points of Unicode 9.0 == unicodedata2",
            nfc_ours(tok, text9) == "".join("\n" + ud.normalize("NFC", chr(c)) for c in old))
    marks = [c for c in cps if ud.combining(chr(c))]
    decomposable = [c for c in cps if ud.decomposition(chr(c)) and not ud.decomposition(chr(c)).startswith("<")]
    rng = random.Random(16)
    pool = [chr(c) for c in marks] + [chr(c) for c in decomposable] + list("aeiouAEIOU ")
    pool += [chr(c) for c in range(0x1100, 0x1113)] + [chr(c) for c in range(0x1161, 0x1176)]
    pool += [chr(c) for c in range(0x11A8, 0x11C3)] + [chr(0xAC00 + 28 * k) for k in range(0, 399, 7)]
    strings = []
    for _ in range(20000):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(1, 10)))
        strings.append(ud.normalize("NFD", s) if rng.random() < 0.3 else s)
    joined = "\n".join(strings)
    got = nfc_ours(tok, joined).split("\n")
    bad = [s for s, g in zip(strings, got) if g != hf_nfc(s)]
    h.check(f"NFC of 20,000 random strings (all {len(marks)} combining marks, all {len(decomposable)} "
            f"decomposable characters of Unicode 16.0, Hangul) == tokenizers' NFC",
            not bad and len(got) == len(strings), [s.encode("unicode_escape") for s in bad[:3]])
    run_on = "".join(strings[:3000])
    h.check("NFC of 3,000 of them run together == tokenizers' NFC", nfc_ours(tok, run_on) == hf_nfc(run_on))
    old_strings = [s for s in strings if all(present[ord(ch)] for ch in s)]
    bad = [s for s in old_strings if nfc_ours(tok, s) != ud.normalize("NFC", s)][:3] if \
        nfc_ours(tok, "\n".join(old_strings)) != ud.normalize("NFC", "\n".join(old_strings)) else []
    h.check(f"NFC of the {len(old_strings)} of them made of Unicode 9.0 characters == unicodedata2",
            nfc_ours(tok, "\n".join(old_strings)) == ud.normalize("NFC", "\n".join(old_strings)),
            [s.encode("unicode_escape") for s in bad])


def main():
    h = Harness("hf_tokenizer_families")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer exists (make tests/build/test_tokenizer)", False)
        h.done()
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus.corpus()
    nfd = [(f"NFD {n}", unicodedata.normalize("NFD", t), s) for n, t, s in corpus[::3]
           if unicodedata.normalize("NFD", t) != t]
    extra = [(n, t, s) for n, t in F.family_texts() for s in (False, True)]
    cases = corpus + nfd + extra
    n_bytes, _kinds = build_corpus.summary(cases)
    print(f"  cases: {len(corpus)} corpus, {len(nfd)} decomposed, {len(extra)} family texts; "
          f"{n_bytes} bytes", flush=True)
    h.check(f"at least 2,000 cases and 2 MB ({len(cases)} cases, {n_bytes} bytes)",
            len(cases) >= 2000 and n_bytes >= 2_000_000)

    d = train_neox(corpus, os.path.join(OUT, "neox_trained"))
    check_family(h, "trained GPT-NeoX-style", d, os.path.join(OUT, "neox_trained.tok"),
                 [("tokenizers", tokenizers_encoder(d)), ("PreTrainedTokenizerFast", fast_file_encoder(d))],
                 cases)
    d = F.neox_style(os.path.join(OUT, "neox"))
    check_family(h, "GPT-NeoX-style (GPT-2's vocabulary)", d, os.path.join(OUT, "neox.tok"),
                 [("tokenizers", tokenizers_encoder(d))], cases)
    d = F.opt_style(os.path.join(OUT, "opt"))
    check_family(h, "OPT-style", d, os.path.join(OUT, "opt.tok"), [("AutoTokenizer", auto_encoder(d))], cases)
    check_nfc(h, os.path.join(OUT, "neox.tok"))
    h.done()


if __name__ == "__main__":
    main()
