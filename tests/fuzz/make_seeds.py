#!/usr/bin/env python3
"""Write the fuzzers' seed corpora (standard library only; deterministic).

    python3 tests/fuzz/make_seeds.py      # from the repository root

tests/fuzz/checkpoint/  whole checkpoint files for tests/fuzz_checkpoint.c:
    tiny checkpoints built here (n_embd 1..4, a 256..262-token tokenizer with a
    few merges and <|endoftext|>, tied and untied), one real fixture exported
    by export.py, and truncated / damaged variants of them.
tests/fuzz/tokenizer/   inputs for tests/fuzz_tokenizer.c: a first byte 0x00
    then text for the GPT-2 tokenizer, or 0x01 then a tokenizer section
    (versions 1 to 4).
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def tokenizer_section(extra_tokens, merges, special):
    """256 single-byte tokens, then extra_tokens (bytes); merges as
    (left, right, merged) ids; special: list of ids."""
    toks = [bytes([b]) for b in range(256)] + list(extra_tokens)
    offs, blob = [0], b""
    for t in toks:
        blob += t
        offs.append(len(blob))
    out = b"GPT2TOK_" + struct.pack("<6I", 1, len(toks), len(merges), len(special), len(blob), 0)
    out += struct.pack(f"<{len(offs)}I", *offs)
    for m in merges:
        out += struct.pack("<3I", *m)
    out += struct.pack(f"<{len(special)}I", *special)
    return out + blob


def small_section():
    # ids 256 "he", 257 "ll", 258 "hell", 259 "hello", 260 " w", 261 "<|endoftext|>"
    extra = [b"he", b"ll", b"hell", b"hello", b" w", b"<|endoftext|>"]
    h, e, l, o, sp, w = (ord(c) for c in "helo w")
    merges = [(h, e, 256), (l, l, 257), (256, 257, 258), (258, o, 259), (sp, w, 260)]
    return tokenizer_section(extra, merges, [261])


def tokenizer_section_v3(extra_tokens, merges, added, normalizer=0, bos=-1, pretok=0, flags=0):
    """Section version 3 (SPEC section 2): 256 single bytes, then extra_tokens;
    added: [(id, flags)]; pretok: the pre-tokenizer kind; flags: bit 0 ignore_merges."""
    toks = [bytes([b]) for b in range(256)] + list(extra_tokens)
    offs, blob = [0], b""
    for t in toks:
        blob += t
        offs.append(len(blob))
    out = b"GPT2TOK_" + struct.pack("<6IIi2I", 3, len(toks), len(merges), len(added), len(blob), 0,
                                    normalizer, bos, pretok, flags)
    out += struct.pack(f"<{len(offs)}I", *offs)
    for m in merges:
        out += struct.pack("<3I", *m)
    for i, f in added:
        out += struct.pack("<2I", i, f)
    return out + blob


def v3_seeds():
    """{name: fuzz input}: small version-3 sections, one per pre-tokenizer kind
    (Llama-3's with ignore_merges, a whole word no merge builds and an added
    token that is in the vocabulary; Qwen2's with NFC; SmolLM2's digits)."""
    # 256 "he", 257 "ll", 258 "hell", 259 "hello", 260 " w", 261 "<|eot_id|>", 262 "world", 263 "12"
    extra = [b"he", b"ll", b"hell", b"hello", b" w", b"<|eot_id|>", b"world", b"12"]
    h, e, l, o, sp, w = (ord(c) for c in "helo w")
    merges = [(h, e, 256), (l, l, 257), (256, 257, 258), (258, o, 259), (sp, w, 260), (ord("1"), ord("2"), 263)]
    return {
        "section_v3_llama3_ignore_merges": b"\x01" + tokenizer_section_v3(extra, merges, [(261, 5)], bos=261,
                                                                          pretok=1, flags=1),
        "section_v3_qwen2_nfc": b"\x01" + tokenizer_section_v3(extra, merges, [(261, 1)], normalizer=1, pretok=2),
        "section_v3_digits": b"\x01" + tokenizer_section_v3(extra, merges, [(261, 1)], pretok=3),
    }


def pad64(n):
    return (n + 63) // 64 * 64


def random_weights(shapes, seed):
    """Tensors of the given sizes, small pseudo-random floats, each padded to 64 bytes."""
    weights = b""
    x = seed
    for n in shapes:
        vals = []
        for _ in range(n):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            vals.append((x / 0x7FFFFFFF - 0.5) * 0.2)
        t = struct.pack(f"<{n}f", *vals)
        weights += t + b"\0" * (pad64(len(t)) - len(t))
    return weights


def checkpoint(tok, L=1, H=1, C=1, F=1, P=1, V=None, untied=False, act=0, eos=None, seed=1):
    n_tok = struct.unpack_from("<I", tok, 12)[0]
    V = V or n_tok
    eos = n_tok - 1 if eos is None else eos
    shapes = [V * C, P * C] + [C, C, 3 * C * C, 3 * C, C * C, C, C, C, F * C, F, C * F, C] * L + [C, C]
    if untied:
        shapes.append(V * C)
    weights = random_weights(shapes, seed)
    w_off = pad64(256 + len(tok))
    size = w_off + len(weights)
    flags = 2 | (1 if untied else 0)
    hdr = b"GPT2CKPT" + struct.pack("<8If2Ii", 1, 256, L, H, C, F, P, V, 1e-5, act, flags, eos)
    hdr += struct.pack("<5Qi", 256, len(tok), w_off, len(weights), size, -1)
    hdr += b"\0" * (256 - len(hdr))
    return hdr + tok + b"\0" * (w_off - 256 - len(tok)) + weights


def checkpoint_v2(tok, L=2, H=2, C=4, F=6, P=5, E=None, block=0x7e, offset=0, rotary=0, base=10000.0,
                  windows=None, family=1, untied=False, act=0, seed=7, kv=0, llama3=None):
    """A format-2 checkpoint (tests/SPEC.md 1b) with random weights."""
    n_tok = struct.unpack_from("<I", tok, 12)[0]
    V, E = n_tok, E or C
    KV = kv or H
    QKV = C + 2 * (C // H) * KV
    ln = [C] if block & 128 else [C, C]
    shapes = [V * E]
    if not block & 4:
        shapes.append((P + offset) * C)
    if E < C:
        shapes.append(C * E)
    for _ in range(L):
        shapes += ln + [QKV * C] + ([QKV] if block & 8 else []) + [C * C] + ([C] if block & 16 else [])
        shapes += ln + [F * C] + ([F] if block & 32 else []) + ([F * C] if block & 256 else [])
        shapes += [C * F] + ([C] if block & 32 else [])
    if block & 64:
        shapes += ln
    if E < C:
        shapes.append(E * C)
    if untied:
        shapes.append(V * E)
    weights = random_weights(shapes, seed)
    hb = 256 + pad64(4 * L)
    w_off = pad64(hb + len(tok))
    size = w_off + len(weights)
    flags = (2 if family != 1 else 0) | (1 if untied else 0)
    hdr = b"GPT2CKPT" + struct.pack("<8If2Ii", 2, hb, L, H, C, F, P, V, 1e-5, act, flags, -1)
    hdr += struct.pack("<5Qi", hb, len(tok), w_off, len(weights), size, -1)
    hdr += struct.pack("<4IfIII", family, block, offset, rotary, base, E, kv, 1 if llama3 else 0)
    if llama3:
        hdr += struct.pack("<3fI", *llama3)
    hdr += b"\0" * (256 - len(hdr))
    hdr += struct.pack(f"<{L}I", *(windows or [0] * L)) + b"\0" * (hb - 256 - 4 * L)
    return hdr + tok + b"\0" * (w_off - hb - len(tok)) + weights


def tokenizer_section_v4(toks, merges, added, normalizer=0, bos=-1, pre=0, flags=0, unk=-1):
    """Section version 4 (SPEC section 2: SentencePiece-style BPE): toks are the
    vocabulary's strings (str); added: [(id, flags)]."""
    offs, blob = [0], b""
    for t in toks:
        blob += t.encode("utf-8")
        offs.append(len(blob))
    out = b"GPT2TOK_" + struct.pack("<6IIiIIi3I", 4, len(toks), len(merges), len(added), len(blob), 0,
                                    normalizer, bos, pre, flags, unk, 0, 0, 0)
    out += struct.pack(f"<{len(offs)}I", *offs)
    for m in merges:
        out += struct.pack("<3I", *m)
    for i, f in added:
        out += struct.pack("<2I", i, f)
    return out + blob


