#!/usr/bin/env python3
"""Live parity of section version 4 (SentencePiece-style BPE with byte
fallback: Llama-2's and TinyLlama's tokenizer.json) with Hugging Face; run by
`make test-hf` (tokenizers, transformers).

  1. Every variant of tests/tokenizer_spm.py (the committed base tokenizer in
     the hub's form and in transformers 5's, Metaspace's prepend schemes and
     split, unk_token with and without fuse_unk, byte tokens missing).
  2. A SentencePiece-style BPE trained here with tokenizers on part of the
     corpus (4,000 tokens, byte_fallback), in the hub's form read as it is and
     with TinyLlama's tokenizer_config.json (LlamaTokenizer), and in
     transformers 5's form.
Each is exported with export.py --tokenizer-only; tests/build/test_tokenizer's
ids on the whole corpus of tests/build_corpus.py, on the corpus decomposed
(NFD), on the family, kind and SPM texts must be HF's, 100%, with special
tokens recognised or not as each case says: the tokenizers library's on
tokenizer.json and transformers 5's AutoTokenizer and LlamaTokenizerFast on
the directory, wherever they read the same pipeline (a LlamaTokenizer is
rebuilt by transformers 5: there transformers is the reference, and the
tokenizers library's differences are counted and shown). Decoding HF's ids
(tokenizer_decode_token, as run --detokenize) must give HF's decode, 100%.
"""
import json
import os
import shutil
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
import tokenizer_kinds as K  # noqa: E402
import tokenizer_spm as S  # noqa: E402
from hf_tokenizer_families import export, tokenizers_encoder, reference  # noqa: E402
from test_tokenizer_spm import decodes  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
OUT = os.path.join(BUILD, "hf_spm")


def auto_encoder(d, cls=None):
    from transformers import AutoTokenizer
    a = (cls or AutoTokenizer).from_pretrained(d)
    return (lambda texts, special: [a.encode(x, split_special_tokens=not special) for x in texts]), a


