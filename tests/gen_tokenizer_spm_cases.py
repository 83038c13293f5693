#!/usr/bin/env python3
"""Regenerate tests/tokenizer/spm.jsonl (and, with --train, the base tokenizer
tests/data/spm/tokenizer.json): Hugging Face's ids and decoded text for the
SentencePiece-style BPE variants of tests/tokenizer_spm.py (section version 4).

Needs tokenizers and transformers (.venv-hf), so it is run by hand, never by
`make test`:

    .venv-hf/bin/python tests/gen_tokenizer_spm_cases.py [--train]

--train trains the base tokenizer with the tokenizers library: BPE with
byte_fallback, unk_token <unk> and fuse_unk, 1,500 tokens, over one line in
four of a part of the corpus (fortunes in every language, a few chapters of
the Bible), with Metaspace(split false) so that merges may cross a "▁"; then
writes it in the hub form of Llama-2's tokenizer.json (<unk> <s> </s> and the
256 byte tokens first, Prepend/Replace normalizer, <s> template, Llama's
decoder), checks that transformers 5 loads it as a LlamaTokenizer and that
its save_pretrained writes exactly tokenizer_spm.tf5_json of it.

Each line of spm.jsonl is {"name", "text", "special", "ids": {variant: ids},
"decoded": {variant: text}}: the texts of tokenizer_spm.spm_texts() and
tokenizer_kinds.kind_texts() on every variant, and tokenizer_spm.long_texts()
and one in three of the corpus' edge cases on tokenizer_spm.MAIN, each without and (where the text
writes <s>, </s> or <unk>) with special tokens recognised. "decoded" is
Hugging Face's decode of the ids, given only where it is not the text itself.
The ids come from the variant's reference (tokenizers' Tokenizer on
tokenizer.json, or transformers' AutoTokenizer for a LlamaTokenizer); the
script stops unless the other one agrees wherever it reads the same pipeline.
"""
import argparse
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
import tokenizer_spm as S  # noqa: E402

OUT = os.path.join(HERE, "tokenizer", "spm.jsonl")
PIPELINE = ("normalizer", "pre_tokenizer", "post_processor", "decoder")


def train():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    texts = [t for _n, t, _s in build_corpus.fortunes(max_per_file=25) + build_corpus.bible(max_chapters=6)]
    lines = [ln for t in texts for ln in t.split("\n") if ln.strip()][::4]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=S.META, prepend_scheme="always", split=False)
    trainer = trainers.BpeTrainer(vocab_size=1500, min_frequency=2, show_progress=False, limit_alphabet=400,
                                  special_tokens=S.SPECIALS + [f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(lines, trainer)
    tj = json.loads(tok.to_str())
    tj["added_tokens"] = tj["added_tokens"][:3]   # the byte tokens are model.vocab's alone, as Llama's
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": S.META},
        {"type": "Replace", "pattern": {"String": " "}, "content": S.META}]}
    tj["pre_tokenizer"] = None
    tj["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    tj["decoder"] = S.DECODER
    out = {k: tj[k] for k in ("version", "truncation", "padding", "added_tokens", "normalizer",
                              "pre_tokenizer", "post_processor", "decoder", "model")}
    os.makedirs(os.path.dirname(S.BASE), exist_ok=True)
    with open(S.BASE, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {S.BASE}: {len(tj['model']['vocab'])} tokens, {len(tj['model']['merges'])} merges, "
          f"{os.path.getsize(S.BASE)} bytes")


def check_tf5_form(tmp):
    """transformers 5 loads hub_llama as a LlamaTokenizer and saves tf5's files."""
    from transformers import AutoTokenizer
    d = S.write("hub_llama", os.path.join(tmp, "hub_llama"))
    auto = AutoTokenizer.from_pretrained(d)
    if type(auto).__name__ != "LlamaTokenizer":
        sys.exit(f"transformers loads hub_llama as {type(auto).__name__}, not LlamaTokenizer")
    saved = os.path.join(tmp, "saved")
    auto.save_pretrained(saved)
    with open(os.path.join(saved, "tokenizer.json"), encoding="utf-8") as f:
        got = json.load(f)
    want = S.tf5_json(S.base())
    for k in PIPELINE + ("added_tokens",):
        if got[k] != want[k]:
            sys.exit(f"transformers 5 saves {k} = {got[k]!r}, tokenizer_spm.tf5_json has {want[k]!r}")
    gm = {k: v for k, v in got["model"].items() if k not in ("vocab", "merges")}
    wm = {k: v for k, v in want["model"].items() if k not in ("vocab", "merges")}
    if gm != wm or got["model"]["vocab"] != want["model"]["vocab"] or \
            [list(m) for m in got["model"]["merges"]] != [list(m) for m in want["model"]["merges"]]:
        sys.exit(f"transformers 5 saves model {gm!r}, tokenizer_spm.tf5_json has {wm!r}")
    with open(os.path.join(saved, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg = {k: v for k, v in cfg.items() if k not in ("is_local", "local_files_only")}
    if cfg != S.TF5_CONFIG:
        sys.exit(f"transformers 5 saves tokenizer_config.json {cfg!r}, not tokenizer_spm.TF5_CONFIG")
    print("transformers 5 saves hub_llama as tokenizer_spm's tf5 form")


def encoders(name, d):
    """(reference, others): functions (text, special) -> ids, and decode functions."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(d)

    def by_file(text, special):
        tok.encode_special_tokens = not special
        return tok.encode(text).ids

    def by_auto(text, special):
        return auto.encode(text, split_special_tokens=not special)
    ref = S.VARIANTS[name][2]
    if ref == "file":
        return by_file, [by_auto], (lambda ids: tok.decode(ids, skip_special_tokens=False))
    return by_auto, [], (lambda ids: auto.decode(ids, skip_special_tokens=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", action="store_true", help="train tests/data/spm/tokenizer.json first")
    args = ap.parse_args()
    if args.train:
        train()
    tmp = tempfile.mkdtemp(prefix="gen_spm_cases_")
    check_tf5_form(tmp)
    edge = [(n, t) for n, t, sp in build_corpus.edge_cases() if not sp and not n.startswith("10k")][::3]
    every = S.spm_texts() + K.kind_texts()
    rows = {}
    order = []
    for name in S.VARIANTS:
        d = S.write(name, os.path.join(tmp, name))
        ref, others, decode = encoders(name, d)
        texts = every + (S.long_texts() + edge if name in S.MAIN else [])
        for cname, text in texts:
            for special in (False, True):
                if special and not S.spm_special(text):
                    continue
                ids = ref(text, special)
                for other in others:
                    if other(text, special) != ids:
                        sys.exit(f"tokenizers and transformers disagree on {name} {cname!r}; not writing")
                key = (cname, text, special)
                if key not in rows:
                    rows[key] = {"name": cname, "text": text, "special": special, "ids": {}, "decoded": {}}
                    order.append(key)
                rows[key]["ids"][name] = ids
                dec = decode(ids)
                if dec != text:
                    rows[key]["decoded"][name] = dec
    with open(OUT, "w", encoding="utf-8") as f:
        for key in order:
            f.write(json.dumps(rows[key], ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(order)} texts to {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
