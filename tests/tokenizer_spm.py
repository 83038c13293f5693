"""SentencePiece-style BPE tokenizers (section version 4: Llama-2's and
TinyLlama's tokenizer.json) for the tests, standard library only (make test).

tests/data/spm/tokenizer.json is a small BPE over characters with byte
fallback, trained with the tokenizers library on part of the corpus
(tests/gen_tokenizer_spm_cases.py --train), in the hub form of Llama-2's
file: <unk> <s> </s> then the 256 byte tokens <0x00> .. <0xFF> as ids 0 ..
258, normalizer Sequence [Prepend("▁"), Replace(" ", "▁")], pre_tokenizer
null, a TemplateProcessing that puts <s> first, the decoder Sequence
[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)]. Its merges were
learnt over whole lines (Metaspace with split false), so some cross a "▁".

VARIANTS builds each form a tokenizer directory takes from it:

  hub                the hub's tokenizer.json, read as it is (tokenizer_class
                     PreTrainedTokenizerFast): Prepend on each stretch
  hub_llama          the same file with TinyLlama's tokenizer_config.json
                     (LlamaTokenizer, legacy false): transformers 5 rebuilds it
                     as Metaspace(prepend_scheme "first", split false)
  hub_llama_legacy   ... with legacy true: prepend_scheme "always"
  hub_llama_noprefix ... with add_prefix_space false: "never", no Strip
  tf5                what transformers 5's save_pretrained writes for hub_llama
                     (Metaspace "first", split false; no unk_token)
  meta_always_split, meta_first_split, meta_never
                     Metaspace forms read as they are
  unk_fuse, unk_nofuse
                     byte_fallback false: unknown characters are <unk>, fused
                     or one each
  partial_bytes      byte_fallback with <0xE4> and <0xF0> missing: the
                     characters that need them are <unk> (fused)
  partial_bytes_nounk the same without unk_token: those characters vanish
  hub_added, meta_added
                     the hub's form and Metaspace "first" with added tokens
                     that are not special, normalized or not (with_added)

tests/tokenizer/spm.jsonl holds Hugging Face's ids (and decoded text) for
each variant (tests/gen_tokenizer_spm_cases.py); `reference` says whose.
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "data", "spm", "tokenizer.json")
META = "\u2581"
SPECIALS = ["<unk>", "<s>", "</s>"]

# TinyLlama-1.1B-Chat-v1.0's tokenizer_config.json, less its chat template.
HUB_CONFIG = {
    "add_bos_token": True, "add_eos_token": False,
    "added_tokens_decoder": {str(i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                                      "single_word": False, "special": True}
                             for i, c in enumerate(SPECIALS)},
    "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
    "model_max_length": 2048, "pad_token": "</s>", "padding_side": "right", "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False}
# What transformers 5's save_pretrained writes beside its tokenizer.json.
TF5_CONFIG = {"add_prefix_space": None, "backend": "tokenizers", "bos_token": "<s>",
              "clean_up_tokenization_spaces": False, "eos_token": "</s>", "model_max_length": 2048,
              "pad_token": "</s>", "padding_side": "right", "sp_model_kwargs": {},
              "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False}
FILE_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
               "unk_token": "<unk>"}

DECODER = {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": META}, "content": " "}, {"type": "ByteFallback"},
    {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}


def base():
    with open(BASE, encoding="utf-8") as f:
        return json.load(f)


def metaspace(scheme, split):
    return {"type": "Metaspace", "replacement": META, "prepend_scheme": scheme, "split": split}


def tf5_json(tj):
    """tokenizer.json as transformers 5 saves the hub_llama tokenizer."""
    tj = copy.deepcopy(tj)
    tj["normalizer"] = None
    tj["pre_tokenizer"] = metaspace("first", False)
    tj["model"]["unk_token"] = None
    return tj


def metaspace_json(scheme, split, strip=True):
    tj = base()
    tj["normalizer"] = None
    tj["pre_tokenizer"] = metaspace(scheme, split)
    if not strip:
        tj["decoder"]["decoders"] = tj["decoder"]["decoders"][:3]
    return tj


def model_json(**model):
    tj = base()
    tj["model"].update(model)
    return tj


def with_added(tj):
    """Added tokens that are not special: "th" (normalized, model.vocab's own),
    "XY Z" (not normalized) and "▁q" (normalized) after model.vocab. tokenizers
    looks for a normalized one by its content normalized too (Prepend/Replace:
    "▁th", "▁▁q")."""
    n = max(tj["model"]["vocab"].values()) + 1
    for i, content, normalized in ((tj["model"]["vocab"]["th"], "th", True), (n, "XY Z", False),
                                   (n + 1, META + "q", True)):
        tj["added_tokens"].append({"id": i, "content": content, "single_word": False, "lstrip": False,
                                   "rstrip": False, "normalized": normalized, "special": False})
    return tj


def partial_bytes_json(unk):
    tj = model_json(unk_token=unk)
    vocab = tj["model"]["vocab"]
    for b in ("<0xE4>", "<0xF0>"):
        vocab[b + "_"] = vocab.pop(b)   # the id stays, the byte token is gone
    return tj


# name: (tokenizer.json, tokenizer_config.json, whose ids are the reference)
# "file": the tokenizers library on tokenizer.json (and transformers, which
# agrees); "transformers": transformers 5's AutoTokenizer (which rebuilds the
# pipeline of a LlamaTokenizer).
VARIANTS = {
    "hub": (base, FILE_CONFIG, "file"),
    "hub_llama": (base, HUB_CONFIG, "transformers"),
    "hub_llama_legacy": (base, dict(HUB_CONFIG, legacy=True), "transformers"),
    "hub_llama_noprefix": (base, dict(HUB_CONFIG, add_prefix_space=False), "transformers"),
    "tf5": (lambda: tf5_json(base()), TF5_CONFIG, "file"),
    "meta_always_split": (lambda: metaspace_json("always", True), FILE_CONFIG, "file"),
    "meta_first_split": (lambda: metaspace_json("first", True), FILE_CONFIG, "file"),
    "meta_never": (lambda: metaspace_json("never", False, strip=False), FILE_CONFIG, "file"),
    "unk_fuse": (lambda: model_json(byte_fallback=False), FILE_CONFIG, "file"),
    "unk_nofuse": (lambda: model_json(byte_fallback=False, fuse_unk=False), FILE_CONFIG, "file"),
    "partial_bytes": (lambda: partial_bytes_json("<unk>"), FILE_CONFIG, "file"),
    "partial_bytes_nounk": (lambda: partial_bytes_json(None), FILE_CONFIG, "file"),
    "hub_added": (lambda: with_added(base()), FILE_CONFIG, "file"),
    "meta_added": (lambda: with_added(metaspace_json("first", False)), FILE_CONFIG, "file"),
}
# The variants every text is checked on; the others get the SPM texts alone.
MAIN = ("hub", "hub_llama", "tf5")
# What the section header must say for each (normalizer, pre-tokenizer, flags, unk id).
SCHEME = {"always": 0, "first": 1, "never": 2}


def expected_header(name):
    """(normalizer, pre_tokenizer, flags, unk_id) export.py must write for a variant."""
    flags = {"byte_fallback": 1, "fuse_unk": 2, "split": 16, "strip": 32}
    if name in ("hub", "hub_added"):
        return 2, 0, 1 | 2 | 32, 0
    if name == "meta_added":
        return 0, 1, 1 | 2 | SCHEME["first"] << 2 | 32, 0
    if name.startswith("hub_llama") or name == "tf5":
        scheme = {"hub_llama_legacy": "always", "hub_llama_noprefix": "never"}.get(name, "first")
        strip = 0 if name == "hub_llama_noprefix" else 32
        return 0, 1, 1 | 2 | SCHEME[scheme] << 2 | strip, -1
    if name.startswith("meta_"):
        scheme = name.split("_")[1]
        return 0, 1, 1 | 2 | SCHEME[scheme] << 2 | (16 if "split" in name else 0) | \
            (0 if scheme == "never" else 32), 0
    if name == "unk_fuse":
        return 2, 0, 2 | 32, 0
    if name == "unk_nofuse":
        return 2, 0, 32, 0
    if name == "partial_bytes":
        return 2, 0, 1 | 2 | 32, 0
    if name == "partial_bytes_nounk":
        return 2, 0, 1 | 2 | 32, -1
    raise KeyError(name)


def write(name, out_dir):
    make, cfg, _ref = VARIANTS[name]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(make(), f, ensure_ascii=False)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False)
    return out_dir


def spm_texts():
    """Texts that tell the SentencePiece-style rules apart: leading, trailing
    and repeated spaces, newlines and tabs (byte tokens), "▁" typed in the
    text, characters outside the vocabulary (byte fallback: Chinese, emoji,
    combining marks), the special tokens <s>, </s>, <unk> in the text, empty text."""
    t = [("empty", ""), ("space", " "), ("two spaces", "  "), ("spaces x", "   x"),
         ("leading space", " Hello world"), ("trailing space", "Hello world "),
         ("trailing spaces", "Hello world   "), ("double space", "Hello  world"),
         ("many spaces", "a" + " " * 17 + "b"), ("newline", "a\nb"), ("newline alone", "\n"),
         ("newlines", "\n\nx\n"), ("crlf", "line one\r\nline two\r\n"), ("tab", "tab\tx\t"),
         ("space newline space", "a \n b"), ("meta alone", META), ("meta x", META + "x"),
         ("x meta y", "x" + META + "y"), ("meta and spaces", " " + META + " x " + META * 2),
         ("metas", META * 3 + "end"), ("chinese", "我喜欢 tea，你呢？"), ("chinese long", "天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。"),
         ("emoji", "🙂"), ("emoji text", "I ❤️ 🍵 and 👩‍👩‍👧 family 🇫🇷"), ("combining", "e\u0301 a\u0308 \u0301x"),
         ("german", "Grüße aus München, schöne Straße"), ("russian", "Привет, мир! Ёж"),
         ("rare letters", "ʬʬ ʭ ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"), ("nbsp", "a\u00a0b\u3000c"), ("zero width", "a\u200bb\ufeffc"),
         ("control", "\x00\x01\x7f end"), ("bos", "<s>"), ("bos text", "<s>Hello"),
         ("bos space text", "<s> Hello"), ("text bos text", "Hello<s>world"),
         ("eos", "a</s> b"), ("eos eos", "</s></s>"), ("unk", "<unk>"), ("unk in text", "x<unk>y"),
         ("space bos", " <s> x"), ("bos bos", "<s> <s>"), ("specials and spaces", "<s>  a </s>\n<unk> b"),
         ("chat", "<|user|>\nHello, who are you?</s>\n<|assistant|>\n"),
         ("added th", "the thing thth  th"), ("added XY Z", "XY Z then aXY Zb th XY  Z"),
         ("added meta q", "q qq  q x q \u2581q"),
         ("code", "def f(x):\n    return x ** 2  # square\n\n\tif a:\n\t\tpass\n"),
         ("numbers", "3.14159 2,718 1e-9 0x1F 42"), ("punct", "Hello!!! What?? ... -- (yes) [no] {x} \"q\" 'a'"),
         ]
    return t


def long_texts():
    """Long words for the BPE's heap (checked on MAIN alone, to keep spm.jsonl small)."""
    return [("long line", ("the quick brown fox jumps over the lazy dog " * 30).strip()),
            ("long word", "xy" * 300), ("long chinese", "我喜" * 100 + "你" * 100)]


def n_added(name):
    """How many added tokens the section of a variant has."""
    make, _cfg, ref = VARIANTS[name]
    return 3 if ref == "transformers" else len(make()["added_tokens"])


def spm_special(text):
    return any(s in text for s in SPECIALS)