def v4_parts():
    """<unk> <s> </s>, the 256 byte tokens, a few characters and merges (Llama-2's layout)."""
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    chars = ["\u2581", "h", "e", "l", "o", "w", "r", "d", "\u00e9", "\u4e16"]
    toks += chars + ["\u2581h", "he", "ll", "\u2581he", "\u2581hell", "\u2581hello", "o\u2581", "\u2581\u2581"]
    ids = {t: i for i, t in enumerate(toks)}
    pairs = [("\u2581", "h"), ("h", "e"), ("l", "l"), ("\u2581h", "e"), ("\u2581he", "ll"), ("\u2581hell", "o"),
             ("o", "\u2581"), ("\u2581", "\u2581")]
    merges = [(ids[a], ids[b], ids[a + b]) for a, b in pairs]
    return toks, merges, [(0, 5), (1, 5), (2, 5)]


def v4_seeds():
    """{name: fuzz input}: small version-4 sections: the hub's Llama-2 form
    (Prepend/Replace, byte_fallback, fuse_unk, Strip, <unk>, <s>), Metaspace
    "first" with split, and no byte fallback with unk one a character."""
    toks, merges, added = v4_parts()
    return {
        "section_v4_spm_hub": b"\x01" + tokenizer_section_v4(toks, merges, added, normalizer=2, bos=1, flags=35, unk=0),
        "section_v4_spm_metaspace_first_split": b"\x01" + tokenizer_section_v4(toks, merges, added, bos=1, pre=1,
                                                                             flags=1 | 2 | 4 | 16 | 32),
        "section_v4_spm_unk": b"\x01" + tokenizer_section_v4(toks, merges, added, normalizer=2, unk=0),
    }


