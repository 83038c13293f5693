#!/usr/bin/env python3
"""export.py refuses tokenizers that `run` cannot honour (issue 17); `make test`,
standard library only.

`run` implements GPT-2's pre-tokenizer regex and byte-level BPE by merge rank,
with special tokens; and (issue 13, a version 2 section) the NFC normalizer,
added tokens that are not special, and a BOS id before every text, as
GPT-NeoX's tokenizer.json and OPT's files declare them.  Every setting of
tokenizer.json / tokenizer_config.json that decides the ids is read by
export.py; a setting that would make Hugging Face give other ids is refused
with a message naming the file, the setting and its value.

The files are built here from a small byte-level vocabulary.  VARIANTS is the
one list of them: each refused variant's expected message, and its effect in
Hugging Face (`ids`: other ids on some text of PROBES, `decode`: other text
from the same ids, `load`: tokenizers cannot load it, `none`: the same ids
today, refused because export.py does not know it to be equivalent), which
tests/hf_export_refusals.py (make test-hf) checks against tokenizers and
transformers.  ACCEPTED are the equivalent forms that must export to the same
bytes as GPT-2's own form; ACCEPTED_V2 the forms that export to a version 2
section, ACCEPTED_V3 (issue 14) those of the pre-tokenizers of Llama-3, Qwen2
and SmolLM2, ignore_merges and a BOS template, mostly version 3
(tests/hf_export_refusals.py checks that run gives HF's ids on them).
"""
import copy
import json
import os
import shutil
import struct
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from harness import Harness, run_cmd  # noqa: E402
from export import bytes_to_unicode, GPT2_PATTERN  # noqa: E402
import tokenizer_spm as S  # noqa: E402

EXPORT = os.path.join(ROOT, "export.py")
B2C = bytes_to_unicode()


def s(b):
    """A byte string in the byte-level alphabet of vocab.json."""
    return "".join(B2C[x] for x in b)


# 256 single bytes, a few merges (one across the regex's ". | the" boundary and
# one of two spaces, so that splitting differently shows), a word no merge
# reaches ("abc", for ignore_merges), digits, and GPT-2's end-of-text token.
MERGES = [(b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"a", b"b"), (b"b", b"c"),
          (b" ", b" "), (b".", b"t"), (b"t", b"he"), (b"1", b"2")]
VOCAB = {s(bytes([b])): b for b in range(256)}
for a, b in MERGES:
    VOCAB.setdefault(s(a + b), len(VOCAB))
VOCAB[s(b"abc")] = len(VOCAB)
EOT = len(VOCAB)
VOCAB["<|endoftext|>"] = EOT
MERGE_LINES = [f"{s(a)} {s(b)}" for a, b in MERGES]

PROBES = ["the cat", "abc", "x  y", "a.the", " the end", "The", "A\u030a", "\uff21b",
          "a <|endoftext|> b", "x<|endoftext|>y", "foo.bar(baz)", "it's 1234", "plain text",
          "<pad> x", "\n\n the"]

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
EOT_ADDED = {"id": EOT, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": True, "special": True}


def gpt2_tokenizer_json():
    """tokenizer.json as GPT-2's own (openai-community/gpt2) declares it."""
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [dict(EOT_ADDED)],
            "normalizer": None, "pre_tokenizer": dict(BYTE_LEVEL),
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": dict(VOCAB),
                      "merges": [[s(a), s(b)] for a, b in MERGES]}}


def gpt2_slow_files():
    """vocab.json + merges.txt with a tokenizer_config.json as transformers saves GPT-2's."""
    return {"vocab.json": dict(VOCAB), "merges.txt": "#version: 0.2\n" + "\n".join(MERGE_LINES) + "\n",
            "tokenizer_config.json": {"add_prefix_space": False, "bos_token": "<|endoftext|>",
                                      "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                                      "pad_token": None, "clean_up_tokenization_spaces": True,
                                      "errors": "replace", "model_max_length": 1024,
                                      "tokenizer_class": "GPT2Tokenizer"}}


def base_files(kind):
    """The base of a variant: "json" GPT-2's tokenizer.json, "slow" its vocab.json +
    merges.txt; "spm" the SentencePiece-style tokenizer.json of tests/data/spm
    (the hub's form of Llama-2's) read as it is (PreTrainedTokenizerFast),
    "spm_llama" the same with TinyLlama's tokenizer_config.json (LlamaTokenizer,
    which transformers 5 rebuilds: Metaspace "first")."""
    if kind == "spm":
        return {"tokenizer.json": S.base(), "tokenizer_config.json": dict(S.FILE_CONFIG)}
    if kind == "spm_llama":
        return {"tokenizer.json": S.base(), "tokenizer_config.json": copy.deepcopy(S.HUB_CONFIG)}
    return {"tokenizer.json": gpt2_tokenizer_json()} if kind == "json" else gpt2_slow_files()


# Texts for the SentencePiece-style variants: leading and double spaces, a
# newline and an emoji (byte tokens), special tokens, "▁" typed, NFKC's ligature.
SPM_PROBES = ["Hello world", " Hello", "a  b", "x\ny", "I like 🍵 tea", "<s>Hello", "Hello<s>world",
              "a</s> b", "\u2581x y", "\ufb01ne ①", "", "the quick brown fox", "我喜欢", "<bos> x", "<pad> y"]