def train(cases, d, cfg):
    """A SentencePiece-style BPE trained on part of the corpus, in the hub's form."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    lines = [ln for _n, t, _s in cases[::4] for ln in t.split("\n") if ln.strip()]
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=S.META, prepend_scheme="always", split=False)
    trainer = trainers.BpeTrainer(vocab_size=4000, min_frequency=2, show_progress=False, limit_alphabet=1000,
                                  special_tokens=S.SPECIALS + [f"<0x{b:02X}>" for b in range(256)])
    tok.train_from_iterator(lines, trainer)
    tj = json.loads(tok.to_str())
    base = S.base()
    tj["added_tokens"] = tj["added_tokens"][:3]
    for k in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        tj[k] = base[k]
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return d


def check(h, label, d, cases, ref_name):
    """Our ids and decoding against HF on `cases`; ref_name "file" or "transformers"."""
    from transformers import LlamaTokenizerFast
    from tokenizers import Tokenizer
    t0 = time.time()
    tok = os.path.join(OUT, label.replace(" ", "_") + ".tok")
    export(d, tok)
    ours = build_corpus.run_cases(DRIVER, tok, cases, os.path.join(OUT, "cases.bin"))
    auto, auto_tok = auto_encoder(d)
    encoders = [("tokenizers", tokenizers_encoder(d)), ("AutoTokenizer", auto)]
    if ref_name == "transformers":
        encoders = encoders[1:] + [("LlamaTokenizerFast", auto_encoder(d, LlamaTokenizerFast)[0])]
    want = None
    for name, enc in encoders:
        w = reference(enc, cases)
        want = want or w
        bad = [(c, g, x) for c, g, x in zip(cases, ours, w) if g != x]
        for c, g, x in bad[:5]:
            print(f"  {label} mismatch {c[0]} special={c[2]}: {c[1][:60]!r}\n    ours {g[:16]}\n"
                  f"    {name} {x[:16]}")
        n_special = sum(1 for c in cases if c[2])
        h.check(f"{label}: ids == {name} on {len(cases)} cases ({n_special} with special tokens): "
                f"{len(cases) - len(bad)} exact ({100.0 * (len(cases) - len(bad)) / len(cases):.2f}%)", not bad)
    if ref_name == "transformers":   # what the tokenizers library makes of the same tokenizer.json
        w = reference(tokenizers_encoder(d), cases)
        n = sum(1 for a, b in zip(want, w) if a != b)
        print(f"  note: {label}: the tokenizers library on tokenizer.json differs from transformers 5 on "
              f"{n} of {len(cases)} cases (transformers 5 rebuilds a LlamaTokenizer)")
    if ref_name == "file":
        t = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hf_dec = t.decode_batch(want, skip_special_tokens=False)
    else:
        hf_dec = [auto_tok.decode(ids, skip_special_tokens=False) for ids in want]
    got = decodes(tok, want, os.path.join(OUT, "ids.txt"))
    bad = [(c, g, x) for c, g, x in zip(cases, got, hf_dec) if g != x.encode("utf-8")]
    for c, g, x in bad[:3]:
        print(f"  {label} decode mismatch {c[0]}: ours {g[:60]!r}\n    HF {x[:60]!r}")
    h.check(f"{label}: HF's ids decode to HF's text on {len(cases)} cases", not bad, f"{len(bad)} mismatched")
    print(f"  {label}: {len(cases)} cases ({time.time() - t0:.1f} s)", flush=True)


def tiny_llama(d, cfg):
    """A tiny random Llama with the base SPM tokenizer (the hub's tokenizer.json,
    `cfg` as tokenizer_config.json with the Zephyr template of TinyLlama-Chat),
    saved as a user's directory would be."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    import chat_forms
    torch.manual_seed(7)
    lc = LlamaConfig(vocab_size=1500, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=160,
                     bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    model = LlamaForCausalLM(lc).eval()
    # Greedy text picks only tokens that start with "▁" (a space at the start of
    # the text, to be stripped; never a byte token: valid UTF-8).
    vocab = S.base()["model"]["vocab"]
    with torch.no_grad():
        for piece, i in vocab.items():
            if not piece.startswith(S.META):
                model.lm_head.weight[i] = 0
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(S.base(), f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(cfg, chat_template=chat_forms.ZEPHYR), f)
    return d


def check_model(h):
    """A checkpoint with a version-4 tokenizer: Zephyr chat ids (run --chat,
    run -i) against apply_chat_template; the text generation prints against
    HF's decode of the same ids (one space dropped at the start of a text)."""
    from transformers import AutoTokenizer
    import chat_forms
    import test_chat
    from harness import RUN, run_cmd
    for label, cfg in (("hub_llama", S.HUB_CONFIG), ("hub", dict(S.FILE_CONFIG, eos_token="</s>"))):
        d = tiny_llama(os.path.join(OUT, f"model_{label}"), cfg)
        tok = AutoTokenizer.from_pretrained(d)
        live = chat_forms.expected(tok, "zephyr")
        build = os.path.join(OUT, f"chat_{label}")
        os.makedirs(build, exist_ok=True)
        print(f"  chat (Zephyr) on a Llama with the {label} tokenizer:", flush=True)
        test_chat.check_form(h, "zephyr", d, live, build)
        model = os.path.join(build, "zephyr.bin")
        for prompt, extra in (("", []), ("Once upon a time", []), ("Once upon a time", ["--echo"])):
            args = [RUN, model, "-n", "12", "-t", "0"] + extra
            p_ids = tok.encode(prompt) if prompt else [1]
            ids = run_cmd(args + ["--ids"] + (["-p", " ".join(map(str, p_ids))] if prompt else []),
                          input=b"").stdout.split()
            text = run_cmd(args + (["-p", prompt] if prompt else []), input=b"").stdout
            gen = [int(x) for x in ids]
            if "--echo" in extra:
                gen = gen[len(p_ids):]
                want = tok.decode(p_ids + gen, skip_special_tokens=False)
            elif prompt:
                want = tok.decode(p_ids + gen, skip_special_tokens=False)[len(tok.decode(p_ids)):]
            else:
                want = tok.decode(gen, skip_special_tokens=False)
                h.check(f"{label}: the first token generated from an empty prompt starts with a space "
                        f"(so the strip at the start of a text is seen)",
                        gen and tok.convert_ids_to_tokens(gen[0]).startswith(S.META),
                        tok.convert_ids_to_tokens(gen[:1]))
            h.check(f"{label}: generation with prompt {prompt!r} {' '.join(extra)} prints HF's decode of "
                    f"its ids ({len(gen)} generated)", len(gen) > 0 and text == want.encode(),
                    f"{text!r} != {want!r}")


def main():
    h = Harness("hf_tokenizer_spm")
    if not os.path.exists(DRIVER):
        h.check("tests/build/test_tokenizer exists (make tests/build/test_tokenizer)", False)
        h.done()
    os.makedirs(OUT, exist_ok=True)
    corpus = build_corpus.corpus()
    nfd = [(f"NFD {n}", unicodedata.normalize("NFD", t), s) for n, t, s in corpus[::3]
           if unicodedata.normalize("NFD", t) != t]
    extra = [(n, t, s) for n, t in F.family_texts() + K.kind_texts() + S.spm_texts() + S.long_texts()
             for s in (False, True)]
    cases = corpus + nfd + extra
    n_bytes, _kinds = build_corpus.summary(cases)
    print(f"  cases: {len(corpus)} corpus, {len(nfd)} decomposed, {len(extra)} family/kind/SPM texts; "
          f"{n_bytes} bytes", flush=True)
    h.check(f"at least 2,000 cases and 2 MB ({len(cases)} cases, {n_bytes} bytes)",
            len(cases) >= 2000 and n_bytes >= 2_000_000)
    for name, (_make, _cfg, ref) in S.VARIANTS.items():
        d = S.write(name, os.path.join(OUT, name))
        check(h, name, d, cases if name in S.MAIN else cases[::4], ref)
    d = train(corpus, os.path.join(OUT, "trained_hub"), S.FILE_CONFIG)
    check(h, "trained hub", d, cases, "file")
    d2 = os.path.join(OUT, "trained_hub_llama")
    os.makedirs(d2, exist_ok=True)
    shutil.copy(os.path.join(d, "tokenizer.json"), d2)
    with open(os.path.join(d2, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(S.HUB_CONFIG, f)
    check(h, "trained hub_llama", d2, cases, "transformers")
    check_model(h)
    h.done()


if __name__ == "__main__":
    main()
