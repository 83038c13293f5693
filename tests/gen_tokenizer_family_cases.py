#!/usr/bin/env python3
"""Regenerate tests/tokenizer/families.jsonl: expected ids of the GPT-NeoX-style
and OPT-style tokenizers of tests/tokenizer_families.py, made by Hugging Face.

Needs tokenizers and transformers (.venv-hf), so it is run by hand, never by
`make test`:

    .venv-hf/bin/python tests/gen_tokenizer_family_cases.py

Each line is {"family", "name", "special", "text", "ids"}: the texts of
tokenizer_families.family_texts() and the corpus' edge cases for both; for
GPT-NeoX's (whose NFC is new) also one fortune of every file, and the edge
cases and fortunes decomposed (NFD); each without and,
where it writes a special token, with special tokens recognised. The ids come
from tokenizers' Tokenizer (encode_special_tokens = not special) for GPT-NeoX's
tokenizer.json and from transformers' AutoTokenizer (split_special_tokens = not
special) for OPT's files; the script stops unless transformers'
PreTrainedTokenizerFast gives the GPT-NeoX ids too.
"""
import json
import os
import sys
import tempfile
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import build_corpus  # noqa: E402
import tokenizer_families as F  # noqa: E402

OUT = os.path.join(HERE, "tokenizer", "families.jsonl")
SPECIAL_MARKS = ("<|", "<s>", "</s>", "<pad>", "<unk>")


def hf_encoders(family, d):
    """(reference encode(text, special), cross-check encode or None)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    if family == "neox":
        t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))

        def enc(text, special):
            t.encode_special_tokens = not special
            return t.encode(text).ids
        return enc, lambda text, special: fast.encode(text, split_special_tokens=not special)
    a = AutoTokenizer.from_pretrained(d)
    return (lambda text, special: a.encode(text, split_special_tokens=not special)), None


def sample_texts(family):
    texts = F.family_texts()
    plain = [(n, t) for n, t, sp in build_corpus.edge_cases() if not sp and not n.startswith("10k")]
    if family != "neox":
        return texts + plain
    plain += [(n, t) for n, t, _sp in build_corpus.fortunes(max_per_file=1)]
    texts += plain
    texts += [(f"NFD {n}", unicodedata.normalize("NFD", t)) for n, t in plain
              if unicodedata.normalize("NFD", t) != t]
    return texts


def main():
    tmp = tempfile.mkdtemp(prefix="gen_family_cases_")
    rows = []
    for family, build in F.FAMILIES.items():
        d = build(os.path.join(tmp, family))
        enc, check = hf_encoders(family, d)
        for name, text in sample_texts(family):
            for special in (False, True):
                if special and not any(m in text for m in SPECIAL_MARKS):
                    continue
                ids = enc(text, special)
                if check is not None and check(text, special) != ids:
                    sys.exit(f"tokenizers and transformers disagree on {family} {name!r}; not writing")
                rows.append({"family": family, "name": name, "special": special, "text": text, "ids": ids})
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(rows)} cases to {OUT}")


if __name__ == "__main__":
    main()