def probes(kind):
    return SPM_PROBES if kind.startswith("spm") else PROBES


# Edits of the files {name: object}.
def tj(f):
    return f["tokenizer.json"]


def put(*path_and_value):
    *path, value = path_and_value

    def edit(f):
        node = f
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return edit


def drop(*path):
    def edit(f):
        node = f
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
    return edit


def pre(*items):
    return put("tokenizer.json", "pre_tokenizer", {"type": "Sequence", "pretokenizers": list(items)})


def split(pattern=GPT2_PATTERN, behavior="Isolated", invert=False):
    return {"type": "Split", "pattern": {"Regex": pattern}, "behavior": behavior, "invert": invert}


BL_NOREGEX = dict(BYTE_LEVEL, use_regex=False)
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
                  r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
BOS_TEMPLATE = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [EOT],
                                                     "tokens": ["<|endoftext|>"]}}}
TEMPLATE_NOTHING = {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {}}
CFG = "tokenizer_config.json"
PLAIN = {"id": EOT + 1, "content": "plain", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": False}

# (name, files: "json" or "slow", edit, [message fragments], effect in Hugging Face)
VARIANTS = [
    # tokenizer.json: the pre-tokenizer
    ("Split with Llama-3's regex changed (\\p{N}{1,2})", "json",
     pre(split(LLAMA3_PATTERN.replace("{1,3}", "{1,2}")), BL_NOREGEX),
     ["pre_tokenizer.pretokenizers[0].pattern = {\"Regex\": \"(?i:'s", "only the regex of GPT-2, Llama-3 or Qwen2"],
     "ids"),
    ("Split with Llama-3's regex + ByteLevel(use_regex true)", "json", pre(split(LLAMA3_PATTERN), BYTE_LEVEL),
     ["pretokenizers[1].use_regex = true"], "none"),
    ("Split with Qwen2's regex, behavior Removed", "json", pre(split(QWEN2_PATTERN, behavior="Removed"), BL_NOREGEX),
     ["pretokenizers[0].behavior = \"Removed\""], "ids"),
    ("ByteLevel add_prefix_space true", "json", put("tokenizer.json", "pre_tokenizer", "add_prefix_space", True),
     ["pre_tokenizer.add_prefix_space = true"], "ids"),
    ("ByteLevel use_regex false alone", "json", put("tokenizer.json", "pre_tokenizer", "use_regex", False),
     ["pre_tokenizer.use_regex = false"], "ids"),
    ("pre_tokenizer null", "json", put("tokenizer.json", "pre_tokenizer", None), ["pre_tokenizer is null"], "ids"),
    ("pre_tokenizer missing", "json", drop("tokenizer.json", "pre_tokenizer"), ["pre_tokenizer is missing"], "ids"),
    ("pre_tokenizer Whitespace", "json", put("tokenizer.json", "pre_tokenizer", {"type": "Whitespace"}),
     ["pre_tokenizer Whitespace is not supported"], "ids"),
    ("Split GPT-2 regex, behavior Contiguous", "json", pre(split(behavior="Contiguous"), BL_NOREGEX),
     ["pretokenizers[0].behavior = \"Contiguous\""], "ids"),
    ("Split GPT-2 regex, behavior MergedWithPrevious", "json", pre(split(behavior="MergedWithPrevious"), BL_NOREGEX),
     ["pretokenizers[0].behavior = \"MergedWithPrevious\""], "none"),
    ("Split GPT-2 regex, behavior Removed", "json", pre(split(behavior="Removed"), BL_NOREGEX),
     ["pretokenizers[0].behavior = \"Removed\""], "ids"),
    ("Split GPT-2 regex, invert true", "json", pre(split(invert=True), BL_NOREGEX),
     ["pretokenizers[0].invert = true"], "none"),
    ("Split GPT-2 regex + ByteLevel with add_prefix_space", "json",
     pre(split(), dict(BL_NOREGEX, add_prefix_space=True)), ["pretokenizers[1].add_prefix_space = true"], "ids"),
    ("Split GPT-2 regex + ByteLevel(use_regex true)", "json", pre(split(), BYTE_LEVEL),
     ["pretokenizers[1].use_regex = true"], "none"),
    ("Sequence [Digits(individual_digits false), ByteLevel]", "json",
     pre({"type": "Digits", "individual_digits": False}, BYTE_LEVEL),
     ["pretokenizers[0].individual_digits = false"], "none"),
    ("Sequence [Digits, ByteLevel, Split]", "json",
     pre({"type": "Digits", "individual_digits": True}, BYTE_LEVEL, split()),
     ["Sequence of [\"Digits\", \"ByteLevel\", \"Split\"]"], "ids"),
    ("ByteLevel without add_prefix_space", "json", drop("tokenizer.json", "pre_tokenizer", "add_prefix_space"),
     ["pre_tokenizer.add_prefix_space is missing"], "load"),
    ("ByteLevel with an unknown option", "json", put("tokenizer.json", "pre_tokenizer", "split_digits", True),
     ["pre_tokenizer: unknown option 'split_digits'"], "none"),
    # the normalizer
    ("normalizer NFKC", "json", put("tokenizer.json", "normalizer", {"type": "NFKC"}), ["normalizer NFKC"], "ids"),
    ("normalizer Lowercase", "json", put("tokenizer.json", "normalizer", {"type": "Lowercase"}),
     ["normalizer Lowercase"], "ids"),
    ("normalizer Sequence [NFC, NFKD]", "json",
     put("tokenizer.json", "normalizer", {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "NFKD"}]}),
     ["normalizer.normalizers[1] NFKD"], "ids"),
    # the model
    ("BPE ignore_merges 1", "json", put("tokenizer.json", "model", "ignore_merges", 1),
     ["model.ignore_merges = 1"], "load"),
    ("BPE dropout 1.0", "json", put("tokenizer.json", "model", "dropout", 1.0), ["model.dropout = 1.0"], "ids"),
    ("BPE dropout 0.0", "json", put("tokenizer.json", "model", "dropout", 0.0), ["model.dropout = 0.0"], "none"),
    ("BPE unk_token", "json", put("tokenizer.json", "model", "unk_token", "<|endoftext|>"),
     ["model.unk_token = \"<|endoftext|>\""], "none"),
    ("BPE byte_fallback", "json", put("tokenizer.json", "model", "byte_fallback", True),
     ["model.byte_fallback = true"], "none"),
    ("BPE fuse_unk", "json", put("tokenizer.json", "model", "fuse_unk", True), ["model.fuse_unk = true"], "none"),
    ("BPE end_of_word_suffix", "json", put("tokenizer.json", "model", "end_of_word_suffix", "</w>"),
     ["model.end_of_word_suffix = \"</w>\""], "ids"),
    ("BPE continuing_subword_prefix", "json", put("tokenizer.json", "model", "continuing_subword_prefix", "##"),
     ["model.continuing_subword_prefix = \"##\""], "load"),
    ("model WordPiece", "json", put("tokenizer.json", "model", "type", "WordPiece"),
     ["model type 'WordPiece' is not supported"], "load"),
    # added tokens
    ("a non-special added token with lstrip", "json",
     lambda f: tj(f)["added_tokens"].append(dict(PLAIN, lstrip=True)), ["added_tokens[1].lstrip = true"], "ids"),
    ("a non-special added token with single_word", "json",
     lambda f: tj(f)["added_tokens"].append(dict(PLAIN, single_word=True)),
     ["added_tokens[1].single_word = true"], "ids"),
    ("an added token without special", "json",
     lambda f: tj(f)["added_tokens"].append({k: v for k, v in PLAIN.items() if k != "special"}),
     ["added_tokens[1].special is missing"], "load"),
    ("special token with lstrip", "json", put("tokenizer.json", "added_tokens", 0, "lstrip", True),
     ["added_tokens[0].lstrip = true"], "ids"),
    ("special token with rstrip", "json", put("tokenizer.json", "added_tokens", 0, "rstrip", True),
     ["added_tokens[0].rstrip = true"], "ids"),
    ("special token with single_word", "json", put("tokenizer.json", "added_tokens", 0, "single_word", True),
     ["added_tokens[0].single_word = true"], "ids"),
    # post-processor, decoder, truncation, padding, unknown keys
    ("post_processor TemplateProcessing adding BOS and EOS", "json",
     put("tokenizer.json", "post_processor", dict(BOS_TEMPLATE, single=BOS_TEMPLATE["single"] + [
         {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}])),
     ["post_processor.single = [{\"SpecialToken\""], "ids"),
    ("post_processor RobertaProcessing", "json",
     put("tokenizer.json", "post_processor", {"type": "RobertaProcessing", "sep": ["<|endoftext|>", EOT],
                                              "cls": ["<|endoftext|>", EOT], "trim_offsets": True,
                                              "add_prefix_space": False}),
     ["post_processor RobertaProcessing is not supported"], "ids"),
    ("post_processor Sequence of two BOS templates", "json",
     put("tokenizer.json", "post_processor", {"type": "Sequence", "processors": [BOS_TEMPLATE, BOS_TEMPLATE]}),
     ["post_processor adds 2 tokens before the text"], "ids"),
    ("decoder Metaspace", "json",
     put("tokenizer.json", "decoder", {"type": "Metaspace", "replacement": s(b" "), "prepend_scheme": "always",
                                       "split": True}), ["decoder Metaspace is not supported"], "decode"),
    ("decoder Strip", "json", put("tokenizer.json", "decoder", {"type": "Strip", "content": " ", "start": 1,
                                                                 "stop": 0}),
     ["decoder Strip is not supported"], "decode"),
    ("truncation", "json", put("tokenizer.json", "truncation", {"direction": "Right", "max_length": 2,
                                                                  "strategy": "LongestFirst", "stride": 0}),
     ["truncation = {\"direction\""], "ids"),
    ("padding", "json", put("tokenizer.json", "padding", {"strategy": {"Fixed": 16}, "direction": "Right",
                                                          "pad_to_multiple_of": None, "pad_id": EOT,
                                                          "pad_type_id": 0, "pad_token": "<|endoftext|>"}),
     ["padding = {\"strategy\""], "ids"),
    ("unknown top-level key", "json", put("tokenizer.json", "pre_normalizer", None),
     ["unknown key 'pre_normalizer'"], "load"),
    # tokenizer_config.json and friends over vocab.json + merges.txt
    ("tokenizer_config add_prefix_space true", "slow", put(CFG, "add_prefix_space", True),
     ["tokenizer_config.json: add_prefix_space = true"], "ids"),
    ("tokenizer_config add_bos_token true without tokenizer_class", "slow",
     lambda f: (put(CFG, "add_bos_token", True)(f), drop(CFG, "tokenizer_class")(f)),
     ["tokenizer_config.json: add_bos_token = true is not supported here"], "load"),
    ("tokenizer_config add_eos_token true", "slow", put(CFG, "add_eos_token", True),
     ["tokenizer_config.json: add_eos_token = true"], "ids"),
    ("tokenizer_config tokenizer_class RobertaTokenizer", "slow", put(CFG, "tokenizer_class", "RobertaTokenizer"),
     ["tokenizer_class = \"RobertaTokenizer\""], "ids"),
    ("tokenizer_config tokenizer_class CodeGenTokenizer", "slow", put(CFG, "tokenizer_class", "CodeGenTokenizer"),
     ["tokenizer_class = \"CodeGenTokenizer\""], "none"),
    ("tokenizer_config non-special added token", "slow",
     put(CFG, "added_tokens_decoder", {str(EOT + 1): {"content": "plain", "special": False}}),
     ["added_tokens_decoder[" + str(EOT + 1) + "].special = false"], "ids"),
    ("tokenizer_config special token with lstrip", "slow",
     put(CFG, "added_tokens_decoder", {str(EOT): {"content": "<|endoftext|>", "special": True, "lstrip": True}}),
     ["added_tokens_decoder[" + str(EOT) + "].lstrip = true"], "ids"),
    ("tokenizer_config pad_token not in the vocabulary", "slow", put(CFG, "pad_token", "<pad>"),
     ["tokenizer_config.json: pad_token '<pad>' is in neither"], "ids"),
    ("special_tokens_map additional special token not in the vocabulary", "slow",
     put("special_tokens_map.json", {"additional_special_tokens": ["<pad>"]}),
     ["special_tokens_map.json: additional_special_tokens '<pad>' is in neither"], "ids"),
    ("added_tokens.json non-special token", "slow", put("added_tokens.json", {"plain": EOT + 1}),
     ["added_tokens.json: 'plain' (id " + str(EOT + 1) + ")"], "ids"),
    # transformers 5's GPT2Tokenizer builds from vocab.json + merges.txt; other
    # classes and versions load tokenizer.json when it is there.
    ("tokenizer.json beside vocab.json is checked too", "slow",
     lambda f: (f.__setitem__("tokenizer.json", dict(gpt2_tokenizer_json(), normalizer={"type": "NFKC"})),
                put(CFG, "tokenizer_class", "PreTrainedTokenizerFast")(f)),
     ["normalizer NFKC"], "ids"),
    # SentencePiece-style BPE (section version 4)
    ("SPM: model.dropout 1.0", "spm", put("tokenizer.json", "model", "dropout", 1.0),
     ["model.dropout = 1.0"], "ids"),
    ("SPM: end_of_word_suffix </w>", "spm", put("tokenizer.json", "model", "end_of_word_suffix", "</w>"),
     ['model.end_of_word_suffix = "</w>"'], "ids"),
    ("SPM: ignore_merges true", "spm", put("tokenizer.json", "model", "ignore_merges", True),
     ["model.ignore_merges = true"], "none"),
    ("SPM: unk_token not in the vocabulary", "spm", put("tokenizer.json", "model", "unk_token", "<UNK>"),
     ['model.unk_token = "<UNK>"'], "none"),
    ("SPM: normalizer Replace without Prepend", "spm",
     put("tokenizer.json", "normalizer", {"type": "Sequence", "normalizers": [S.base()["normalizer"]["normalizers"][1]]}),
     ["normalizer = {\"type\": \"Sequence\""], "ids"),
    ("SPM: normalizer NFKC before Prepend, Replace", "spm",
     put("tokenizer.json", "normalizer", {"type": "Sequence", "normalizers": [{"type": "NFKC"}]
                                          + S.base()["normalizer"]["normalizers"]}),
     ["normalizer = {\"type\": \"Sequence\""], "ids"),
    ("SPM: Metaspace with replacement _", "spm",
     lambda f: (put("tokenizer.json", "normalizer", None)(f),
                put("tokenizer.json", "pre_tokenizer", dict(S.metaspace("first", False), replacement="_"))(f)),
     ['pre_tokenizer.replacement = "_"'], "ids"),
    ("SPM: Metaspace prepend_scheme sometimes", "spm",
     lambda f: (put("tokenizer.json", "normalizer", None)(f),
                put("tokenizer.json", "pre_tokenizer", S.metaspace("sometimes", False))(f)),
     ['pre_tokenizer.prepend_scheme = "sometimes"'], "load"),
    ("SPM: Metaspace after the Prepend normalizer", "spm",
     put("tokenizer.json", "pre_tokenizer", S.metaspace("always", True)),
     ["Metaspace after the normalizer Prepend/Replace"], "ids"),
    ("SPM: pre_tokenizer Whitespace", "spm", put("tokenizer.json", "pre_tokenizer", {"type": "Whitespace"}),
     ["pre_tokenizer Whitespace is not supported"], "ids"),
    ("SPM: decoder Metaspace", "spm",
     put("tokenizer.json", "decoder", {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always",
                                       "split": True}), ['decoder = {"type": "Metaspace"'], "decode"),
    ("SPM: decoder without Fuse", "spm",
     put("tokenizer.json", "decoder", {"type": "Sequence", "decoders": [
         S.DECODER["decoders"][i] for i in (0, 1, 3)]}), ['decoder = {"type": "Sequence"'], "decode"),
    ("SPM Llama: legacy \"yes\"", "spm_llama", put(CFG, "legacy", "yes"),
     ['tokenizer_config.json: legacy = "yes"'], "ids"),
    ("SPM Llama: bos_token not in the vocabulary", "spm_llama", put(CFG, "bos_token", "<bos>"),
     ["bos_token '<bos>' is not in model.vocab"], "ids"),
    ("SPM: pad_token a token of model.vocab, not an added token", "spm", put(CFG, "pad_token", "th"),
     ["pad_token 'th' is not in tokenizer.json's added_tokens"], "ids"),
    ("SPM: added_tokens_decoder with a token tokenizer.json lacks", "spm",
     put(CFG, "added_tokens_decoder", {"1500": {"content": "<pad>", "special": True, "normalized": False,
                                                "lstrip": False, "rstrip": False, "single_word": False}}),
     ['added_tokens_decoder[1500] = "<pad>" is not in tokenizer.json'], "ids"),
    ("SPM: tokenizer_class T5Tokenizer", "spm", put(CFG, "tokenizer_class", "T5Tokenizer"),
     ['tokenizer_class = "T5Tokenizer"'], "load"),
]