def put(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(data)


def main():
    cdir = os.path.join(HERE, "checkpoint")
    tdir = os.path.join(HERE, "tokenizer")
    sec = small_section()
    bare = tokenizer_section([], [], [])
    tiny = checkpoint(sec)
    put(cdir, "tiny.bin", tiny)
    put(cdir, "tiny_untied_2layer.bin", checkpoint(sec, L=2, H=2, C=4, F=8, P=3, untied=True, act=1))
    put(cdir, "tiny_bare_tokenizer.bin", checkpoint(bare, C=2, F=3, P=2, V=300, act=3, eos=-1))
    put(cdir, "tiny_truncated_header.bin", tiny[:100])
    put(cdir, "tiny_truncated_tokenizer.bin", tiny[:256 + 700])
    put(cdir, "tiny_truncated_weights.bin", tiny[:-10])
    put(cdir, "tiny_zero_n_head.bin", tiny[:20] + b"\0\0\0\0" + tiny[24:])
    put(cdir, "tiny_huge_vocab.bin", tiny[:36] + b"\xff\xff\xff\xff" + tiny[40:])
    # format 2: GPT-Neo (no q/k/v bias, a local layer), GPT-NeoX (rotary, parallel,
    # untied), OPT-350m (post-LN, no final norm, project_in/out, positions + 2)
    put(cdir, "v2_neo_local.bin", checkpoint_v2(sec, windows=[0, 3], block=0x70, family=1))
    put(cdir, "v2_neox_rotary_parallel.bin", checkpoint_v2(sec, block=0x7e, rotary=2, family=2, untied=True, act=1))
    put(cdir, "v2_opt_post_ln_projected.bin", checkpoint_v2(sec, C=6, E=4, H=3, block=0x39, offset=2, family=3, act=2))
    # Llama-style: RMSNorm, gated MLP, grouped-query attention, llama3 rope scaling; Qwen2's q/k/v biases
    put(cdir, "v2_llama_gqa_llama3.bin", checkpoint_v2(sec, C=8, H=4, kv=2, block=0x1c4, rotary=2, family=4, act=3,
                                                       untied=True, llama3=(8.0, 1.0, 4.0, 16)))
    put(cdir, "v2_qwen2_bias.bin", checkpoint_v2(sec, C=6, H=3, kv=1, block=0x1cc, rotary=2, family=5, act=3))
    # one real fixture, exported by export.py
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "silu.bin")
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"),
                        os.path.join(ROOT, "tests", "fixtures", "silu_st", "hf"), out],
                       check=True, stderr=subprocess.DEVNULL)
        real = open(out, "rb").read()
        put(cdir, "fixture_silu_st.bin", real)
        tok_bytes = struct.unpack_from("<Q", real, 64)[0]
        put(tdir, "section_silu_st", b"\x01" + real[256:256 + tok_bytes])
        out = os.path.join(tmp, "tokjson.bin")
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"),
                        os.path.join(ROOT, "tests", "fixtures", "tokjson_only_st", "hf"), out],
                       check=True, stderr=subprocess.DEVNULL)
        real = open(out, "rb").read()
        tok_bytes = struct.unpack_from("<Q", real, 64)[0]
        put(tdir, "section_tokjson_only_st", b"\x01" + real[256:256 + tok_bytes])
        # a chat model (format 2 for GPT-2, chat form and the template's system message)
        out = os.path.join(tmp, "chat.bin")
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"),
                        os.path.join(ROOT, "tests", "fixtures_chat", "chatml_system", "hf"), out],
                       check=True, stderr=subprocess.DEVNULL)
        put(cdir, "v2_gpt2_chatml_system.bin", open(out, "rb").read())
    put(tdir, "section_small", b"\x01" + sec)
    put(tdir, "section_bare", b"\x01" + bare)
    texts = {
        "text_english": b"Hello, world! It's a test: we'll see 12345 things.\n\n  Indented  text\t",
        "text_unicode": "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u0939\u093f\u0928\u094d\u0926\u0940".encode(),
        "text_special": b"<|endoftext|>The end.<|endoftext|><|endoftext|> <|endof",
        "text_invalid_utf8": b"\xff\xfe\x00\xc3\x28\xe2\x82\xf0\x9f\x98 \xed\xa0\x80 \xc0\xaf\x80abc",
        "text_spaces_digits": b"   \n\n\n 1234567890 3.14159 's 't 're 've 'm 'll 'd ''  \r\n",
        "text_long_word": b"a" * 300 + b" " + b"xyz" * 50,
        "text_empty": b"",
    }
    for name, t in texts.items():
        put(tdir, name, b"\x00" + t)
    for name, data in list(v3_seeds().items()) + list(v4_seeds().items()):
        put(tdir, name, data)
    toks, merges, added = v4_parts()
    put(cdir, "v2_llama_spm_tokenizer.bin",
        checkpoint_v2(tokenizer_section_v4(toks, merges, added, normalizer=2, bos=1, flags=35, unk=0), C=8, H=4, kv=2,
                      block=0x1c4, rotary=2, family=4, act=3))


if __name__ == "__main__":
    main()
