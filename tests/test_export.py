#!/usr/bin/env python3
"""Tests for export.py (standard library only; no torch).

Builds small Hugging Face GPT-2 directories on the fly (safetensors and torch's
zip+pickle format written by hand, in float32/float16/bfloat16, with and
without the `transformer.` prefix, tied and untied, sharded), exports them and
checks the checkpoint byte by byte against tests/SPEC.md; then the export.py
part of the bad-input matrix (issue 6); then the committed transformers-written
fixtures in tests/fixtures/ against hashes computed with torch
(tests/export/make_fixture_hashes.py).
"""
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ROOT, Harness, run_cmd  # noqa: E402

EXPORT = os.path.join(ROOT, "export.py")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
FIXTURE_HASHES = os.path.join(ROOT, "tests", "export", "fixture_weights.json")
GPT2_TOK = os.path.join(ROOT, "tests", "data", "gpt2")

h = Harness("export")
TMP = tempfile.mkdtemp(prefix="test_export_")
os.chmod(TMP, 0o755)  # so the read-only-directory case can run as an unprivileged user


def run_export(args, user=None):
    if user is None:
        return run_cmd([sys.executable, EXPORT, *args], timeout=300)
    uid, python = user
    return subprocess.run([python, EXPORT, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300, user=uid, group=uid)


# ---------------------------------------------------------------------------
# A small byte-level BPE tokenizer (reference written independently here)
# ---------------------------------------------------------------------------

def byte_chars():
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BC = byte_chars()


def s2b(s):
    inv = {c: b for b, c in BC.items()}
    return bytes(inv[c] for c in s)


def b2s(bs):
    return "".join(BC[b] for b in bs)


MERGE_TEXT = [(b" ", b"t"), (b"h", b"e"), (b" t", b"he"), (b"l", b"l"), (b"\xc3", b"\xa9"),
              (b"o", b"\n")]


def tokenizer_files():
    """vocab (str -> id), merges lines, expected token bytes by id, expected merges ids."""
    vocab = {}
    # ids in a scrambled order, so that 'id == byte' is not assumed anywhere
    order = list(range(256))
    random.Random(7).shuffle(order)
    for i, b in enumerate(order):
        vocab[b2s(bytes([b]))] = i
    merges = []
    for a, b in MERGE_TEXT:
        vocab.setdefault(b2s(a + b), len(vocab))
        merges.append((vocab[b2s(a)], vocab[b2s(b)], vocab[b2s(a + b)]))
    vocab["<|endoftext|>"] = len(vocab)
    toks = [b""] * len(vocab)
    for s, i in vocab.items():
        toks[i] = s.encode() if s == "<|endoftext|>" else s2b(s)
    lines = ["#version: 0.2"] + [f"{b2s(a)} {b2s(b)}" for a, b in MERGE_TEXT]
    return vocab, lines, toks, merges, [vocab["<|endoftext|>"]]


VOCAB, MERGE_LINES, TOKS, MERGES, SPECIALS = tokenizer_files()
N_TOK = len(TOKS)  # 263


def tok_section(toks, merges, specials):
    blob = b"".join(toks)
    offs = [0]
    for t in toks:
        offs.append(offs[-1] + len(t))
    return (b"GPT2TOK_" + struct.pack("<6I", 1, len(toks), len(merges), len(specials), len(blob), 0)
            + struct.pack(f"<{len(offs)}I", *offs)
            + b"".join(struct.pack("<3I", *m) for m in merges)
            + struct.pack(f"<{len(specials)}I", *specials) + blob)


# ---------------------------------------------------------------------------
# Random weights, in Hugging Face's layout (Conv1D weights [in, out])
# ---------------------------------------------------------------------------

BASE_CFG = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_layer=2, n_head=2,
                n_embd=8, n_inner=12, n_positions=5, vocab_size=270, layer_norm_epsilon=1e-5,
                activation_function="gelu_new", bos_token_id=N_TOK - 1, eos_token_id=N_TOK - 1)