# Forms that give GPT-2's ids (tests/hf_export_refusals.py checks that with
# tokenizers): each must export to exactly the bytes of its base.
ACCEPTED = [
    ("GPT-2's tokenizer.json", "json", lambda f: None),
    ("pre_tokenizer Sequence [ByteLevel]", "json", pre(BYTE_LEVEL)),
    ("Split GPT-2 regex (Isolated) + ByteLevel(use_regex false)", "json", pre(split(), BL_NOREGEX)),
    ("ByteLevel without use_regex (default true)", "json", drop("tokenizer.json", "pre_tokenizer", "use_regex")),
    ("ByteLevel trim_offsets false", "json", put("tokenizer.json", "pre_tokenizer", "trim_offsets", False)),
    ("normalizer Sequence []", "json", put("tokenizer.json", "normalizer", {"type": "Sequence", "normalizers": []})),
    ("no normalizer, post_processor, decoder, truncation, padding keys", "json",
     lambda f: [tj(f).pop(k) for k in ("normalizer", "post_processor", "decoder", "truncation", "padding")]),
    ("post_processor TemplateProcessing that adds nothing (transformers 5)", "json",
     put("tokenizer.json", "post_processor", TEMPLATE_NOTHING)),
    ("decoder Sequence [ByteLevel]", "json",
     put("tokenizer.json", "decoder", {"type": "Sequence", "decoders": [gpt2_tokenizer_json()["decoder"]]})),
    ("BPE options absent (tokenizers' defaults), continuing_subword_prefix null", "json",
     lambda f: ([tj(f)["model"].pop(k) for k in ("dropout", "unk_token", "end_of_word_suffix", "fuse_unk",
                                                 "byte_fallback", "ignore_merges")],
                put("tokenizer.json", "model", "continuing_subword_prefix", None)(f))),
    ("special token normalized false", "json", put("tokenizer.json", "added_tokens", 0, "normalized", False)),
    ("GPT-2's vocab.json + merges.txt + tokenizer_config.json", "slow", lambda f: None),
    ("vocab.json + merges.txt alone", "slow", drop(CFG)),
    ("tokenizer_config flags false, split_special_tokens, GPT2TokenizerFast", "slow",
     lambda f: f[CFG].update(add_bos_token=False, add_eos_token=False, split_special_tokens=False,
                             tokenizer_class="GPT2TokenizerFast")),
    ("tokenizer_config special token as an object", "slow",
     put(CFG, "eos_token", {"__type": "AddedToken", "content": "<|endoftext|>", "lstrip": False,
                            "normalized": True, "rstrip": False, "single_word": False})),
    ("added_tokens.json with a declared special token", "slow", put("added_tokens.json", {"<|endoftext|>": EOT})),
]


