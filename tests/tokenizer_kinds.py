"""tokenizer.json files with the pre-tokenizers of section version 3 (issue 14),
built here from GPT-2's vocabulary in tests/data/gpt2 (standard library only:
make test). Each is the form the model's own tokenizer.json takes:

  llama3_style(dir)  Llama-3: Split with Llama-3's regex then ByteLevel
                     (use_regex false), BPE with ignore_merges true, the
                     special tokens <|begin_of_text|> ... <|eot_id|> as added
                     tokens outside model.vocab, and a TemplateProcessing that
                     puts <|begin_of_text|> before the text (PreTrainedTokenizerFast).
                     model.vocab also holds WHOLE_WORDS, words that GPT-2's
                     merges never build: ignore_merges makes each one token.
  qwen2_style(dir)   Qwen2: the NFC normalizer, Split with Qwen2's regex (single
                     digits), ByteLevel, BPE; <|endoftext|>, <|im_start|> and
                     <|im_end|> special (tokenizer_class Qwen2Tokenizer).
  smollm2_style(dir) SmolLM2: Digits(individual_digits) then ByteLevel with
                     GPT-2's regex; <|im_start|> and <|im_end|> special.

GPT-2's own <|endoftext|> (id 50256) is renamed <|reserved_0|> in model.vocab
of the Llama-3 and SmolLM2 forms, which have no <|endoftext|> (renamed, not
removed: tokenizers numbers added tokens from the size of model.vocab, so a
hole in its ids would move theirs).

The expected ids of tests/tokenizer/kinds.jsonl come from Hugging Face on
exactly these files (tests/gen_tokenizer_kind_cases.py); make test-hf compares
them over the whole corpus and also trains tokenizers of each kind
(tests/hf_tokenizer_kinds.py).
"""
import json
import os

import tokenizer_families as F

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>"]
CHAT_SPECIALS = ["<|im_start|>", "<|im_end|>"]
# Words for model.vocab that GPT-2's merges do not build (Ġ is a space).
WHOLE_WORDS = ["Ġzzqxv", "zzqxv", "ĠQWERTYUIOP", "Ġbananarama", "ĠHello", "Ġ123", "Ġ!!!?"]

BYTE_LEVEL_SPLIT = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def split(pattern):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}


def bpe(vocab, merges, ignore_merges):
    return {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": ignore_merges, "vocab": vocab, "merges": [m.split(" ") for m in merges]}


def write(out_dir, tok_json, config):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return out_dir


def tokenizer_json(vocab, merges, added, pre, normalizer=None, ignore_merges=False, post=None):
    n = max(vocab.values()) + 1
    added_list = []
    for content in added:
        i = vocab.get(content)
        if i is None:
            i, n = n, n + 1
        added_list.append(F.added_token(i, content, True, False))
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_list,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": bpe(vocab, merges, ignore_merges)}


def gpt2_without_eot():
    vocab, merges = F.gpt2_vocab_merges()
    vocab["<|reserved_0|>"] = vocab.pop(F.EOT)
    return vocab, merges


def llama3_style(out_dir):
    vocab, merges = gpt2_without_eot()
    n = max(vocab.values()) + 1
    for w in WHOLE_WORDS:
        if w not in vocab:
            vocab[w] = n
            n += 1
    tj = tokenizer_json(vocab, merges, LLAMA3_SPECIALS, {"type": "Sequence", "pretokenizers": [
        split(LLAMA3_PATTERN), BYTE_LEVEL_SPLIT]}, ignore_merges=True)
    bos = next(t for t in tj["added_tokens"] if t["content"] == "<|begin_of_text|>")
    tj["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": bos["content"], "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": bos["content"], "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": bos["content"], "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {bos["content"]: {"id": bos["content"], "ids": [bos["id"]],
                                             "tokens": [bos["content"]]}}}]}
    return write(out_dir, tj, {"tokenizer_class": "PreTrainedTokenizerFast",
                               "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})


def qwen2_style(out_dir):
    vocab, merges = F.gpt2_vocab_merges()
    tj = tokenizer_json(vocab, merges, [F.EOT] + CHAT_SPECIALS, {"type": "Sequence", "pretokenizers": [
        split(QWEN2_PATTERN), BYTE_LEVEL_SPLIT]}, normalizer={"type": "NFC"})
    return write(out_dir, tj, {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>",
                               "pad_token": F.EOT, "unk_token": None, "bos_token": None,
                               "errors": "replace"})


def smollm2_style(out_dir):
    vocab, merges = gpt2_without_eot()
    tj = tokenizer_json(vocab, merges, CHAT_SPECIALS, {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, BYTE_LEVEL]})
    return write(out_dir, tj, {"tokenizer_class": "PreTrainedTokenizerFast",
                               "bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})


KINDS = {"llama3": llama3_style, "qwen2": qwen2_style, "smollm2": smollm2_style}
KIND_IDS = {"llama3": 1, "qwen2": 2, "smollm2": 3}


def kind_texts():
    """Texts that tell the pre-tokenizers apart: contractions in every case,
    runs of digits, newlines with spaces around them, punctuation before
    letters, chat templates, the whole words of WHOLE_WORDS."""
    texts = []
    for word in ("it's", "IT'S", "It'S", "we'RE", "WE'Ve", "I'M", "i'm", "YOU'LL", "you'Ll", "he'D",
                 "don'T", "x'ſ", "x'ſt", "'S", "'", "''s", "'ll'", "'Re", "'rE", "'ve'd"):
        texts.append((f"contraction {word}", f"So {word} here {word}"))
    for n in range(1, 12):
        digits = "1234567890123"[:n]
        texts.append((f"digits {n}", f"a{digits}b {digits} x {digits}.5 {digits},{digits}"))
    texts.append(("digits other scripts", "\u0661\u0662\u0663\u0664 \u00b2\u00b3 \u2163\u2164 "
                                          "\uff11\uff12\uff13\uff14 \u0967\u0968\u0969\u096a 3\u00bd"))
    for ws in ("\n", "\r\n", "\n\n", " \n", "\n ", "  \n  ", "\t\n", " \r\n\t ", "\n\n\n   ", "\r",
               "\u00a0\n", "\u3000 \n"):
        name = ws.encode("unicode_escape").decode()
        texts.append((f"newline {name} between", f"a{ws}b"))
        texts.append((f"newline {name} after punct", f"x.{ws}(y){ws}"))
        texts.append((f"newline {name} at end", f"end{ws}"))
    texts.append(("punct before letters", "(hello) [World] {x}y .Net 'quoted' \"dq\" @user #tag $x"
                                          " \u00bfQu\u00e9? \u00abguill\u00e9\u00bb \u201csmart\u201d"))
    texts.append(("punct runs", "a...b!!!c???  ---> <== :: ;; ,, \u2026\u2026 ))((\n"))
    texts.append(("code", "def f(x):\n    return x**2 + 10_000\r\n\tif (a<b) { c++; }\n\n\n"))
    texts.append(("whole words", "zzqxv zzqxv QWERTYUIOP bananarama Hello 123 !!!? xzzqxv"))
    texts.append(("chat template", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                                   "Hi 123!<|im_end|>\n<|im_start|>assistant\n"))
    texts.append(("llama3 chat", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                                 "What's 2+2?<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
                                 "\n\n"))
    texts.append(("special <|endoftext|> in text", f"x{F.EOT}y  {F.EOT}"))
    texts.append(("mixed scripts", "Grüße 世界 мир 123 العربية 한국어\n\t ok"))
    texts.append(("spaces before digits", "a   1  22   333    4444"))
    texts.append(("empty", ""))
    return texts
