"""Tokenizer files in the forms GPT-NeoX (Pythia) and OPT ship, built here from
GPT-2's vocabulary in tests/data/gpt2 (standard library only: make test).

  neox_style(dir)  tokenizer.json alone, as GPT-NeoX-20B's declares it: the NFC
                   normalizer, ByteLevel, BPE; runs of 2..24 spaces as added
                   tokens that are not special (matched in the normalized
                   text), <|endoftext|> and <|padding|> as special tokens.
  opt_style(dir)   vocab.json + merges.txt with the ids moved up by 4 for
                   <s> <pad> </s> <unk> at 0..3, tokenizer_config.json with
                   add_bos_token true and bos_token </s> (GPT2Tokenizer), and
                   special_tokens_map.json, as facebook/opt-* ship them.

The expected ids of tests/tokenizer/families.jsonl come from Hugging Face on
exactly these files (tests/gen_tokenizer_family_cases.py); make test-hf
compares the two over the whole corpus (tests/hf_tokenizer_families.py).
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
GPT2_DIR = os.path.join(HERE, "data", "gpt2")
EOT = "<|endoftext|>"
SPACE_RUNS = range(2, 25)   # GPT-NeoX-20B's added tokens: 2 to 24 spaces
OPT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def gpt2_vocab_merges():
    with open(os.path.join(GPT2_DIR, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(GPT2_DIR, "merges.txt"), encoding="utf-8") as f:
        merges = [line for line in f.read().split("\n")[1:] if line]
    return vocab, merges


def added_token(i, content, special, normalized):
    return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": normalized, "special": special}


def neox_tokenizer_json(vocab, merges):
    """tokenizer.json of GPT-NeoX's form over the BPE vocabulary and merges given
    (vocab holds <|endoftext|>); the added tokens take the next ids."""
    n = max(vocab.values()) + 1
    added = [added_token(vocab[EOT], EOT, True, False)]
    for k in SPACE_RUNS:
        added.append(added_token(n, " " * k, False, True))
        n += 1
    added.append(added_token(n, "<|padding|>", True, False))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"}, "pre_tokenizer": byte_level,
            "post_processor": dict(byte_level, trim_offsets=False), "decoder": dict(byte_level),
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": vocab,
                      "merges": [m.split(" ") for m in merges]}}


def neox_style(out_dir):
    vocab, merges = gpt2_vocab_merges()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(neox_tokenizer_json(vocab, merges), f, ensure_ascii=False)
    return out_dir


def opt_style(out_dir):
    vocab, merges = gpt2_vocab_merges()
    opt = {s: i for i, s in enumerate(OPT_SPECIALS)}
    for tok, i in vocab.items():
        if tok != EOT:
            opt[tok] = i + len(OPT_SPECIALS)
    os.makedirs(out_dir, exist_ok=True)
    files = {"vocab.json": opt,
             "merges.txt": "#version: 0.2\n" + "\n".join(merges) + "\n",
             "tokenizer_config.json": {"add_bos_token": True, "add_prefix_space": False, "bos_token": "</s>",
                                       "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "</s>",
                                       "errors": "replace", "model_max_length": 1000000000000000019884624838656,
                                       "tokenizer_class": "GPT2Tokenizer"},
             "special_tokens_map.json": {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>",
                                         "unk_token": "</s>"}}
    for name, v in files.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
    return out_dir


FAMILIES = {"neox": neox_style, "opt": opt_style}


def family_texts():
    """Texts that exercise what the families add, for the committed cases and
    the parity test: runs of spaces of every length around words and other
    whitespace, decomposed accents (NFD), Hangul jamo, singletons NFC
    replaces, the families' special tokens written in the text."""
    texts = []
    for n in list(range(1, 30)) + [47, 48, 49, 100]:
        texts.append((f"spaces {n} between words", "a" + " " * n + "b"))
        texts.append((f"spaces {n} before newline", "x" + " " * n + "\n" + " " * n + "y"))
        texts.append((f"spaces {n} alone", " " * n))
    texts.append(("spaces and tabs", "def f():\n    if x:\n        return  1\t  \t   2\n\t\t    z"))
    texts.append(("NFD accents", "Cafe\u0301 na\u0131\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m "
                                 "Z\u030cluc\u030cou\u030ck\u00fd ku\u030a\u0148"))
    texts.append(("NFD Vietnamese", "Tie\u0302\u0301ng Vie\u0323\u0302t co\u0301 da\u0302\u0301u"))
    texts.append(("NFD Greek", "\u03b1\u0313\u0301\u03bd\u03b8\u03c1\u03c9\u0342\u03c0\u03bf\u03c2 "
                               "\u1f00\u0301 \u03c9\u0345\u0313"))
    texts.append(("combining order", "q\u0307\u0323 q\u0323\u0307 e\u0301\u0316\u0300 \u1e0b\u0323 "
                                     "a\u0328\u0301 a\u0301\u0328"))
    texts.append(("Hangul jamo", "\u1100\u1161\u11a8 \u1112\u1173\u11ab\u1100\u1173\u11af "
                                 "\uac00\u11a8 \u1100\u1161 \u1100 \u1161\u11a8"))
    texts.append(("singletons", "\u212b \u2126 \u212a \u037e \u0340 \u1fef \u2000\u2001 \uf900 \U0002f800"))
    texts.append(("exclusions", "\u0958 \u0915\u093c \u2adc \ufb1d \U0001d15e \u0344 \u0f73"))
    texts.append(("marks newer than Unicode 9.0", "a\u0345\u1df6 \u0ea5\u0eb8\u0eba \U00010f30\U00010f46"
                                                  "\U00010f47 x\u0301\u1ac1\u0316 \u0898\u0345"))
    texts.append(("Chinese", "\u4eba\u751f\u5982\u68a6\uff0c\u4e00\u6a3d\u8fd8\u9179\u6c5f\u6708\u3002"))
    texts.append(("emoji", "\U0001f44d\U0001f3fd \U0001f1ef\U0001f1f5 \U0001f468\u200d\U0001f469\u200d"
                           "\U0001f467  \u2764\ufe0f   ok"))
    for tok in (EOT, "<|padding|>", "</s>", "<s>", "<pad>", "<unk>"):
        texts.append((f"special {tok} in text", f"x{tok}y  {tok}   {tok}e\u0301"))
    texts.append(("empty", ""))
    texts.append(("invalid-free mixed", "  Grüße,  世界!\n\n   \t e\u0301\u0301  "))
    return texts