def hf_shapes(cfg, untied):
    C, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    F = cfg.get("n_inner") or 4 * C
    s = [("wte.weight", (V, C)), ("wpe.weight", (P, C))]
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        s += [(p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
              (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
              (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
              (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
              (p + "mlp.c_fc.weight", (C, F)), (p + "mlp.c_fc.bias", (F,)),
              (p + "mlp.c_proj.weight", (F, C)), (p + "mlp.c_proj.bias", (C,))]
    s += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    if untied:
        s.append(("lm_head.weight", (V, C)))
    return s


def nelem(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def quantize(vals, dtype):
    """Values exactly representable in dtype (so float32 output is exact)."""
    if dtype == "F16":
        return list(struct.unpack(f"<{len(vals)}e", struct.pack(f"<{len(vals)}e", *vals)))
    if dtype == "BF16":
        raw = struct.pack(f"<{len(vals)}f", *vals)
        b = bytearray(raw)
        for i in range(0, len(b), 4):
            b[i] = b[i + 1] = 0
        return list(struct.unpack(f"<{len(vals)}f", bytes(b)))
    return list(struct.unpack(f"<{len(vals)}f", struct.pack(f"<{len(vals)}f", *vals)))


def encode(vals, dtype, little=True):
    e = "<" if little else ">"
    if dtype == "F32":
        return struct.pack(f"{e}{len(vals)}f", *vals)
    if dtype == "F64":
        return struct.pack(f"{e}{len(vals)}d", *vals)
    if dtype == "F16":
        return struct.pack(f"{e}{len(vals)}e", *vals)
    if dtype == "BF16":
        raw = struct.pack(f"{e}{len(vals)}f", *vals)
        # the upper half of each float32 (its last two bytes when little-endian)
        return b"".join(raw[i:i + 2] for i in range(2 if little else 0, len(raw), 4))
    raise ValueError(dtype)


def make_weights(cfg, untied, dtype, seed=1, lm_equal=False):
    rng = random.Random(seed)
    w = {}
    for name, shape in hf_shapes(cfg, untied or lm_equal):
        if name == "lm_head.weight" and lm_equal:
            w[name] = (shape, list(w["wte.weight"][1]))
            continue
        vals = [rng.uniform(-2, 2) for _ in range(nelem(shape))]
        # a few special values: zero, a negative zero, a tiny (subnormal in fp16) one
        if len(vals) > 3:
            vals[0], vals[1], vals[2] = 0.0, -0.0, 3e-6 if dtype != "BF16" else 1e-30
        w[name] = (shape, quantize(vals, dtype))
    return w


def expected_weights(cfg, w):
    """The float32 tensors of the checkpoint, in order, each as a flat list."""
    out = []
    tied = "lm_head.weight" not in w or w["lm_head.weight"][1] == w["wte.weight"][1]
    for name, shape in hf_shapes(cfg, not tied):
        sh, vals = w[name]
        if name.split(".")[-2] in ("c_attn", "c_proj", "c_fc") and name.endswith("weight"):
            r, c = sh
            vals = [vals[i * c + j] for j in range(c) for i in range(r)]
        out.append((name, vals))
    return out, not tied


# ---------------------------------------------------------------------------
# Writers: safetensors, torch zip+pickle (hand-assembled pickle opcodes)
# ---------------------------------------------------------------------------

def write_safetensors(path, tensors, dtype, header_edit=None, raw_header=None):
    """tensors: {name: (shape, values)}."""
    header, blobs, pos = {"__metadata__": {"format": "pt"}}, [], 0
    size = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}[dtype]
    for name, (shape, vals) in tensors.items():
        raw = encode(vals, dtype)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        assert len(raw) == nelem(shape) * size
        blobs.append(raw)
        pos += len(raw)
    if header_edit:
        header_edit(header)
    hj = raw_header if raw_header is not None else json.dumps(header).encode()
    hj += b" " * (-len(hj) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i):
    return b"J" + struct.pack("<i", i)


def p_tuple(items):
    return b"(" + b"".join(items) + b"t"


def p_global(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


STORAGE_NAME = {"F32": "FloatStorage", "F16": "HalfStorage", "BF16": "BFloat16Storage",
                "F64": "DoubleStorage"}


def pickle_state_dict(entries, dtype, rebuild="_rebuild_tensor_v2", parameter=False):
    """entries: [(name, key, numel_of_storage, offset, size, stride)] -> protocol 2 pickle."""
    out = [b"\x80\x02", p_global("collections", "OrderedDict"), b")R", b"("]
    for name, key, snumel, off, size, stride in entries:
        pid = p_tuple([p_str("storage"), p_global("torch", STORAGE_NAME[dtype]), p_str(key),
                       p_str("cpu"), p_int(snumel)])
        t = (p_global("torch._utils", rebuild) + b"(" + pid + b"Q" + p_int(off)
             + p_tuple([p_int(s) for s in size]) + p_tuple([p_int(s) for s in stride])
             + b"\x89" + p_global("collections", "OrderedDict") + b")R" + b"tR")
        if parameter:
            t = (p_global("torch._utils", "_rebuild_parameter") + b"(" + t + b"\x89"
                 + p_global("collections", "OrderedDict") + b")R" + b"tR")
        out.append(p_str(name) + t)
    out.append(b"u.")
    return b"".join(out)


def contiguous_stride(shape):
    st, acc = [], 1
    for d in reversed(shape):
        st.append(acc)
        acc *= d
    return list(reversed(st))


def write_torch_bin(path, tensors, dtype, layout="separate", compress=False, little=True,
                    share_lm=False, archive="archive", pickle_bytes=None, extra_members=(),
                    drop_members=()):
    """layout: 'separate' (one storage per tensor), 'shared' (one storage, offsets, and
    2-D weights stored transposed as non-contiguous views)."""
    entries, storages = [], {}
    if layout == "separate":
        for i, (name, (shape, vals)) in enumerate(tensors.items()):
            if share_lm and name == "lm_head.weight":
                wk = entries[0]
                entries.append((name,) + wk[1:])
                continue
            storages[str(i)] = encode(vals, dtype, little)
            entries.append((name, str(i), len(vals), 0, list(shape), contiguous_stride(shape)))
    else:
        flat, off = [], 0
        metas = []
        for name, (shape, vals) in tensors.items():
            if len(shape) == 2:
                r, c = shape  # store the transpose [c, r] and view it with strides (1, r)
                flat += [vals[i * c + j] for j in range(c) for i in range(r)]
                metas.append((name, off, list(shape), [1, r]))
            else:
                flat += vals
                metas.append((name, off, list(shape), contiguous_stride(shape)))
            off += len(vals)
            flat += [9.0] * 3  # gaps between the views
            off += 3
        storages["0"] = encode(flat, dtype, little)
        entries = [(n, "0", len(flat), o, s, st) for n, o, s, st in metas]
    pkl = pickle_bytes if pickle_bytes is not None else pickle_state_dict(entries, dtype)
    comp = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", comp) as z:
        members = [(f"{archive}/data.pkl", pkl), (f"{archive}/byteorder",
                                                   b"little" if little else b"big")]
        members += [(f"{archive}/data/{k}", v) for k, v in storages.items()]
        members += [(f"{archive}/version", b"3\n")] + list(extra_members)
        for n, data in members:
            if n not in drop_members:
                z.writestr(n, data)


def write_tokenizer(d, kind="txt", added=None):
    if kind == "txt":
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump(VOCAB, f)
        with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(MERGE_LINES) + "\n")
    else:
        tj = {"version": "1.0", "added_tokens": added or [],
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                "trim_offsets": True, "use_regex": True},
              "model": {"type": "BPE", "vocab": VOCAB,
                        "merges": [list(l.split(" ")) for l in MERGE_LINES[1:]]}}
        with open(os.path.join(d, "tokenizer.json"), "w") as f:
            json.dump(tj, f)


COUNTER = [0]


def make_dir(cfg=None, fmt="st", dtype="F32", prefix=True, untied=False, lm_equal=False,
             shards=1, layout="separate", compress=False, little=True, share_lm=False,
             tok="txt", buffers=False, seed=1, cfg_edit=None):
    """Write an HF directory; returns (path, weights dict keyed without prefix)."""
    cfg = dict(BASE_CFG, **(cfg or {}))
    COUNTER[0] += 1
    d = os.path.join(TMP, f"m{COUNTER[0]}")
    os.makedirs(d)
    w = make_weights(cfg, untied, dtype, seed=seed, lm_equal=lm_equal)
    named = {}
    for k, v in w.items():
        key = k if (k == "lm_head.weight" or not prefix) else "transformer." + k
        named[key] = v
    if buffers:
        for l in range(cfg["n_layer"]):
            p = ("transformer." if prefix else "") + f"h.{l}.attn."
            n = cfg["n_positions"]
            named[p + "bias"] = ((1, 1, n, n), [1.0] * (n * n))
            named[p + "masked_bias"] = ((), [-1e4])
    cfgfile = dict(cfg)
    if cfg_edit:
        cfg_edit(cfgfile)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfgfile, f)
    write_tokenizer(d, tok)
    if shards == 1:
        if fmt == "st":
            write_safetensors(os.path.join(d, "model.safetensors"), named, dtype)
        else:
            write_torch_bin(os.path.join(d, "pytorch_model.bin"), named, dtype, layout=layout,
                            compress=compress, little=little, share_lm=share_lm)
    else:
        names = list(named)
        wmap = {}
        for s in range(shards):
            part = {n: named[n] for n in names[s::shards]}
            if fmt == "st":
                fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
                write_safetensors(os.path.join(d, fn), part, dtype)
            else:
                fn = f"pytorch_model-{s + 1:05d}-of-{shards:05d}.bin"
                write_torch_bin(os.path.join(d, fn), part, dtype, layout=layout)
            for n in part:
                wmap[n] = fn
        idx = "model.safetensors.index.json" if fmt == "st" else "pytorch_model.bin.index.json"
        with open(os.path.join(d, idx), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
    return d, cfg, w


# ---------------------------------------------------------------------------
# Checkpoint reader (independent of export.py)
# ---------------------------------------------------------------------------

def parse_ckpt(path):
    b = open(path, "rb").read()
    f = {"magic": b[:8]}
    (f["version"], f["header_bytes"], f["n_layer"], f["n_head"], f["n_embd"], f["n_inner"],
     f["n_ctx"], f["vocab_size"]) = struct.unpack_from("<8I", b, 8)
    f["eps"], f["activation"], f["flags"], f["eos"] = struct.unpack_from("<fIIi", b, 40)
    (f["tok_off"], f["tok_bytes"], f["w_off"], f["w_bytes"], f["file_bytes"]) = \
        struct.unpack_from("<5Q", b, 56)
    f["bos"] = struct.unpack_from("<i", b, 96)[0]
    f["zero_tail"] = b[100:256] == bytes(156)
    return b, f


def check_ckpt(what, path, cfg, w, extra=None):
    """Every header field, the tokenizer section, offsets, alignment, padding, values."""
    b, f = parse_ckpt(path)
    C, F = cfg["n_embd"], cfg.get("n_inner") or 4 * cfg["n_embd"]
    want_tensors, untied = expected_weights(cfg, w)
    sec = tok_section(TOKS, MERGES, SPECIALS)
    problems = []

    def want(k, v):
        if f[k] != v:
            problems.append(f"{k}: got {f[k]!r} want {v!r}")

    want("magic", b"GPT2CKPT")
    want("version", 1)
    want("header_bytes", 256)
    want("n_layer", cfg["n_layer"])
    want("n_head", cfg["n_head"])
    want("n_embd", C)
    want("n_inner", F)
    want("n_ctx", cfg["n_positions"])
    want("vocab_size", cfg["vocab_size"])
    want("eps", struct.unpack("<f", struct.pack("<f", cfg["layer_norm_epsilon"]))[0])
    want("tok_off", 256)
    want("tok_bytes", len(sec))
    want("file_bytes", len(b))
    want("zero_tail", True)
    for k, v in (extra or {}).items():
        want(k, v)
    if (f["flags"] & 1) != untied:
        problems.append(f"flags bit0 {f['flags'] & 1} but untied={untied}")
    if b[256:256 + len(sec)] != sec:
        problems.append("tokenizer section differs")
    w_off = f["w_off"]
    if w_off % 64 or w_off < 256 + len(sec) or w_off - (256 + len(sec)) >= 64:
        problems.append(f"weights_offset {w_off}")
    if b[256 + len(sec):w_off] != bytes(w_off - 256 - len(sec)):
        problems.append("padding before the weights is not zero")
    pos = w_off
    for name, vals in want_tensors:
        if pos % 64:
            problems.append(f"{name} at unaligned offset {pos}")
        got = list(struct.unpack_from(f"<{len(vals)}f", b, pos))
        if got != vals or [struct.pack("<f", v) for v in got] != [struct.pack("<f", v) for v in vals]:
            bad = next(i for i in range(len(vals))
                       if struct.pack("<f", got[i]) != struct.pack("<f", vals[i]))
            problems.append(f"{name}: value {bad} is {got[bad]!r}, want {vals[bad]!r}")
            break
        end = pos + 4 * len(vals)
        nxt = (end + 63) // 64 * 64
        if b[end:nxt] != bytes(nxt - end):
            problems.append(f"padding after {name} is not zero")
        pos = nxt
    if f["w_bytes"] != pos - w_off:
        problems.append(f"weights_bytes {f['w_bytes']} want {pos - w_off}")
    if len(b) != pos:
        problems.append(f"file is {len(b)} bytes, want {pos}")
    h.check(what, not problems, "; ".join(problems[:5]))
    return b, f


def leftovers(d):
    return [n for n in os.listdir(d) if ".tmp-" in n]


def export_ok(what, d, cfg, w, extra=None, args=()):
    out = os.path.join(TMP, f"out{COUNTER[0]}.bin")
    r = run_export([*args, d, out])
    if not h.check(f"{what}: exit 0", r.returncode == 0,
                   f"rc={r.returncode} stderr={r.stderr.decode(errors='replace')[-800:]}"):
        return None
    h.check(f"{what}: stdout empty", r.stdout == b"", r.stdout[:200])
    check_ckpt(f"{what}: checkpoint bytes", out, cfg, w, extra)
    return out


def export_fails(what, d, needle, out=None, args=(), rc=1, user=None, out_exists=False):
    """Export must fail with `rc`, a one-line-ish message containing `needle`,
    no traceback, no output file and no temp file."""
    out = out or os.path.join(TMP, f"bad{COUNTER[0]}-{random.random():.6f}.bin")
    r = run_export([*args, d, out], user=user)
    err = r.stderr.decode(errors="replace")
    ok = (r.returncode == rc and needle.lower() in err.lower() and "Traceback" not in err)
    odir = os.path.dirname(out) or "."
    left = leftovers(odir) if os.path.isdir(odir) else []
    h.check(f"{what}: exit {rc} with '{needle}'", ok, f"rc={r.returncode} stderr={err[-600:]}")
    h.check(f"{what}: no output or temp file left", out_exists or not os.path.exists(out),
            f"{out} exists")
    h.check(f"{what}: no temp file left", not left,
            f"exists={os.path.exists(out)} leftovers={left}")
    return err


# ===========================================================================
# 1. Good inputs
# ===========================================================================

def test_good():
    for fmt in ("st", "bin"):
        for dtype in ("F32", "F16", "BF16"):
            for prefix in (True, False):
                for untied in (False, True):
                    d, cfg, w = make_dir(fmt=fmt, dtype=dtype, prefix=prefix, untied=untied,
                                         seed=COUNTER[0] + 100)
                    export_ok(f"{fmt} {dtype} prefix={prefix} untied={untied}", d, cfg, w,
                              {"eos": N_TOK - 1, "bos": N_TOK - 1, "activation": 0,
                               "flags": 2 | untied})

    d, cfg, w = make_dir(fmt="st", dtype="F64")
    export_ok("safetensors float64", d, cfg, w)

    d, cfg, w = make_dir(fmt="st", lm_equal=True)
    export_ok("lm_head present but equal to wte: tied", d, cfg, w, {"flags": 2})
    d, cfg, w = make_dir(fmt="bin", dtype="F16", lm_equal=True, share_lm=True)
    export_ok(".bin lm_head sharing wte's storage: tied", d, cfg, w, {"flags": 2})

    d, cfg, w = make_dir(fmt="st", untied=True, shards=3)
    export_ok("sharded safetensors (3) untied", d, cfg, w, {"flags": 3})
    d, cfg, w = make_dir(fmt="bin", dtype="BF16", shards=2, prefix=False)
    export_ok("sharded pytorch_model.bin (2) bf16", d, cfg, w)

    d, cfg, w = make_dir(fmt="bin", dtype="F16", layout="shared", untied=True)
    export_ok(".bin one shared storage, offsets, transposed (strided) views", d, cfg, w)
    d, cfg, w = make_dir(fmt="bin", dtype="F32", layout="shared")
    export_ok(".bin shared storage f32", d, cfg, w)
    d, cfg, w = make_dir(fmt="bin", dtype="BF16", compress=True)
    export_ok(".bin with deflate-compressed members", d, cfg, w)
    for dtype in ("F32", "F16", "BF16"):
        d, cfg, w = make_dir(fmt="bin", dtype=dtype, little=False, untied=True)
        export_ok(f".bin byteorder 'big' {dtype}", d, cfg, w)

    d, cfg, w = make_dir(fmt="st", buffers=True, prefix=False,
                         cfg={"architectures": ["GPT2Model"]})
    export_ok("attn.bias / attn.masked_bias ignored, GPT2Model", d, cfg, w)
    d, cfg, w = make_dir(fmt="bin", buffers=True)
    export_ok(".bin with attn buffers ignored", d, cfg, w)

    d, cfg, w = make_dir(fmt="st", cfg={"n_inner": None, "n_embd": 12, "n_head": 3})
    export_ok("n_inner null -> 4*n_embd, n_head 3", d, cfg, w)

    for act, code in (("gelu_new", 0), ("gelu_pytorch_tanh", 0), ("gelu", 1), ("relu", 2),
                      ("silu", 3), ("swish", 3)):
        d, cfg, w = make_dir(cfg={"activation_function": act})
        export_ok(f"activation {act} -> {code}", d, cfg, w, {"activation": code})
    d, cfg, w = make_dir(cfg={"scale_attn_weights": False})
    export_ok("scale_attn_weights false -> flags 0", d, cfg, w, {"flags": 0})
    d, cfg, w = make_dir(cfg={"scale_attn_by_inverse_layer_idx": True}, untied=True)
    export_ok("scale_attn_by_inverse_layer_idx -> bit2", d, cfg, w, {"flags": 7})
    d, cfg, w = make_dir(cfg={"reorder_and_upcast_attn": True, "layer_norm_epsilon": 1e-3})
    export_ok("reorder_and_upcast_attn accepted (float32 only), eps 1e-3", d, cfg, w, {"flags": 2})
    d, cfg, w = make_dir(cfg={"eos_token_id": None, "bos_token_id": None})
    export_ok("eos/bos null -> -1", d, cfg, w, {"eos": -1, "bos": -1})
    d, cfg, w = make_dir(cfg={"eos_token_id": [5, 7], "bos_token_id": 3})
    export_ok("eos list -> first, bos 3", d, cfg, w, {"eos": 5, "bos": 3})
    # keys left out by save_pretrained's diff against GPT2Config's defaults
    d, cfg, w = make_dir(cfg_edit=lambda c: [c.pop(k) for k in
                                             ("activation_function", "layer_norm_epsilon",
                                              "bos_token_id", "eos_token_id")])
    export_ok("config defaults: eos/bos 50256 beyond vocab -> -1", d, cfg, w,
              {"activation": 0, "eos": -1, "bos": -1})

    d, cfg, w = make_dir(tok="json")
    export_ok("tokenizer.json instead of vocab.json + merges.txt", d, cfg, w)

    # bin vs safetensors of the same weights: identical files, every dtype
    for dtype in ("F32", "F16", "BF16"):
        outs = []
        for fmt, layout in (("st", "separate"), ("bin", "separate"), ("bin", "shared")):
            d, cfg, w = make_dir(fmt=fmt, dtype=dtype, layout=layout, untied=True, seed=99)
            o = os.path.join(TMP, f"same_{dtype}_{fmt}_{layout}.bin")
            r = run_export(["-q", d, o])
            outs.append(open(o, "rb").read() if r.returncode == 0 else b"fail")
        h.check(f"{dtype}: safetensors, .bin and strided .bin export to identical bytes",
                outs[0] == outs[1] == outs[2] and outs[0] != b"fail")

    # progress and summary on stderr
    d, cfg, w = make_dir()
    r = run_export([d, os.path.join(TMP, "progress.bin")])
    err = r.stderr.decode()
    h.check("progress on stderr", "layer 2/2" in err and "MB/s" in err, err[-400:])
    r = run_export(["-q", d, os.path.join(TMP, "quiet.bin")])
    h.check("-q: no progress", r.returncode == 0 and r.stderr == b"", r.stderr[-300:])
    # an existing output is replaced
    out = os.path.join(TMP, "replace.bin")
    with open(out, "wb") as fh:
        fh.write(b"old contents")
    r = run_export(["-q", d, out])
    h.check("existing output replaced on success",
            r.returncode == 0 and open(out, "rb").read(8) == b"GPT2CKPT")


# ===========================================================================
# 2. Tokenizer
# ===========================================================================

def tok_only(d, out):
    return run_export(["--tokenizer-only", d, out])


def parse_tok(b):
    magic = b[:8]
    ver, n, m, s, blen, res = struct.unpack_from("<6I", b, 8)
    offs = struct.unpack_from(f"<{n + 1}I", b, 32)
    p = 32 + 4 * (n + 1)
    merges = [struct.unpack_from("<3I", b, p + 12 * i) for i in range(m)]
    p += 12 * m
    specials = list(struct.unpack_from(f"<{s}I", b, p))
    p += 4 * s
    blob = b[p:p + blen]
    toks = [blob[offs[i]:offs[i + 1]] for i in range(n)]
    return dict(magic=magic, version=ver, n=n, merges=merges, specials=specials, toks=toks,
                reserved=res, exact=len(b) == p + blen, blob_ok=offs[-1] == blen)


def test_tokenizer():
    d, cfg, w = make_dir()
    out = os.path.join(TMP, "small.tok")
    r = tok_only(d, out)
    h.check("--tokenizer-only: exit 0", r.returncode == 0, r.stderr[-400:])
    h.check("--tokenizer-only: exact section bytes",
            os.path.exists(out) and open(out, "rb").read() == tok_section(TOKS, MERGES, SPECIALS))

    # added tokens from tokenizer.json, one inside the vocabulary and others past it
    # (UTF-8 text, not byte-mapped); non-special ones are refused (test_export_tokenizer.py)
    d2 = os.path.join(TMP, "tokjson_added")
    os.makedirs(d2)
    added = [{"id": N_TOK - 1, "content": "<|endoftext|>", "special": True},
             {"id": N_TOK, "content": "<|pad é|>", "special": True},
             {"id": N_TOK + 2, "content": "plain added", "special": True}]
    write_tokenizer(d2, "json", added)
    out2 = os.path.join(TMP, "added.tok")
    r = tok_only(d2, out2)
    t = parse_tok(open(out2, "rb").read()) if r.returncode == 0 else None
    h.check("tokenizer.json added tokens: exit 0", r.returncode == 0, r.stderr[-400:])
    if t:
        h.check("added tokens: n_tokens covers ids past vocab.json", t["n"] == N_TOK + 3, t["n"])
        h.check("added tokens: UTF-8 text, gap id empty",
                t["toks"][N_TOK] == "<|pad é|>".encode() and t["toks"][N_TOK + 1] == b""
                and t["toks"][N_TOK + 2] == b"plain added")
        h.check("added tokens: all special",
                t["specials"] == [N_TOK - 1, N_TOK, N_TOK + 2], t["specials"])
        h.check("merges from tokenizer.json ([a, b] pairs)", t["merges"] == MERGES)
    # tokenizer_config.json added_tokens_decoder also marks specials
    d3 = os.path.join(TMP, "tokcfg")
    os.makedirs(d3)
    write_tokenizer(d3)
    with open(os.path.join(d3, "tokenizer_config.json"), "w") as f:
        json.dump({"added_tokens_decoder": {str(N_TOK + 1): {"content": "<s>", "special": True}}}, f)
    out3 = os.path.join(TMP, "cfg.tok")
    r = tok_only(d3, out3)
    t = parse_tok(open(out3, "rb").read()) if r.returncode == 0 else None
    h.check("tokenizer_config.json added_tokens_decoder special",
            t is not None and t["specials"] == [N_TOK - 1, N_TOK + 1]
            and t["toks"][N_TOK + 1] == b"<s>", r.stderr[-300:])

    # GPT-2's own vocabulary
    if os.path.isfile(os.path.join(GPT2_TOK, "vocab.json")):
        out4 = os.path.join(TMP, "gpt2.tok")
        r = tok_only(GPT2_TOK, out4)
        t = parse_tok(open(out4, "rb").read()) if r.returncode == 0 else None
        h.check("GPT-2 vocabulary: exit 0", r.returncode == 0, r.stderr[-300:])
        if t:
            h.check("GPT-2: 50257 tokens, 50000 merges, <|endoftext|> special",
                    (t["n"], len(t["merges"]), t["specials"]) == (50257, 50000, [50256]),
                    (t["n"], len(t["merges"]), t["specials"]))
            h.check("GPT-2: raw bytes (' ' = 220, ' the' = 262, 'Ġ' mapping undone)",
                    t["toks"][220] == b" " and t["toks"][262] == b" the"
                    and t["toks"][50256] == b"<|endoftext|>")
            h.check("GPT-2: first merge is ' ' + 't'",
                    [t["toks"][i] for i in t["merges"][0]] == [b" ", b"t", b" t"])
            h.check("GPT-2: every merge concatenates", all(
                t["toks"][c] == t["toks"][a] + t["toks"][b] for a, b, c in t["merges"]))
            h.check("GPT-2: all 256 single bytes", len({x for x in t["toks"] if len(x) == 1}) == 256)
            h.check("GPT-2: section length exact, header fields",
                    t["exact"] and t["blob_ok"] and t["magic"] == b"GPT2TOK_" and t["version"] == 1
                    and t["reserved"] == 0)


def tok_dir(vocab=None, merges=None, files=None):
    COUNTER[0] += 1
    d = os.path.join(TMP, f"t{COUNTER[0]}")
    os.makedirs(d)
    if vocab is not None:
        with open(os.path.join(d, "vocab.json"), "w") as f:
            json.dump(vocab, f)
    if merges is not None:
        with open(os.path.join(d, "merges.txt"), "w") as f:
            f.write("\n".join(merges) + "\n")
    for n, data in (files or {}).items():
        with open(os.path.join(d, n), "w") as f:
            f.write(data)
    return d


def test_tokenizer_bad():
    def fails(what, d, needle):
        export_fails(f"tokenizer: {what}", d, needle, args=("--tokenizer-only",))

    fails("no tokenizer files", tok_dir(), "no tokenizer found")
    fails("merges.txt without vocab.json", tok_dir(merges=MERGE_LINES), "vocab.json")
    fails("merge refers to a missing token",
          tok_dir(VOCAB, MERGE_LINES + ["x y"]), "'xy' is not in the vocabulary")
    fails("merge part missing", tok_dir(VOCAB, MERGE_LINES + ["<|endoftext|> a"]), "not in the vocabulary")
    fails("malformed merges line", tok_dir(VOCAB, MERGE_LINES + ["abc"]), "line 8")
    v = dict(VOCAB)
    del v[b2s(b"\x00")]
    fails("a single-byte token missing", tok_dir(v, MERGE_LINES), "single-byte tokens are missing")
    v = dict(VOCAB)
    v["dup"] = 0
    fails("two tokens with one id", tok_dir(v, MERGE_LINES), "id 0 is used by both")
    v = dict(VOCAB)
    v["bad id"] = -3
    fails("negative id", tok_dir(v, MERGE_LINES), "invalid id")
    v = dict(VOCAB)
    v["a b"] = 400
    fails("token outside the byte alphabet", tok_dir(v, MERGE_LINES), "not a byte-level BPE character")
    fails("vocab.json not JSON", tok_dir(files={"vocab.json": "{oops", "merges.txt": ""}), "not valid JSON")
    fails("tokenizer.json non-BPE", tok_dir(files={"tokenizer.json": json.dumps(
        {"model": {"type": "Unigram", "vocab": []}})}), "not supported")
    fails("added token clash", tok_dir(files={"tokenizer.json": json.dumps(
        {"added_tokens": [{"id": 5, "content": "<a>", "special": True},
                          {"id": 5, "content": "<b>", "special": True}],
         "model": {"type": "BPE", "vocab": VOCAB, "merges": []}})}), "added token id 5")
    fails("missing directory", os.path.join(TMP, "nope"), "not a directory")
    # tokenizer larger than the model's vocab_size
    d, cfg, w = make_dir(cfg={"vocab_size": 100})
    export_fails("tokenizer has more tokens than vocab_size", d, "vocab_size is 100")


# ===========================================================================
# 3. Bad inputs: weights, config, output path
# ===========================================================================

def st_dir(edit=None, raw_header=None, truncate=None, dtype="F32", tensors_edit=None):
    d, cfg, w = make_dir()
    named = {"transformer." + k: v for k, v in w.items()}
    if tensors_edit:
        tensors_edit(named)
    p = os.path.join(d, "model.safetensors")
    write_safetensors(p, named, dtype, header_edit=edit, raw_header=raw_header)
    if truncate is not None:
        with open(p, "r+b") as f:
            f.truncate(truncate if truncate >= 0 else os.path.getsize(p) + truncate)
    return d


def test_bad_safetensors():
    F = export_fails
    F("safetensors: 5-byte file", st_dir(truncate=5), "only 5 bytes")
    d = st_dir()
    p = os.path.join(d, "model.safetensors")
    with open(p, "r+b") as f:
        f.write(struct.pack("<Q", 1 << 40))
    F("safetensors: header length past the end", d, "runs past the end of the file")
    F("safetensors: header not JSON", st_dir(raw_header=b"{not json"), "not valid JSON")
    F("safetensors: header not an object", st_dir(raw_header=b"[1, 2]"), "not a JSON object")
    F("safetensors: unknown dtype",
      st_dir(lambda hd: hd["transformer.wpe.weight"].update(dtype="F42")), "unknown dtype 'F42'")
    F("safetensors: offsets out of range",
      st_dir(lambda hd: hd["transformer.ln_f.bias"].update(data_offsets=[10 ** 9, 10 ** 9 + 32])),
      "outside the data area")
    F("safetensors: negative offset",
      st_dir(lambda hd: hd["transformer.ln_f.bias"].update(data_offsets=[-32, 0])),
      "outside the data area")

    def overlap(hd):
        a = hd["transformer.h.0.ln_1.weight"]["data_offsets"]
        hd["transformer.h.0.ln_1.bias"]["data_offsets"] = [a[0] + 4, a[1] + 4]
    F("safetensors: overlapping offsets", st_dir(overlap), "overlap")
    F("safetensors: shape/size mismatch",
      st_dir(lambda hd: hd["transformer.wpe.weight"].update(shape=[5, 9])), "needs")
    F("safetensors: bad shape entry",
      st_dir(lambda hd: hd["transformer.wpe.weight"].update(shape="5x8")), "invalid shape")
    F("safetensors: truncated data", st_dir(truncate=-100), "outside the data area")

    def wrong_shape(t):
        t["transformer.h.1.mlp.c_fc.weight"] = ((8, 16), [0.5] * 128)
    F("safetensors: shape contradicts config.json", st_dir(tensors_edit=wrong_shape),
      "h.1.mlp.c_fc.weight has shape [8, 16]")

    def drop(t):
        del t["transformer.h.1.attn.c_proj.bias"]
    F("missing tensor", st_dir(tensors_edit=drop), "missing tensor(s) h.1.attn.c_proj.bias")

    def extra(t):
        t["transformer.h.2.ln_1.weight"] = ((8,), [1.0] * 8)
    F("extra tensor (layer beyond n_layer)", st_dir(tensors_edit=extra), "unexpected tensor(s) h.2.ln_1.weight")

    def both(t):
        t["wpe.weight"] = t["transformer.wpe.weight"]
    F("tensor with and without prefix", st_dir(tensors_edit=both), "both with and without")

    d = st_dir(lambda hd: hd["transformer.wpe.weight"].update(dtype="I32"))
    F("integer weights refused", d, "dtype I32")

    # sharded: missing shard, a name escaping the directory, index mismatch
    d, cfg, w = make_dir(shards=2)
    os.unlink(os.path.join(d, "model-00002-of-00002.safetensors"))
    F("sharded: missing shard", d, "model-00002-of-00002.safetensors: missing")
    d, cfg, w = make_dir(shards=2)
    ip = os.path.join(d, "model.safetensors.index.json")
    idx = json.load(open(ip))
    idx["weight_map"]["transformer.wte.weight"] = "../../etc/passwd"
    json.dump(idx, open(ip, "w"))
    F("sharded: shard name escaping the directory", d, "invalid shard file name")
    d, cfg, w = make_dir(shards=2)
    idx = json.load(open(ip := os.path.join(d, "model.safetensors.index.json")))
    idx["weight_map"]["transformer.wte.weight"] = "model-00002-of-00002.safetensors"
    json.dump(idx, open(ip, "w"))
    F("sharded: index lists a tensor in the wrong shard", d, "is listed for")
    d, cfg, w = make_dir(shards=2)
    open(ip := os.path.join(d, "model.safetensors.index.json"), "w").write("{}")
    F("sharded: index without weight_map", d, "weight_map")


def bin_dir(**kw):
    d, cfg, w = make_dir(fmt="bin")
    p = os.path.join(d, "pytorch_model.bin")
    named = {"transformer." + k: v for k, v in w.items()}
    write_torch_bin(p, named, "F32", **kw)
    return d, p


EVIL = [("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"),
        ("subprocess", "check_call"), ("torch.storage", "_load_from_bytes"),
        ("torch", "load"), ("__builtin__", "eval"), ("nt", "system")]


def evil_pickle(mod, name, marker, where="top"):
    if (mod, name) in (("builtins", "eval"), ("builtins", "exec"), ("__builtin__", "eval")):
        arg = p_str(f"__import__('os').system('touch {marker}')")
    elif mod == "subprocess":
        arg = p_tuple([p_str("touch"), p_str(marker)])
    elif name == "_load_from_bytes":
        arg = p_str("x")   # would unpickle arbitrary bytes with torch.load
    else:
        arg = p_str(f"touch {marker}")
    call = p_global(mod, name) + b"(" + arg + b"tR"
    if where == "top":
        return b"\x80\x02" + call + b"."
    if where == "inst":   # the INST opcode names the callable inline
        return b"\x80\x02(" + arg + b"i" + mod.encode() + b"\n" + name.encode() + b"\n."
    # buried inside an otherwise normal state dict, as a tensor's backward hooks
    good = pickle_state_dict([("wte.weight", "0", 4, 0, [2, 2], [2, 1])], "F32")
    return good[:-2] + p_str("evil") + call + b"u."


def test_bad_bin():
    F = export_fails
    d, p = bin_dir()
    data = open(p, "rb").read()
    open(p, "wb").write(data[:len(data) // 2])
    F(".bin: truncated zip", d, "not a zip archive, or truncated")
    open(p, "wb").write(b"this is not a checkpoint at all" * 10)
    F(".bin: not a zip", d, "not a PyTorch checkpoint")
    open(p, "wb").write(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.")
    F(".bin: legacy torch format", d, "legacy")
    open(p, "wb").write(b"")
    F(".bin: empty file", d, "not a PyTorch checkpoint")

    d, p = bin_dir(drop_members=("archive/data.pkl",))
    F(".bin: zip without data.pkl", d, "data.pkl")
    d, p = bin_dir(drop_members=("archive/data/3",))
    F(".bin: storage member missing", d, "archive/data/3 is missing")
    d, p = bin_dir(archive="weird_name")
    r = run_export(["-q", d, os.path.join(TMP, "weird.bin")])
    h.check(".bin: any archive folder name is accepted", r.returncode == 0, r.stderr[-300:])

    # storage size / view bounds
    pk = pickle_state_dict([("transformer.wte.weight", "0", 10, 0, [270, 8], [8, 1])], "F32")
    d, p = bin_dir(pickle_bytes=pk)
    F(".bin: storage size differs from its declaration", d, "holds")
    d, cfg, w = make_dir(fmt="bin")
    p = os.path.join(d, "pytorch_model.bin")
    named = {"transformer." + k: v for k, v in w.items()}
    write_torch_bin(p, named, "F32")
    with zipfile.ZipFile(p) as z:
        members = {n: z.read(n) for n in z.namelist()}
    pk = pickle_state_dict([("transformer.wte.weight", "0", 270 * 8, 5, [270, 8], [8, 1])], "F32")
    members["archive/data.pkl"] = pk
    with zipfile.ZipFile(p, "w") as z:
        for n, v in members.items():
            z.writestr(n, v)
    F(".bin: view runs past its storage", d, "run past its storage")
    # flip a byte inside a storage: the CRC catches it
    d, p = bin_dir()
    data = bytearray(open(p, "rb").read())
    with zipfile.ZipFile(p) as z:
        info = z.getinfo("archive/data/0")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 7] ^= 0x40
    open(p, "wb").write(bytes(data))
    F(".bin: corrupted storage bytes (CRC)", d, "CRC mismatch")
    # malformed pickles
    for what, pk in (("truncated pickle", b"\x80\x02ccollections\nOrderedDict\n)R(X\x05\x00\x00"),
                     ("garbage pickle", b"\xff\xfe\xfd"),
                     ("list instead of a state dict", b"\x80\x02]."),
                     ("non-tensor value", b"\x80\x02}X\x01\x00\x00\x00aK\x01s."),
                     ("bad persistent id", b"\x80\x02X\x01\x00\x00\x00aQ."),
                     ("storage type called", p_global("torch", "FloatStorage") + b")R."),
                     ("rebuild with bad args", p_global("torch._utils", "_rebuild_tensor_v2")
                      + b")R.")):
        d, p = bin_dir(pickle_bytes=pk)
        F(f".bin: {what}", d, "malformed pickle" if what not in (
            "list instead of a state dict", "non-tensor value") else "expected a state dict")
    d, p = bin_dir(pickle_bytes=b"\x80\x02" + b"(" * 200000 + b".")
    F(".bin: deeply nested pickle", d, "malformed pickle")

    # malicious pickles: refused, nothing executed
    for i, (mod, name) in enumerate(EVIL):
        for where in ("top", "inside", "inst"):
            marker = os.path.join(TMP, f"pwned_{i}_{where}")
            d, p = bin_dir(pickle_bytes=evil_pickle(mod, name, marker, where))
            F(f".bin: pickle calling {mod}.{name} ({where})", d,
              f"references {mod}.{name}")
            h.check(f".bin: {mod}.{name} ({where}) did not run", not os.path.exists(marker))
    # control: the same payload is live under an unrestricted unpickler
    marker = os.path.join(TMP, "pwned_control")
    code = f"import pickle,sys; pickle.loads({evil_pickle('os', 'system', marker)!r})"
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    h.check("control: plain pickle.loads of that payload does run it", os.path.exists(marker))


def test_bad_config():
    F = export_fails

    def cfgdir(edit=None, text=None):
        d, cfg, w = make_dir(cfg_edit=edit)
        if text is not None:
            open(os.path.join(d, "config.json"), "w").write(text)
        return d

    d, cfg, w = make_dir()
    os.unlink(os.path.join(d, "config.json"))
    F("missing config.json", d, "config.json: missing")
    F("config.json not JSON", cfgdir(text="{"), "not valid JSON")
    F("config.json not an object", cfgdir(text="[]"), "expected a JSON object")
    F("model_type mistral", cfgdir(lambda c: c.update(model_type="mistral")),
      "model_type 'mistral' is not supported")
    F("model_type missing", cfgdir(lambda c: c.pop("model_type")), "model_type None")
    F("architecture GPT2DoubleHeadsModel",
      cfgdir(lambda c: c.update(architectures=["GPT2DoubleHeadsModel"])),
      "GPT2LMHeadModel, GPT2Model")
    err = F("activation gelu_fast", cfgdir(lambda c: c.update(activation_function="gelu_fast")),
            "activation_function 'gelu_fast' is not supported")
    h.check("activation error lists what is supported",
            all(a in err for a in ("gelu_new", "gelu_pytorch_tanh", "relu", "silu")), err)
    F("add_cross_attention", cfgdir(lambda c: c.update(add_cross_attention=True)), "add_cross_attention")
    F("n_embd not divisible by n_head", cfgdir(lambda c: c.update(n_head=3)), "not divisible")
    F("n_layer 0", cfgdir(lambda c: c.update(n_layer=0)), "n_layer must be a positive integer")
    F("n_embd a string", cfgdir(lambda c: c.update(n_embd="8")), "n_embd must be")
    F("n_layer disagrees with the weights", cfgdir(lambda c: c.update(n_layer=3)),
      "missing tensor(s) h.2.")
    F("vocab_size disagrees", cfgdir(lambda c: c.update(vocab_size=280)), "wte.weight has shape")
    F("tie_word_embeddings false without lm_head",
      cfgdir(lambda c: c.update(tie_word_embeddings=False)), "no lm_head.weight")

    d, cfg, w = make_dir()
    os.unlink(os.path.join(d, "model.safetensors"))
    F("no weights", d, "no weights found")
    F("HF_DIR missing", os.path.join(TMP, "does-not-exist"), "not a directory")
    d, cfg, w = make_dir()
    os.unlink(os.path.join(d, "vocab.json"))
    F("vocab.json missing", d, "vocab.json: missing")


def test_output_paths():
    F = export_fails
    d, cfg, w = make_dir()
    F("output in a missing directory", d, "does not exist",
      out=os.path.join(TMP, "no", "such", "dir", "o.bin"))
    F("output is a directory", d, "is a directory", out=TMP, out_exists=True)
    F("output under /proc (creation refused even for root)", d, "cannot create",
      out="/proc/run-export-test.bin")

    ro = os.path.join(TMP, "readonly")
    os.makedirs(ro)
    os.chmod(ro, 0o555)
    user = None
    probe = os.path.join(ro, "probe")
    try:
        open(probe, "w").close()
        os.unlink(probe)
        writable = True   # root ignores the mode bits
    except OSError:
        writable = False
    if writable and hasattr(os, "geteuid") and os.geteuid() == 0:
        # drop to an unprivileged user for this case, so the directory's mode counts
        # (an interpreter under /root may not be reachable for that user)
        for python in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"):
            try:
                subprocess.run([python, "-c", f"open({EXPORT!r}).close()"], user=65534,
                               group=65534, check=True, stderr=subprocess.DEVNULL)
                user = (65534, python)
                break
            except (OSError, subprocess.SubprocessError):
                pass
        for p in (d, *(os.path.join(d, n) for n in os.listdir(d))):
            os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    if writable and user is None:
        h.check("read-only directory (skipped: cannot drop root privileges here)", True)
    else:
        F("output in a read-only directory", d, "cannot create",
          out=os.path.join(ro, "o.bin"), user=user)

    # an existing good output survives failed exports byte for byte
    good = os.path.join(TMP, "keep", "model.bin")
    os.makedirs(os.path.dirname(good))
    r = run_export(["-q", d, good])
    before = open(good, "rb").read() if r.returncode == 0 else None
    st_before = os.stat(good) if before else None
    h.check("good output written", before is not None and before[:8] == b"GPT2CKPT")
    # a failure found late, after most of the temp file was written: corrupt the
    # last storage of a .bin so its CRC check fails while writing
    dbad, cfg2, w2 = make_dir(fmt="bin")
    p = os.path.join(dbad, "pytorch_model.bin")
    named = {"transformer." + k: v for k, v in w2.items()}
    with zipfile.ZipFile(p) as z:
        last = max((z.getinfo(n) for n in z.namelist() if "/data/" in n),
                   key=lambda i: i.header_offset)
    data = bytearray(open(p, "rb").read())
    data[last.header_offset + 30 + len(last.filename.encode()) + len(last.extra) + 1] ^= 1
    open(p, "wb").write(bytes(data))
    for what, bad in (("late failure (corrupt last tensor)", dbad),
                      ("early failure (bad config)", os.path.join(TMP, "nope"))):
        r = run_export([bad, good])
        after = open(good, "rb").read()
        h.check(f"existing output survives a failed export: {what}",
                r.returncode == 1 and after == before and not leftovers(os.path.dirname(good))
                and os.stat(good).st_ino == st_before.st_ino,
                f"rc={r.returncode} same={after == before} {r.stderr[-300:]}")


def test_sigterm():
    """SIGTERM in the middle of an export: exit 1, temp file removed, OUT untouched."""
    cfg = dict(BASE_CFG, n_embd=256, n_head=4, n_inner=1024, n_layer=8, n_positions=256)
    d = os.path.join(TMP, "sigterm_model")
    os.makedirs(d)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    write_tokenizer(d)
    rng = random.Random(5)
    header, blobs, pos = {}, [], 0
    for name, shape in hf_shapes(cfg, False):
        raw = rng.randbytes(2 * nelem(shape))
        header["transformer." + name] = {"dtype": "F16", "shape": list(shape),
                                         "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    hj = json.dumps(header).encode()
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))
    odir = os.path.join(TMP, "sigterm_out")
    os.makedirs(odir)
    out = os.path.join(odir, "model.bin")
    with open(out, "wb") as f:
        f.write(b"previous good file")
    p = subprocess.Popen([sys.executable, EXPORT, "-q", d, out], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    import time
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        tmp = leftovers(odir)
        if tmp and os.path.getsize(os.path.join(odir, tmp[0])) > 1 << 20:
            break
        time.sleep(0.005)
    if p.poll() is not None:
        p.communicate()
        h.check("SIGTERM mid-export (skipped: export finished first)", True)
        return
    p.terminate()
    _o, err = p.communicate()
    h.check("SIGTERM mid-export: exit 1, temp file removed, old output intact",
            p.returncode == 1 and not leftovers(odir)
            and open(out, "rb").read() == b"previous good file",
            f"rc={p.returncode} left={leftovers(odir)} {err[-300:]}")


def test_usage():
    r = run_cmd([sys.executable, EXPORT, "--help"])
    out = r.stdout.decode()
    h.check("--help: exit 0 and usage", r.returncode == 0 and "HF_DIR" in out
            and "--tokenizer-only" in out, out[:300])
    r = run_cmd([sys.executable, EXPORT])
    h.check("no arguments: exit 2", r.returncode == 2 and b"usage" in r.stderr.lower(), r.stderr)
    r = run_cmd([sys.executable, EXPORT, "a", "b", "c"])
    h.check("three arguments: exit 2", r.returncode == 2)
    r = run_cmd([sys.executable, EXPORT, "--frobnicate", "a", "b"])
    h.check("unknown flag: exit 2", r.returncode == 2 and b"frobnicate" in r.stderr)


# ===========================================================================
# 4. The committed transformers-written fixtures
# ===========================================================================

def test_fixtures():
    if not os.path.isdir(FIXTURES):
        h.check("tests/fixtures present (skipped)", True)
        return
    hashes = json.load(open(FIXTURE_HASHES)) if os.path.isfile(FIXTURE_HASHES) else {}
    names = sorted(n for n in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, n, "hf")))
    for name in names:
        hf = os.path.join(FIXTURES, name, "hf")
        out = os.path.join(TMP, f"fx_{name}.bin")
        r = run_export(["-q", hf, out])
        if not h.check(f"fixture {name}: exports", r.returncode == 0, r.stderr[-500:]):
            continue
        cfg = json.load(open(os.path.join(hf, "config.json")))
        b, f = parse_ckpt(out)
        C = cfg.get("n_embd", 768)
        want = {"magic": b"GPT2CKPT", "n_layer": cfg.get("n_layer", 12),
                "n_head": cfg.get("n_head", 12), "n_embd": C,
                "n_inner": cfg.get("n_inner") or 4 * C, "n_ctx": cfg.get("n_positions", 1024),
                "vocab_size": cfg.get("vocab_size", 50257), "file_bytes": len(b),
                "activation": {"gelu_new": 0, "gelu_pytorch_tanh": 0, "gelu": 1, "relu": 2,
                               "silu": 3}[cfg.get("activation_function", "gelu_new")]}
        bad = {k: (f[k], v) for k, v in want.items() if f[k] != v}
        h.check(f"fixture {name}: header matches config.json", not bad, bad)
        if name in hashes:
            e = hashes[name]
            got = hashlib.sha256(b[f["w_off"]:]).hexdigest()
            h.check(f"fixture {name}: float32 weights equal torch's (sha256)",
                    got == e["weights_sha256"] and (f["flags"] & 1) == e["untied"],
                    f"got {got} want {e['weights_sha256']} (regenerate with "
                    f"tests/export/make_fixture_hashes.py if the fixtures changed)")
    # the same weights via safetensors and via .bin export to identical bytes:
    # rewrite a .bin fixture's weights as safetensors with this file's writer
    # (values read back from our own checkpoint), export, compare
    for name in names:
        hf = os.path.join(FIXTURES, name, "hf")
        if not os.path.isfile(os.path.join(hf, "pytorch_model.bin")):
            continue
        out = os.path.join(TMP, f"fx_{name}.bin")
        if not os.path.isfile(out):
            continue
        b, f = parse_ckpt(out)
        cfg = {"n_layer": f["n_layer"], "n_embd": f["n_embd"], "n_inner": f["n_inner"],
               "n_positions": f["n_ctx"], "vocab_size": f["vocab_size"]}
        vals = {}
        pos = f["w_off"]
        for n, shape in hf_shapes(cfg, bool(f["flags"] & 1)):
            k = nelem(shape)
            v = list(struct.unpack_from(f"<{k}f", b, pos))
            if n.split(".")[-2] in ("c_attn", "c_proj", "c_fc") and n.endswith("weight"):
                r_, c_ = shape  # checkpoint holds [c_, r_]; back to HF's [r_, c_]
                v = [v[j * r_ + i] for i in range(r_) for j in range(c_)]
            vals["transformer." + n if n != "lm_head.weight" else n] = (shape, v)
            pos = (pos + 4 * k + 63) // 64 * 64
        d2 = os.path.join(TMP, f"fx_{name}_as_st")
        shutil.copytree(hf, d2)
        os.unlink(os.path.join(d2, "pytorch_model.bin"))
        write_safetensors(os.path.join(d2, "model.safetensors"), vals, "F32")
        out2 = os.path.join(TMP, f"fx_{name}_as_st.bin")
        r = run_export(["-q", d2, out2])
        h.check(f"fixture {name}: .bin and safetensors of the same weights export identically",
                r.returncode == 0 and open(out2, "rb").read() == b, r.stderr[-300:])
        break  # one is enough: it re-checks the transposition round trip


def main():
    try:
        test_usage()
        test_good()
        test_tokenizer()
        test_tokenizer_bad()
        test_bad_safetensors()
        test_bad_bin()
        test_bad_config()
        test_output_paths()
        test_sigterm()
        test_fixtures()
    finally:
        for root, dirs, _files in os.walk(TMP):
            for x in dirs:
                try:
                    os.chmod(os.path.join(root, x), 0o755)
                except OSError:
                    pass
        shutil.rmtree(TMP, ignore_errors=True)
    h.done()


if __name__ == "__main__":
    main()