SPACE_RUNS = [{"id": EOT + n - 1, "content": " " * n, "single_word": False, "lstrip": False, "rstrip": False,
               "normalized": True, "special": False} for n in range(2, 6)]
PAD_ADDED = {"id": EOT + 5, "content": "<|padding|>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}


def pythia_form(f):
    """GPT-NeoX's tokenizer.json: NFC, runs of spaces as non-special added tokens
    (matched in the normalized text), specials matched in the raw text."""
    t = tj(f)
    t["normalizer"] = {"type": "NFC"}
    t["added_tokens"] = [dict(EOT_ADDED, normalized=False)] + [dict(x) for x in SPACE_RUNS] + [dict(PAD_ADDED)]


# Forms run honours with a version 2 section: (name, kind, edit, (normalizer,
# BOS id or -1, [(id, flags)] of the added tokens; flags 1 special, 2 normalized)).
ACCEPTED_V2 = [
    ("normalizer NFC", "json", put("tokenizer.json", "normalizer", {"type": "NFC"}), (1, -1, [(EOT, 3)])),
    ("normalizer Sequence [NFC]", "json",
     put("tokenizer.json", "normalizer", {"type": "Sequence", "normalizers": [{"type": "NFC"}]}),
     (1, -1, [(EOT, 3)])),
    ("a non-special added token", "json", lambda f: tj(f)["added_tokens"].append(dict(PLAIN)),
     (0, -1, [(EOT, 3), (EOT + 1, 0)])),
    ("GPT-NeoX (Pythia) form: NFC, runs of spaces, specials", "json", pythia_form,
     (1, -1, [(EOT, 1)] + [(x["id"], 2) for x in SPACE_RUNS] + [(EOT + 5, 1)])),
    ("GPT-NeoX form with tokenizer_class GPTNeoXTokenizer", "json",
     lambda f: (pythia_form(f), f.__setitem__(CFG, {"tokenizer_class": "GPTNeoXTokenizer",
                                                     "add_prefix_space": False, "bos_token": "<|endoftext|>",
                                                     "eos_token": "<|endoftext|>",
                                                     "unk_token": "<|endoftext|>"})),
     (1, -1, [(EOT, 1)] + [(x["id"], 2) for x in SPACE_RUNS] + [(EOT + 5, 1)])),
    ("OPT form: add_bos_token true (GPT2Tokenizer, bos_token <|endoftext|>)", "slow",
     put(CFG, "add_bos_token", True), (0, EOT, [(EOT, 1)])),
    ("OPT form: add_bos_token true, bos_token from special_tokens_map.json", "slow",
     lambda f: (put(CFG, "add_bos_token", True)(f), drop(CFG, "bos_token")(f),
                f.__setitem__("special_tokens_map.json", {"bos_token": "<|endoftext|>"})),
     (0, EOT, [(EOT, 1)])),
]


# Forms run honours with a version 3 section: (name, kind, edit, (pre-tokenizer
# kind, flags (1 ignore_merges), normalizer, BOS id or -1, [(id, flags)] of
# the added tokens; flag 4: in model.vocab too)).
DIGITS = {"type": "Digits", "individual_digits": True}
ACCEPTED_V3 = [
    ("Llama-3: Split with Llama-3's regex + ByteLevel(use_regex false)", "json",
     pre(split(LLAMA3_PATTERN), BL_NOREGEX), (1, 0, 0, -1, [(EOT, 3)])),
    ("Llama-3: the same with ignore_merges", "json",
     lambda f: (pre(split(LLAMA3_PATTERN), BL_NOREGEX)(f), put("tokenizer.json", "model", "ignore_merges", True)(f)),
     (1, 1, 0, -1, [(EOT, 7)])),
    ("Llama-3: the same with a BOS template (Sequence [ByteLevel, TemplateProcessing])", "json",
     lambda f: (pre(split(LLAMA3_PATTERN), BL_NOREGEX)(f), put("tokenizer.json", "model", "ignore_merges", True)(f),
                put("tokenizer.json", "post_processor", {"type": "Sequence", "processors": [
                    {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                    BOS_TEMPLATE]})(f)),
     (1, 1, 0, EOT, [(EOT, 7)])),
    ("GPT-2's pre-tokenizer with ignore_merges", "json", put("tokenizer.json", "model", "ignore_merges", True),
     (0, 1, 0, -1, [(EOT, 7)])),
    ("Qwen2: NFC, Split with Qwen2's regex + ByteLevel(use_regex false)", "json",
     lambda f: (pre(split(QWEN2_PATTERN), BL_NOREGEX)(f), put("tokenizer.json", "normalizer", {"type": "NFC"})(f)),
     (2, 0, 1, -1, [(EOT, 3)])),
    ("Qwen2 with tokenizer_class Qwen2Tokenizer", "json",
     lambda f: (pre(split(QWEN2_PATTERN), BL_NOREGEX)(f), put("tokenizer.json", "normalizer", {"type": "NFC"})(f),
                f.__setitem__(CFG, {"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|endoftext|>",
                                    "unk_token": None, "bos_token": None, "pad_token": "<|endoftext|>"})),
     (2, 0, 1, -1, [(EOT, 3)])),
    ("SmolLM2: Digits(individual_digits) + ByteLevel", "json", pre(DIGITS, BYTE_LEVEL), (3, 0, 0, -1, [(EOT, 3)])),
    ("post_processor TemplateProcessing adding BOS (GPT-2's pre-tokenizer: version 2)", "json",
     put("tokenizer.json", "post_processor", BOS_TEMPLATE), (0, 0, 0, EOT, [(EOT, 3)])),
]


# Forms run honours with a version 4 section (SentencePiece-style BPE): (name,
# kind, edit, (normalizer, pre-tokenizer, flags, unk_id, bos_id)); flags: 1
# byte_fallback, 2 fuse_unk, 4/8 prepend_scheme first/never, 16 split, 32 strip.
ACCEPTED_V4 = [
    ("SPM: the hub's Llama-2 form (Prepend, Replace)", "spm", lambda f: None, (2, 0, 35, 0, 1)),
    ("SPM: decoder without Strip", "spm",
     put("tokenizer.json", "decoder", {"type": "Sequence", "decoders": S.DECODER["decoders"][:3]}), (2, 0, 3, 0, 1)),
    ("SPM: no post_processor (no BOS)", "spm", put("tokenizer.json", "post_processor", None), (2, 0, 35, 0, -1)),
    ("SPM: byte_fallback false, fuse_unk false", "spm",
     lambda f: (put("tokenizer.json", "model", "byte_fallback", False)(f),
                put("tokenizer.json", "model", "fuse_unk", False)(f)), (2, 0, 32, 0, 1)),
    ("SPM: unk_token null", "spm", put("tokenizer.json", "model", "unk_token", None), (2, 0, 35, -1, 1)),
    ("SPM: no normalizer, no pre-tokenizer (spaces stay spaces)", "spm",
     put("tokenizer.json", "normalizer", None), (0, 0, 35, 0, 1)),
    ("SPM: Metaspace first, split false (transformers 5's)", "spm",
     lambda f: f.__setitem__("tokenizer.json", S.metaspace_json("first", False)), (0, 1, 39, 0, 1)),
    ("SPM: Metaspace always, split true", "spm",
     lambda f: f.__setitem__("tokenizer.json", S.metaspace_json("always", True)), (0, 1, 51, 0, 1)),
    ("SPM: Metaspace never, split true", "spm",
     lambda f: f.__setitem__("tokenizer.json", S.metaspace_json("never", True)), (0, 1, 59, 0, 1)),
    ("SPM: add_bos_token true with the BOS template", "spm", put(CFG, "add_bos_token", True), (2, 0, 35, 0, 1)),
    # transformers 5 drops add_bos_token / add_eos_token when there is a tokenizer.json (a warning says so)
    ("SPM: add_bos_token false (ignored: the template decides)", "spm", put(CFG, "add_bos_token", False),
     (2, 0, 35, 0, 1)),
    ("SPM Llama: add_eos_token true (ignored)", "spm_llama", put(CFG, "add_eos_token", True), (0, 1, 39, -1, 1)),
    ("SPM Llama: TinyLlama's tokenizer_config.json (transformers 5: Metaspace first)", "spm_llama",
     lambda f: None, (0, 1, 39, -1, 1)),
    ("SPM Llama: LlamaTokenizerFast", "spm_llama", put(CFG, "tokenizer_class", "LlamaTokenizerFast"),
     (0, 1, 39, -1, 1)),
    ("SPM Llama: legacy true (Metaspace always)", "spm_llama", put(CFG, "legacy", True), (0, 1, 35, -1, 1)),
    ("SPM Llama: add_prefix_space false (never, no Strip)", "spm_llama", put(CFG, "add_prefix_space", False),
     (0, 1, 11, -1, 1)),
    ("SPM Llama: add_bos_token false (ignored)", "spm_llama", put(CFG, "add_bos_token", False), (0, 1, 39, -1, 1)),
    ("SPM Llama: transformers 5's saved form", "spm_llama",
     lambda f: (f.__setitem__("tokenizer.json", S.tf5_json(S.base())),
                f.__setitem__(CFG, dict(S.TF5_CONFIG))), (0, 1, 39, -1, 1)),
]


def section_fields_v4(data):
    """(version, normalizer, pre-tokenizer, flags, unk_id, bos_id) of a section."""
    version = struct.unpack_from("<I", data, 8)[0]
    norm, bos, pre, flags, unk = struct.unpack_from("<IiIIi", data, 32)
    return version, norm, pre, flags, unk, bos


def section_fields_v3(data):
    """(version, pre-tokenizer, flags, normalizer, bos_id, [(id, flags)])."""
    version, n_tok, n_merges, n_added = struct.unpack_from("<4I", data, 8)
    norm, bos, pretok, flags = struct.unpack_from("<IiII", data, 32)
    off = 48 + 4 * (n_tok + 1) + 12 * n_merges
    words = struct.unpack_from(f"<{2 * n_added}I", data, off)
    return version, pretok, flags, norm, bos, list(zip(words[::2], words[1::2]))


def section_fields(data):
    """(version, normalizer, bos_id, [(id, flags)]) of a section file's bytes."""
    version, n_tok, n_merges, n_added = struct.unpack_from("<4I", data, 8)
    if version == 1:
        off = 32 + 4 * (n_tok + 1) + 12 * n_merges
        return 1, 0, -1, [(i, 1) for i in struct.unpack_from(f"<{n_added}I", data, off)]
    norm, bos = struct.unpack_from("<Ii", data, 32)
    off = 48 + 4 * (n_tok + 1) + 12 * n_merges
    words = struct.unpack_from(f"<{2 * n_added}I", data, off)
    return version, norm, bos, list(zip(words[::2], words[1::2]))


def variant_files(kind, edit):
    f = copy.deepcopy(base_files(kind))
    edit(f)
    return f


def write_dir(root, name, files):
    d = os.path.join(root, name)
    os.makedirs(d)
    for n, v in files.items():
        with open(os.path.join(d, n), "w", encoding="utf-8") as fh:
            fh.write(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
    return d


def export_tok(d, out):
    return run_cmd([sys.executable, EXPORT, "--tokenizer-only", d, out])


def main():
    h = Harness("export_tokenizer")
    tmp = tempfile.mkdtemp(prefix="test_export_tok_")
    try:
        bases = {}
        for kind in ("json", "slow"):
            d = write_dir(tmp, f"base_{kind}", base_files(kind))
            out = os.path.join(tmp, f"base_{kind}.tok")
            r = export_tok(d, out)
            h.check(f"GPT-2's form ({kind}) exports", r.returncode == 0, r.stderr.decode(errors="replace"))
            bases[kind] = open(out, "rb").read() if r.returncode == 0 else None
        h.check("tokenizer.json and vocab.json + merges.txt give the same section",
                bases["json"] is not None and bases["json"] == bases["slow"])
        h.check("GPT-2's section is version 1 (what run read before version 2)",
                bases["json"] is not None and section_fields(bases["json"])[0] == 1)

        for n, (name, kind, edit, (norm, bos, added)) in enumerate(ACCEPTED_V2):
            d = write_dir(tmp, f"v2_{n}", variant_files(kind, edit))
            out = os.path.join(tmp, f"v2_{n}.tok")
            r = export_tok(d, out)
            got = section_fields(open(out, "rb").read()) if r.returncode == 0 else None
            h.check(f"accepted (version 2): {name}: exports normalizer {norm}, BOS {bos}, added {added}",
                    got == (2, norm, bos, added), f"{got} {r.stderr.decode(errors='replace')}")

        for n, (name, kind, edit, (pretok, flags, norm, bos, added)) in enumerate(ACCEPTED_V3):
            d = write_dir(tmp, f"v3_{n}", variant_files(kind, edit))
            out = os.path.join(tmp, f"v3_{n}.tok")
            r = export_tok(d, out)
            got = section_fields_v3(open(out, "rb").read()) if r.returncode == 0 else None
            version = 3 if (pretok, flags) != (0, 0) else 2
            want = (version, pretok, flags, norm, bos, added)
            h.check(f"accepted (version {version}): {name}: exports pre-tokenizer {pretok}, flags {flags}, "
                    f"normalizer {norm}, BOS {bos}, added {added}", got == want,
                    f"{got} {r.stderr.decode(errors='replace')}")

        for n, (name, kind, edit, (norm, pre, flags, unk, bos)) in enumerate(ACCEPTED_V4):
            d = write_dir(tmp, f"v4_{n}", variant_files(kind, edit))
            out = os.path.join(tmp, f"v4_{n}.tok")
            r = export_tok(d, out)
            got = section_fields_v4(open(out, "rb").read()) if r.returncode == 0 else None
            want = (4, norm, pre, flags, unk, bos)
            h.check(f"accepted (version 4): {name}: exports normalizer {norm}, pre-tokenizer {pre}, "
                    f"flags {flags}, unk {unk}, BOS {bos}", got == want, f"{got} {r.stderr.decode(errors='replace')}")

        for n, (name, kind, edit) in enumerate(ACCEPTED):
            d = write_dir(tmp, f"ok{n}", variant_files(kind, edit))
            out = os.path.join(tmp, f"ok{n}.tok")
            r = export_tok(d, out)
            got = open(out, "rb").read() if r.returncode == 0 else None
            h.check(f"accepted: {name}: exits 0 with GPT-2's section", got is not None and got == bases[kind],
                    r.stderr.decode(errors="replace"))

        for n, (name, kind, edit, needles, _effect) in enumerate(VARIANTS):
            d = write_dir(tmp, f"bad{n}", variant_files(kind, edit))
            out = os.path.join(tmp, f"bad{n}.tok")
            with open(out, "wb") as fh:
                fh.write(b"good data")
            r = export_tok(d, out)
            err = r.stderr.decode(errors="replace")
            lines = err.strip().split("\n")
            h.check(f"refused: {name}: exit 1, one line naming the setting and its value",
                    r.returncode == 1 and len(lines) == 1 and lines[0].startswith("export.py: error: ")
                    and all(x in err for x in needles) and d in err, err)
            h.check(f"refused: {name}: output untouched", open(out, "rb").read() == b"good data"
                    and not [x for x in os.listdir(tmp) if x.startswith(f"bad{n}.tok.tmp")])

        # Several unsupported settings: all are named, in one line.
        f = variant_files("json", lambda f: (put("tokenizer.json", "normalizer", {"type": "NFKC"})(f),
                                             put("tokenizer.json", "model", "byte_fallback", True)(f)))
        r = export_tok(write_dir(tmp, "several", f), os.path.join(tmp, "several.tok"))
        err = r.stderr.decode(errors="replace")
        h.check("several unsupported settings are all named", r.returncode == 1 and "normalizer NFKC" in err
                and "model.byte_fallback = true" in err and err.count("\n") == 1, err)

    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.done()


if __name__ == "__main__":
    main()
