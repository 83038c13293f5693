#!/usr/bin/env python3
"""Regenerate tests/tokenizer/kinds.jsonl: expected ids of the Llama-3-,
Qwen2- and SmolLM2-style tokenizers of tests/tokenizer_kinds.py (section
version 3's pre-tokenizer kinds and ignore_merges), made by Hugging Face.

Needs tokenizers and transformers (.venv-hf), so it is run by hand, never by
`make test`:

    .venv-hf/bin/python tests/gen_tokenizer_kind_cases.py

Each line is {"kind", "name", "special", "text", "ids"}: the texts of
tokenizer_kinds.kind_texts() and the corpus' edge cases, each without and (where it writes a special token) with special tokens
recognised. The ids come from tokenizers' Tokenizer on tokenizer.json
(encode_special_tokens = not special); the script stops unless transformers'
AutoTokenizer on the same directory gives the same ids.
"""
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import build_corpus  # noqa: E402
import tokenizer_kinds as K  # noqa: E402

OUT = os.path.join(HERE, "tokenizer", "kinds.jsonl")


def sample_texts():
    plain = [(n, t) for n, t, sp in build_corpus.edge_cases() if not sp and not n.startswith("10k")]
    return K.kind_texts() + plain


def main():
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    tmp = tempfile.mkdtemp(prefix="gen_kind_cases_")
    rows = []
    for kind, build in K.KINDS.items():
        d = build(os.path.join(tmp, kind))
        t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        auto = AutoTokenizer.from_pretrained(d)
        for name, text in sample_texts():
            for special in (False, True):
                if special and "<|" not in text:
                    continue
                t.encode_special_tokens = not special
                ids = t.encode(text).ids
                if auto.encode(text, split_special_tokens=not special) != ids:
                    sys.exit(f"tokenizers and transformers disagree on {kind} {name!r}; not writing")
                rows.append({"kind": kind, "name": name, "special": special, "text": text, "ids": ids})
    with open(OUT, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(rows)} cases to {OUT}")


if __name__ == "__main__":
    main()
