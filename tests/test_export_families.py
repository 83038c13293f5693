#!/usr/bin/env python3
"""export.py on GPT-Neo, GPT-NeoX/Pythia, OPT, Llama and Qwen2 directories (standard library only).

Tiny model directories are written here by hand (config.json in the hub's and
in transformers 5's spelling, safetensors with a small writer: float32,
float16, bfloat16, single and sharded, with and without the base model's key
prefix), exported, and the checkpoint is parsed back: every header field of
tests/SPEC.md section 1b and every tensor is checked against what the SPEC
says the HF tensors become (GPT-Neo's q/k/v stacked, GPT-NeoX's fused rows
reordered from [n_head, 3, head_dim] to [3, n_head, head_dim], OPT's
position table with its 2 extra rows, LayerNorms without parameters written
as 1 and 0, the per-layer window table).  Values are small multiples of 1/16,
exact in every dtype, so each comparison is exact.  Then the refusals: each
config value run cannot honour, named with its key, and a refused export
leaves an existing output file untouched.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT  # noqa: E402

h = Harness("export_families")
TMP = tempfile.mkdtemp(prefix="test_export_families_")
EXPORT = os.path.join(ROOT, "export.py")
TOKDIR = os.path.join(ROOT, "tests", "fixtures", "f32_st_basic", "hf")   # 385 ids, <|endoftext|> 384
V = 390   # more embedding rows than the tokenizer has tokens


# ---------------------------------------------------------------- writing HF directories

def values(n, salt):
    """n small multiples of 1/16 (exact in float16 and bfloat16), different for each salt."""
    return [((i * 37 + salt * 101) % 61 - 30) / 16 for i in range(n)]


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def encode(vals, dtype):
    if dtype == "F32":
        return struct.pack(f"<{len(vals)}f", *vals)
    if dtype == "F16":
        return struct.pack(f"<{len(vals)}e", *vals)
    # BF16: the upper half of each float32 (exact for these values)
    f = struct.pack(f"<{len(vals)}f", *vals)
    return b"".join(f[i + 2:i + 4] for i in range(0, len(f), 4))


def write_safetensors(path, tensors, dtype):
    header, blobs, pos = {}, [], 0
    for name, (shape, vals) in tensors.items():
        raw = encode(vals, dtype)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


class Model:
    """An HF directory being built: tensors {name: (shape, values)} and config."""

    def __init__(self, config):
        self.config = dict(config)
        self.tensors = {}
        self.salt = 0

    def add(self, name, shape):
        self.salt += 1
        self.tensors[name] = (tuple(shape), values(numel(shape), self.salt))

    def get(self, name):
        return self.tensors[name][1]

    def write(self, name, dtype="F32", prefix="", shards=1, keep=None):
        d = os.path.join(TMP, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)
        for fn in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(TOKDIR, fn), d)
        named = {(k if k in (keep or ()) else prefix + k): v for k, v in self.tensors.items()}
        if shards == 1:
            write_safetensors(os.path.join(d, "model.safetensors"), named, dtype)
        else:
            names = list(named)
            wmap = {}
            for s in range(shards):
                fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
                part = {n: named[n] for n in names[s::shards]}
                write_safetensors(os.path.join(d, fn), part, dtype)
                wmap.update({n: fn for n in part})
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {}, "weight_map": wmap}, f)
        return d


def ln(m, name, C):
    m.add(name + ".weight", (C,))
    m.add(name + ".bias", (C,))


def neo_model(L=3, C=8, H=2, F=12, P=20, types=(("global", "local"), ("local",)), window=3, **cfg):
    config = dict(model_type="gpt_neo", architectures=["GPTNeoForCausalLM"], vocab_size=V,
                  hidden_size=C, num_layers=L, num_heads=H, intermediate_size=F,
                  max_position_embeddings=P, attention_types=[[list(types[0]), 1], [list(types[1]), 1]],
                  window_size=window, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                  bos_token_id=384, eos_token_id=384, tie_word_embeddings=True)
    config.update(cfg)
    m = Model(config)
    m.add("wte.weight", (V, C))
    m.add("wpe.weight", (P, C))
    Fi = F or 4 * C
    for l in range(L):
        p = f"h.{l}."
        ln(m, p + "ln_1", C)
        for x in "qkv":
            m.add(p + f"attn.attention.{x}_proj.weight", (C, C))
        m.add(p + "attn.attention.out_proj.weight", (C, C))
        m.add(p + "attn.attention.out_proj.bias", (C,))
        ln(m, p + "ln_2", C)
        m.add(p + "mlp.c_fc.weight", (Fi, C))
        m.add(p + "mlp.c_fc.bias", (Fi,))
        m.add(p + "mlp.c_proj.weight", (C, Fi))
        m.add(p + "mlp.c_proj.bias", (C,))
    ln(m, "ln_f", C)
    return m


NEOX_HUB = dict(rotary_pct=0.25, rotary_emb_base=10000, torch_dtype="float16")


def neox_model(L=2, C=16, H=2, F=24, P=24, bias=True, head="embed_out.weight", rope=None, **cfg):
    config = dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], vocab_size=V,
                  hidden_size=C, num_hidden_layers=L, num_attention_heads=H, intermediate_size=F,
                  max_position_embeddings=P, hidden_act="gelu", layer_norm_eps=1e-5,
                  use_parallel_residual=True, bos_token_id=0, eos_token_id=0,
                  tie_word_embeddings=False)
    config.update(NEOX_HUB if rope is None else rope)
    if not bias:
        config["attention_bias"] = False
    config.update(cfg)
    m = Model(config)
    m.add("embed_in.weight", (V, C))
    for l in range(L):
        p = f"layers.{l}."
        ln(m, p + "input_layernorm", C)
        m.add(p + "attention.query_key_value.weight", (3 * C, C))
        if bias:
            m.add(p + "attention.query_key_value.bias", (3 * C,))
        m.add(p + "attention.dense.weight", (C, C))
        if bias:
            m.add(p + "attention.dense.bias", (C,))
        ln(m, p + "post_attention_layernorm", C)
        m.add(p + "mlp.dense_h_to_4h.weight", (F, C))
        m.add(p + "mlp.dense_h_to_4h.bias", (F,))
        m.add(p + "mlp.dense_4h_to_h.weight", (C, F))
        m.add(p + "mlp.dense_4h_to_h.bias", (C,))
    ln(m, "final_layer_norm", C)
    if head:
        m.add(head, (V, C))
    return m


def opt_model(L=2, C=8, H=2, F=12, P=20, E=None, pre=True, bias=True, affine=True, **cfg):
    config = dict(model_type="opt", architectures=["OPTForCausalLM"], vocab_size=V, hidden_size=C,
                  num_hidden_layers=L, num_attention_heads=H, ffn_dim=F, max_position_embeddings=P,
                  do_layer_norm_before=pre, word_embed_proj_dim=E if E else C,
                  activation_function="relu", enable_bias=bias,
                  layer_norm_elementwise_affine=affine, bos_token_id=2, eos_token_id=2,
                  tie_word_embeddings=True, _remove_final_layer_norm=False)
    config.update(cfg)
    E = E or C
    m = Model(config)
    m.add("embed_tokens.weight", (V, E))
    m.add("embed_positions.weight", (P + 2, C))
    if E < C:
        m.add("project_in.weight", (C, E))
        m.add("project_out.weight", (E, C))
    for l in range(L):
        p = f"layers.{l}."
        for x in ("q", "k", "v", "out"):
            m.add(p + f"self_attn.{x}_proj.weight", (C, C))
            if bias:
                m.add(p + f"self_attn.{x}_proj.bias", (C,))
        if affine:
            ln(m, p + "self_attn_layer_norm", C)
            ln(m, p + "final_layer_norm", C)
        m.add(p + "fc1.weight", (F, C))
        if bias:
            m.add(p + "fc1.bias", (F,))
        m.add(p + "fc2.weight", (C, F))
        if bias:
            m.add(p + "fc2.bias", (C,))
    if pre and affine and not cfg.get("_remove_final_layer_norm"):
        ln(m, "final_layer_norm", C)
    return m


# ---------------------------------------------------------------- reading the checkpoint back

def export(d, out):
    return subprocess.run([sys.executable, EXPORT, "-q", d, out], capture_output=True, timeout=120)


def parse(path):
    """Header fields (SPEC 1 and 1b) and the raw file."""
    data = open(path, "rb").read()
    u32 = lambda o: struct.unpack_from("<I", data, o)[0]  # noqa: E731
    i32 = lambda o: struct.unpack_from("<i", data, o)[0]  # noqa: E731
    u64 = lambda o: struct.unpack_from("<Q", data, o)[0]  # noqa: E731
    f = dict(magic=data[:8], version=u32(8), header_bytes=u32(12), n_layer=u32(16), n_head=u32(20),
             n_embd=u32(24), n_inner=u32(28), n_ctx=u32(32), vocab_size=u32(36),
             eps=struct.unpack_from("<f", data, 40)[0], activation=u32(44), flags=u32(48),
             eos=i32(52), tok_off=u64(56), tok_bytes=u64(64), w_off=u64(72), w_bytes=u64(80),
             file_bytes=u64(88), bos=i32(96), family=u32(100), block=u32(104), position_offset=u32(108),
             rotary_dims=u32(112), rotary_base=struct.unpack_from("<f", data, 116)[0], embed_dim=u32(120),
             n_kv_head=u32(124), rope_scaling=u32(128), rope_factor=struct.unpack_from("<f", data, 132)[0],
             rope_low=struct.unpack_from("<f", data, 136)[0], rope_high=struct.unpack_from("<f", data, 140)[0],
             rope_original=u32(144), reserved_zero=data[148:256] == bytes(108),
             llama_fields_zero=data[124:148] == bytes(24))
    f["windows"] = list(struct.unpack_from(f"<{f['n_layer']}I", data, 256))
    f["header_tail_zero"] = data[256 + 4 * f["n_layer"]:f["header_bytes"]] == bytes(
        f["header_bytes"] - 256 - 4 * f["n_layer"])
    return f, data


def spec_tensors(f):
    """[(name, shape)] in SPEC 1b's order for the header f."""
    C, F, E, b = f["n_embd"], f["n_inner"], f["embed_dim"], f["block"]
    QKV = C + 2 * (C // f["n_head"]) * (f["n_kv_head"] or f["n_head"])
    ln_bias = not b & 128   # RMSNorm: no biases of norms
    out = [("wte", (f["vocab_size"], E))]
    if not b & 4:
        out.append(("wpe", (f["n_ctx"] + f["position_offset"], C)))
    if E < C:
        out.append(("project_in", (C, E)))
    for l in range(f["n_layer"]):
        p = f"h.{l}."
        out += [(p + "ln_1.weight", (C,))] + [(p + "ln_1.bias", (C,))] * ln_bias
        out += [(p + "qkv.weight", (QKV, C))] + [(p + "qkv.bias", (QKV,))] * bool(b & 8)
        out += [(p + "proj.weight", (C, C))] + [(p + "proj.bias", (C,))] * bool(b & 16)
        out += [(p + "ln_2.weight", (C,))] + [(p + "ln_2.bias", (C,))] * ln_bias
        out += [(p + "fc.weight", (F, C))] + [(p + "fc.bias", (F,))] * bool(b & 32)
        out += [(p + "up.weight", (F, C))] * bool(b & 256)
        out += [(p + "fc_proj.weight", (C, F))] + [(p + "fc_proj.bias", (C,))] * bool(b & 32)
    if b & 64:
        out += [("ln_f.weight", (C,))] + [("ln_f.bias", (C,))] * ln_bias
    if E < C:
        out.append(("project_out", (E, C)))
    if f["flags"] & 1:
        out.append(("lm_head", (f["vocab_size"], E)))
    return out


def read_tensors(f, data):
    """{name: list of floats}, checking alignment, zero padding and the sizes' bookkeeping."""
    problems, t, pos = [], {}, f["w_off"]
    for name, shape in spec_tensors(f):
        n = numel(shape)
        if pos % 64:
            problems.append(f"{name} at {pos}, not a multiple of 64")
        t[name] = list(struct.unpack_from(f"<{n}f", data, pos)) if pos + 4 * n <= len(data) else None
        end = pos + 4 * n
        pos = (end + 63) // 64 * 64
        if data[end:pos] != bytes(pos - end):
            problems.append(f"padding after {name} is not zero")
    if pos != len(data) or f["w_off"] + f["w_bytes"] != pos or f["file_bytes"] != len(data):
        problems.append(f"sizes: tensors end at {pos}, file {len(data)}, header {f['w_off']}+{f['w_bytes']}, "
                        f"file_bytes {f['file_bytes']}")
    return t, problems


def check_layout(what, f, data):
    """The parts of the file every version-2 checkpoint shares."""
    L = f["n_layer"]
    hb = (256 + 4 * L + 63) // 64 * 64
    h.check(f"{what}: magic, version 2, header_bytes = 256 + 4*n_layer to 64 ({hb})",
            f["magic"] == b"GPT2CKPT" and f["version"] == 2 and f["header_bytes"] == hb, f)
    h.check(f"{what}: tokenizer section at header_bytes, weights after it on a 64-byte boundary",
            f["tok_off"] == hb and data[hb:hb + 8] == b"GPT2TOK_" and f["w_off"] % 64 == 0
            and f["w_off"] >= f["tok_off"] + f["tok_bytes"], f)
    if f["family"] < 4:   # before Llama: n_kv_head and rope scaling left 0
        h.check(f"{what}: bytes 124..255 and the header after the window table are zero",
                f["reserved_zero"] and f["llama_fields_zero"] and f["header_tail_zero"])
    else:
        h.check(f"{what}: bytes 148..255 and the header after the window table are zero",
                f["reserved_zero"] and f["header_tail_zero"])
    n_tokens = struct.unpack_from("<I", data, hb + 12)[0]
    h.check(f"{what}: vocab_size {f['vocab_size']} > the tokenizer's {n_tokens} tokens is kept",
            f["vocab_size"] == V and n_tokens == 385, (f["vocab_size"], n_tokens))


def check_fields(what, f, want):
    bad = {k: (f[k], v) for k, v in want.items() if f[k] != v}
    h.check(f"{what}: header fields {', '.join(want)}", not bad, f"got, want: {bad}")


def check_tensors(what, f, data, want):
    """want: {spec name: list of floats}, every tensor of the checkpoint."""
    t, problems = read_tensors(f, data)
    h.check(f"{what}: tensors 64-byte aligned, zero padded, sizes consistent", not problems, problems)
    names = [n for n, _s in spec_tensors(f)]
    h.check(f"{what}: the header's bits call for exactly the expected tensors ({len(names)})",
            sorted(names) == sorted(want), (sorted(set(names) ^ set(want))))
    bad = [n for n in names if n in want and t[n] != want[n]]
    h.check(f"{what}: every tensor equals its HF source as SPEC 1b maps it", not bad,
            f"differ: {bad[:6]}")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def export_ok(what, d):
    out = os.path.join(TMP, "out.bin")
    if os.path.exists(out):
        os.remove(out)
    p = export(d, out)
    if not h.check(f"{what}: exports", p.returncode == 0 and os.path.exists(out), p.stderr.decode()[-800:]):
        return None, None
    f, data = parse(out)
    check_layout(what, f, data)
    return f, data


# ---------------------------------------------------------------- GPT-Neo

def neo_expected(m, L, prefix="h."):
    g = m.get
    want = {"wte": g("wte.weight"), "wpe": g("wpe.weight"), "ln_f.weight": g("ln_f.weight"),
            "ln_f.bias": g("ln_f.bias")}
    for l in range(L):
        p, a = f"h.{l}.", f"h.{l}.attn.attention."
        want.update({
            p + "ln_1.weight": g(p + "ln_1.weight"), p + "ln_1.bias": g(p + "ln_1.bias"),
            p + "qkv.weight": g(a + "q_proj.weight") + g(a + "k_proj.weight") + g(a + "v_proj.weight"),
            p + "proj.weight": g(a + "out_proj.weight"), p + "proj.bias": g(a + "out_proj.bias"),
            p + "ln_2.weight": g(p + "ln_2.weight"), p + "ln_2.bias": g(p + "ln_2.bias"),
            p + "fc.weight": g(p + "mlp.c_fc.weight"), p + "fc.bias": g(p + "mlp.c_fc.bias"),
            p + "fc_proj.weight": g(p + "mlp.c_proj.weight"), p + "fc_proj.bias": g(p + "mlp.c_proj.bias")})
    return want


for dtype, prefix in (("F32", "transformer."), ("F16", ""), ("BF16", "transformer.")):
    m = neo_model()
    what = f"GPT-Neo {dtype} prefix {prefix or 'none'}"
    f, data = export_ok(what, m.write("neo", dtype=dtype, prefix=prefix))
    if f:
        check_fields(what, f, dict(n_layer=3, n_head=2, n_embd=8, n_inner=12, n_ctx=20, vocab_size=V,
                                   eps=f32(1e-5), activation=0, flags=0, eos=384, bos=384, family=1,
                                   block=0b1110000, position_offset=0, rotary_dims=0, rotary_base=0.0,
                                   embed_dim=8, windows=[0, 3, 3]))
        check_tensors(what, f, data, neo_expected(m, 3))

# the hub's buffers, an lm_head equal to wte, intermediate_size null, the other
# spellings of the head and layer counts, all-global layers (no window needed)
m = neo_model(L=2, F=None, types=(("global",), ("global",)), window=0)
m.config.pop("num_heads"), m.config.pop("num_layers")
m.config.update(num_attention_heads=2, num_hidden_layers=2, attention_layers=["global", "global"])
for l in range(2):
    m.tensors[f"h.{l}.attn.attention.bias"] = ((1, 1, 20, 20), [1.0] * 400)
    m.tensors[f"h.{l}.attn.attention.masked_bias"] = ((), [-1e9])
m.tensors["lm_head.weight"] = m.tensors["wte.weight"]
f, data = export_ok("GPT-Neo hub-like", m.write("neo_hub", prefix="transformer.", keep=("lm_head.weight",)))
if f:
    check_fields("GPT-Neo hub-like", f, dict(n_inner=32, n_head=2, n_layer=2, windows=[0, 0], flags=0))
    del m.tensors["lm_head.weight"]
    check_tensors("GPT-Neo hub-like (buffers skipped, lm_head = wte: tied)", f, data, neo_expected(m, 2))

# untied lm_head
m = neo_model(tie_word_embeddings=False)
m.add("lm_head.weight", (V, 8))
f, data = export_ok("GPT-Neo untied", m.write("neo_untied", prefix="transformer.", keep=("lm_head.weight",)))
if f:
    check_fields("GPT-Neo untied", f, dict(flags=1))
    check_tensors("GPT-Neo untied", f, data, dict(neo_expected(m, 3), lm_head=m.get("lm_head.weight")))


# ---------------------------------------------------------------- GPT-NeoX

def neox_reorder(rows, H, D, cols):
    """[H, 3, D] rows -> [3, H, D]: output row part*H*D + h*D + d is input row h*3*D + part*D + d."""
    out = []
    for part in range(3):
        for hh in range(H):
            for d in range(D):
                r = hh * 3 * D + part * D + d
                out += rows[r * cols:(r + 1) * cols]
    return out


def neox_expected(m, L, H, C, bias=True, head="embed_out.weight"):
    g, D = m.get, C // H
    want = {"wte": g("embed_in.weight"), "ln_f.weight": g("final_layer_norm.weight"),
            "ln_f.bias": g("final_layer_norm.bias")}
    if head:
        want["lm_head"] = g(head)
    for l in range(L):
        p, a = f"h.{l}.", f"layers.{l}."
        want.update({
            p + "ln_1.weight": g(a + "input_layernorm.weight"), p + "ln_1.bias": g(a + "input_layernorm.bias"),
            p + "qkv.weight": neox_reorder(g(a + "attention.query_key_value.weight"), H, D, C),
            p + "proj.weight": g(a + "attention.dense.weight"),
            p + "ln_2.weight": g(a + "post_attention_layernorm.weight"),
            p + "ln_2.bias": g(a + "post_attention_layernorm.bias"),
            p + "fc.weight": g(a + "mlp.dense_h_to_4h.weight"), p + "fc.bias": g(a + "mlp.dense_h_to_4h.bias"),
            p + "fc_proj.weight": g(a + "mlp.dense_4h_to_h.weight"),
            p + "fc_proj.bias": g(a + "mlp.dense_4h_to_h.bias")})
        if bias:
            want[p + "qkv.bias"] = neox_reorder(g(a + "attention.query_key_value.bias"), H, D, 1)
            want[p + "proj.bias"] = g(a + "attention.dense.bias")
    return want


T5_ROPE = dict(rope_parameters={"rope_theta": 500.0, "partial_rotary_factor": 0.5, "rope_type": "default"},
               dtype="bfloat16")
NEOX_CASES = [
    # what, model kwargs, write kwargs, rotary_dims, rotary_base, block
    ("GPT-NeoX hub spelling, parallel, gpt_neox. prefix, embed_out", dict(),
     dict(prefix="gpt_neox.", keep=("embed_out.weight",)), 2, 10000.0, 0b1111110),
    ("GPT-NeoX transformers-5 spelling, sequential, no attention bias, lm_head, no prefix, bf16 sharded",
     dict(rope=T5_ROPE, bias=False, head="lm_head.weight", use_parallel_residual=False),
     dict(dtype="BF16", shards=3), 4, 500.0, 0b1100100),
    ("GPT-NeoX rope_parameters with only rope_theta, rotary_pct from the hub's key, F16",
     dict(rope=dict(rope_parameters={"rope_theta": 20000}, rotary_pct=1.0), H=4,
          partial_rotary_factor=1.0),
     dict(dtype="F16", prefix="gpt_neox.", keep=("embed_out.weight",)), 4, 20000.0, 0b1111110),
    ("GPT-NeoX defaults (no rotary keys at all: 0.25 and 10000), tied, no head",
     dict(rope={}, head=None, tie_word_embeddings=True), dict(prefix="gpt_neox."), 2, 10000.0, 0b1111110),
]
for what, mk, wk, rdims, rbase, block in NEOX_CASES:
    H = mk.get("H", 2)
    m = neox_model(**mk)
    f, data = export_ok(what, m.write("neox", **wk))
    if f:
        head = mk.get("head", "embed_out.weight")
        check_fields(what, f, dict(n_layer=2, n_head=H, n_embd=16, n_inner=24, n_ctx=24, vocab_size=V,
                                   eps=f32(1e-5), activation=1, flags=2 | (1 if head else 0), eos=0, bos=0,
                                   family=2, block=block, position_offset=0, rotary_dims=rdims,
                                   rotary_base=rbase, embed_dim=16, windows=[0, 0]))
        check_tensors(what, f, data, neox_expected(m, 2, H, 16, bias=mk.get("bias", True), head=head))


# ---------------------------------------------------------------- OPT

def opt_expected(m, L, C, E=None, pre=True, bias=True, affine=True, final=True):
    g = m.get
    want = {"wte": g("embed_tokens.weight"), "wpe": g("embed_positions.weight")}
    if E and E < C:
        want.update(project_in=g("project_in.weight"), project_out=g("project_out.weight"))

    def norm(name):
        if affine:
            return g(name + ".weight"), g(name + ".bias")
        return [1.0] * C, [0.0] * C
    for l in range(L):
        p, a = f"h.{l}.", f"layers.{l}."
        s = a + "self_attn."
        want[p + "ln_1.weight"], want[p + "ln_1.bias"] = norm(a + "self_attn_layer_norm")
        want[p + "ln_2.weight"], want[p + "ln_2.bias"] = norm(a + "final_layer_norm")
        want[p + "qkv.weight"] = g(s + "q_proj.weight") + g(s + "k_proj.weight") + g(s + "v_proj.weight")
        want[p + "proj.weight"] = g(s + "out_proj.weight")
        want[p + "fc.weight"], want[p + "fc_proj.weight"] = g(a + "fc1.weight"), g(a + "fc2.weight")
        if bias:
            want[p + "qkv.bias"] = g(s + "q_proj.bias") + g(s + "k_proj.bias") + g(s + "v_proj.bias")
            want[p + "proj.bias"] = g(s + "out_proj.bias")
            want[p + "fc.bias"], want[p + "fc_proj.bias"] = g(a + "fc1.bias"), g(a + "fc2.bias")
    if final and pre:
        want["ln_f.weight"], want["ln_f.bias"] = norm("final_layer_norm")
    return want


OPT_CASES = [
    # what, model kwargs, write kwargs, block, embed_dim
    ("OPT pre-LN, model.decoder. prefix, F16", dict(), dict(dtype="F16", prefix="model.decoder."),
     0b1111000, 8),
    ("OPT-350m-style post-LN with project_in/out (E 4 < C 8), decoder. prefix",
     dict(pre=False, E=4), dict(prefix="decoder."), 0b0111001, 4),
    ("OPT no biases, LayerNorms without parameters (written as 1 and 0), no prefix, BF16",
     dict(bias=False, affine=False), dict(dtype="BF16"), 0b1000000, 8),
    ("OPT _remove_final_layer_norm: pre-LN without the final LayerNorm",
     dict(_remove_final_layer_norm=True), dict(prefix="model.decoder."), 0b0111000, 8),
]
for what, mk, wk, block, E in OPT_CASES:
    m = opt_model(**mk)
    f, data = export_ok(what, m.write("opt", **wk))
    if f:
        check_fields(what, f, dict(n_layer=2, n_head=2, n_embd=8, n_inner=12, n_ctx=20, vocab_size=V,
                                   eps=f32(1e-5), activation=2, flags=2, eos=2, bos=2, family=3, block=block,
                                   position_offset=2, rotary_dims=0, rotary_base=0.0, embed_dim=E,
                                   windows=[0, 0]))
        check_tensors(what, f, data, opt_expected(
            m, 2, 8, E=E, pre=mk.get("pre", True), bias=mk.get("bias", True),
            affine=mk.get("affine", True), final=not mk.get("_remove_final_layer_norm")))


# ---------------------------------------------------------------- refusals

GOOD = os.path.join(TMP, "good.bin")
with open(GOOD, "wb") as fh:
    fh.write(b"an existing output file that a refused export must not touch")
GOOD_BYTES = open(GOOD, "rb").read()


def refused(what, d, *needles):
    p = export(d, GOOD)
    err = p.stderr.decode("utf-8", "replace")
    left = [n for n in os.listdir(TMP) if n.startswith("good.bin.tmp")]
    h.check(f"refused: {what} (exit 1, names {', '.join(repr(n) for n in needles)})",
            p.returncode == 1 and all(n in err for n in needles) and err.count("\n") == 1, err)
    h.check(f"refused: {what}: the existing output is untouched, no temp file left",
            open(GOOD, "rb").read() == GOOD_BYTES and not left, left)


DROP = object()   # with_config(key=DROP): the key left out


def with_config(model, name="bad", **changes):
    for k, v in changes.items():
        if v is DROP:
            model.config.pop(k, None)
        else:
            model.config[k] = v
    return model.write(name, prefix="")


for mt in ("mistral", None):
    refused(f"model_type {mt}", with_config(neox_model(), model_type=DROP if mt is None else mt),
            f"model_type {mt!r} is not supported",
            '"gpt_neo"', '"gpt_neox"', '"opt"', '"gpt2"', '"llama"', '"qwen2"')
refused("GPTNeoXForSequenceClassification",
        with_config(neox_model(), architectures=["GPTNeoXForSequenceClassification"]),
        "architecture 'GPTNeoXForSequenceClassification' is not supported", "GPTNeoXForCausalLM")
refused("an OPT architecture under model_type gpt_neo",
        with_config(neo_model(), architectures=["OPTForCausalLM"]), "architecture 'OPTForCausalLM'")

# GPT-NeoX rotary
refused("rotary_pct giving an odd rotary_dims (8 * 0.375 = 3)", with_config(neox_model(), rotary_pct=0.375),
        "rotary_pct", "= 3", "even")
refused("rotary_pct giving no rotary dims (8 * 0.1 = 0)", with_config(neox_model(), rotary_pct=0.1),
        "rotary_pct", "= 0")
refused("rope_parameters.partial_rotary_factor above 1",
        with_config(neox_model(rope=T5_ROPE), rope_parameters={"partial_rotary_factor": 1.5}),
        "partial_rotary_factor")
refused("rotary_emb_base 1", with_config(neox_model(), rotary_emb_base=1), "rotary_emb_base", "> 1")
refused("rope_parameters.rope_theta 0.5",
        with_config(neox_model(rope=T5_ROPE), rope_parameters={"rope_theta": 0.5, "rope_type": "default"}),
        "rope_parameters.rope_theta")
refused("rope_parameters rope_type linear", with_config(
    neox_model(rope=T5_ROPE), rope_parameters={"rope_theta": 1e4, "rope_type": "linear", "factor": 2.0}),
    "rope_type", "linear")
refused("rope_scaling dynamic (older configs)",
        with_config(neox_model(), rope_scaling={"type": "dynamic", "factor": 2.0}), "rope_scaling")
refused("a top-level partial_rotary_factor that transformers ignores, disagreeing",
        with_config(neox_model(), partial_rotary_factor=0.5), "partial_rotary_factor", "rotary_pct")
refused("use_parallel_residual not a boolean", with_config(neox_model(), use_parallel_residual="yes"),
        "use_parallel_residual")
refused("attention_bias not a boolean", with_config(neox_model(), attention_bias=1), "attention_bias")
refused("hidden_act gelu_fast", with_config(neox_model(), hidden_act="gelu_fast"),
        "hidden_act 'gelu_fast' is not supported", "gelu_new", "relu")
refused("layer_norm_eps 1", with_config(neox_model(), layer_norm_eps=1.0), "layer_norm_eps")
refused("hidden_size not divisible by num_attention_heads",
        with_config(neox_model(), num_attention_heads=3), "not divisible")
refused("intermediate_size null (GPT-NeoX has no default from hidden_size)",
        with_config(neox_model(), intermediate_size=None), "intermediate_size must be a positive integer")
refused("max_position_embeddings past run's range",
        with_config(neox_model(), max_position_embeddings=(1 << 20) + 1),
        "max_position_embeddings must be a positive integer (<= 1048576)")
refused("num_hidden_layers 0", with_config(neox_model(), num_hidden_layers=0), "num_hidden_layers must be")

# GPT-Neo
refused("attention type 'sparse'", with_config(neo_model(), attention_types=[[["global", "sparse"], 1],
                                                                             [["local"], 1]]),
        "attention_types", "'sparse'")
refused("attention_types for 4 layers, num_layers 3",
        with_config(neo_model(), attention_types=[[["global", "local"], 2]]), "attention_types gives 4 layers",
        "num_layers is 3")
refused("attention_types malformed", with_config(neo_model(), attention_types=["global"]), "attention_types")
refused("window_size 0 with local layers", with_config(neo_model(), window_size=0), "window_size must be")
refused("attention_layers disagreeing with attention_types",
        with_config(neo_model(), attention_layers=["global", "global", "global"]), "attention_layers")
refused("num_heads and num_attention_heads disagreeing",
        with_config(neo_model(), num_attention_heads=4), "num_attention_heads", "num_heads")
refused("activation_function gelu_fast", with_config(neo_model(), activation_function="gelu_fast"),
        "activation_function 'gelu_fast'")

# OPT
refused("word_embed_proj_dim larger than hidden_size", with_config(opt_model(), word_embed_proj_dim=16),
        "word_embed_proj_dim 16")
refused("do_layer_norm_before not a boolean", with_config(opt_model(), do_layer_norm_before="no"),
        "do_layer_norm_before")
refused("activation_function tanh", with_config(opt_model(), activation_function="tanh"),
        "activation_function 'tanh'")

# tensors
m = neo_model()
del m.tensors["h.1.attn.attention.q_proj.weight"]
refused("a missing tensor", m.write("bad"), "missing tensor(s) h.1.attn.attention.q_proj.weight")
m = opt_model(affine=False)
ln(m, "layers.0.self_attn_layer_norm", 8)
refused("LayerNorm parameters although layer_norm_elementwise_affine is false", m.write("bad"),
        "unexpected tensor(s) layers.0.self_attn_layer_norm.bias")
m = opt_model(pre=False)
ln(m, "final_layer_norm", 8)
refused("a final LayerNorm in a post-LN OPT", m.write("bad"), "unexpected tensor(s) final_layer_norm")
m = neox_model()
m.tensors["layers.1.attention.query_key_value.weight"] = ((3 * 16, 17), values(3 * 16 * 17, 1))
refused("a fused query_key_value of the wrong shape", m.write("bad"),
        "layers.1.attention.query_key_value.weight has shape [48, 17]", "[48, 16]")
m = neox_model()
m.add("lm_head.weight", (V, 16))
refused("both embed_out and lm_head", m.write("bad"), "both embed_out.weight and lm_head.weight")
refused("tie_word_embeddings false and no output embedding", neox_model(head=None).write("bad"),
        "tie_word_embeddings false", "embed_out.weight or lm_head.weight")
m = neo_model()
m.tensors["transformer.wte.weight"] = m.tensors["wte.weight"]
refused("one tensor with and without the prefix", m.write("bad"), "wte.weight appears both")


# ---------------------------------------------------------------- the same edges as run

RUN = os.path.join(ROOT, "run")


def run_accepts(path, offset, fmt, value):
    """run on the exported checkpoint with one version-2 header field patched."""
    data = bytearray(open(path, "rb").read())
    struct.pack_into(fmt, data, offset, value)
    patched = os.path.join(TMP, "patched.bin")
    with open(patched, "wb") as fh:
        fh.write(data)
    p = subprocess.run([RUN, patched, "--ids", "-n", "1", "-t", "0", "-p", "1 2"], capture_output=True, timeout=60)
    return p.returncode == 0, p.stderr.decode("utf-8", "replace")


def exports(d):
    out = os.path.join(TMP, "edge.bin")
    p = export(d, out)
    return p.returncode == 0, p.stderr.decode("utf-8", "replace"), out


if not os.path.exists(RUN):
    h.check("./run is built (make run) for the edge checks", False)
else:
    # (what, model, config changes, header offset, format, the value written)
    EDGES = []
    for w in (1, 1 << 20, (1 << 20) + 1):
        EDGES.append((f"window_size {w}", neo_model, dict(window_size=w), 256 + 4, "<I", w))
    for theta in (1.0001, 1e29, 1e30, 1e31):
        EDGES.append((f"rotary base {theta:g}", neox_model, dict(rotary_emb_base=theta), 116, "<f", theta))
    for pct, dims in ((0.25, 2), (1.0, 8), (0.375, 3), (0.125, 1)):
        EDGES.append((f"rotary_pct {pct} (rotary_dims {dims})", neox_model, dict(rotary_pct=pct), 112, "<I", dims))
    for e in (0, 8, 9):
        EDGES.append((f"word_embed_proj_dim {e} (hidden 8)", opt_model, dict(word_embed_proj_dim=e), 120, "<I", e))
    base_bins = {}
    for what, make, changes, off, fmt, value in EDGES:
        ok_e, err_e, out = exports(with_config(make(), "edge", **changes))
        if make not in base_bins:
            p_ok, _e, base = exports(make().write(f"edge_base_{len(base_bins)}"))
            keep = os.path.join(TMP, f"edge_base_{len(base_bins)}.bin")
            shutil.copy(base, keep)
            base_bins[make] = keep
        ok_r, err_r = run_accepts(base_bins[make], off, fmt, value)
        h.check(f"{what}: export.py and run agree ({'accepted' if ok_e else 'refused'})", ok_e == ok_r,
                f"export: {err_e}\nrun: {err_r}")


# ---------------------------------------------------------------- Llama and Qwen2

LLAMA_BLOCK = 4 | 64 | 128 | 256          # rotary, final norm, RMSNorm, gated MLP
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}


def llama_model(L=2, C=24, H=6, KVH=2, F=20, P=24, family="llama", attn_bias=False, head="lm_head.weight",
                rope=None, inv_freq=False, **cfg):
    """Llama (attn_bias: attention_bias, q/k/v and o_proj biases) or Qwen2
    (q/k/v biases always); rope: the config's rope keys (default: transformers
    5's rope_parameters, theta 500)."""
    qwen2 = family == "qwen2"
    config = dict(model_type=family, architectures=["Qwen2ForCausalLM" if qwen2 else "LlamaForCausalLM"],
                  vocab_size=V, hidden_size=C, num_hidden_layers=L, num_attention_heads=H,
                  num_key_value_heads=KVH, intermediate_size=F, max_position_embeddings=P, hidden_act="silu",
                  rms_norm_eps=1e-5, bos_token_id=384, eos_token_id=384, tie_word_embeddings=head is None)
    config.update({"rope_parameters": {"rope_type": "default", "rope_theta": 500.0}, "dtype": "float32"}
                  if rope is None else rope)
    if not qwen2:
        config["attention_bias"] = attn_bias
    config.update(cfg)
    D, KVH = C // H, KVH or H
    m = Model(config)
    m.add("embed_tokens.weight", (V, C))
    for l in range(L):
        p, a = f"layers.{l}.", f"layers.{l}.self_attn."
        m.add(p + "input_layernorm.weight", (C,))
        for x, rows in (("q", C), ("k", KVH * D), ("v", KVH * D)):
            m.add(a + f"{x}_proj.weight", (rows, C))
            if qwen2 or attn_bias:
                m.add(a + f"{x}_proj.bias", (rows,))
        m.add(a + "o_proj.weight", (C, C))
        if attn_bias:
            m.add(a + "o_proj.bias", (C,))
        if inv_freq:   # the buffer older checkpoints carry
            m.add(a + "rotary_emb.inv_freq", (D // 2,))
        m.add(p + "post_attention_layernorm.weight", (C,))
        m.add(p + "mlp.gate_proj.weight", (F, C))
        m.add(p + "mlp.up_proj.weight", (F, C))
        m.add(p + "mlp.down_proj.weight", (C, F))
    m.add("norm.weight", (C,))
    if head:
        m.add(head, (V, C))
    return m


def llama_expected(m, L, qkv_bias=False, proj_bias=False, head=True):
    g = m.get
    want = {"wte": g("embed_tokens.weight"), "ln_f.weight": g("norm.weight")}
    if head:
        want["lm_head"] = g("lm_head.weight")
    for l in range(L):
        p, a = f"h.{l}.", f"layers.{l}."
        s = a + "self_attn."
        want.update({
            p + "ln_1.weight": g(a + "input_layernorm.weight"),
            p + "qkv.weight": g(s + "q_proj.weight") + g(s + "k_proj.weight") + g(s + "v_proj.weight"),
            p + "proj.weight": g(s + "o_proj.weight"),
            p + "ln_2.weight": g(a + "post_attention_layernorm.weight"),
            p + "fc.weight": g(a + "mlp.gate_proj.weight"), p + "up.weight": g(a + "mlp.up_proj.weight"),
            p + "fc_proj.weight": g(a + "mlp.down_proj.weight")})
        if qkv_bias:
            want[p + "qkv.bias"] = g(s + "q_proj.bias") + g(s + "k_proj.bias") + g(s + "v_proj.bias")
        if proj_bias:
            want[p + "proj.bias"] = g(s + "o_proj.bias")
    return want


HUB_ROPE = dict(rope_theta=500.0, rope_scaling=None, torch_dtype="bfloat16")
NO_ROPE = dict(rope=dict(torch_dtype="float32"))
LLAMA_CASES = [
    # what, model kwargs, write kwargs, header fields beyond the common ones, expected() kwargs
    ("Llama, transformers 5 spelling, 3 query heads per KV head, untied, model. prefix, F32",
     dict(), dict(prefix="model.", keep=("lm_head.weight",)),
     dict(n_head=6, n_kv_head=2, rotary_dims=4, rotary_base=500.0, flags=3, block=LLAMA_BLOCK, family=4,
          rope_scaling=0, rope_factor=0.0, rope_original=0), dict()),
    ("Llama, hub spelling with rope_scaling llama3, attention_bias, tied, 2 query heads per KV head, "
     "BF16 sharded", dict(C=16, H=4, KVH=2, attn_bias=True, head=None,
                          rope=dict(HUB_ROPE, rope_scaling=LLAMA3, rope_theta=10000)),
     dict(dtype="BF16", shards=3, prefix="model."),
     dict(n_head=4, n_kv_head=2, rotary_dims=4, rotary_base=10000.0, flags=2, block=LLAMA_BLOCK | 8 | 16,
          family=4, rope_scaling=1, rope_factor=8.0, rope_low=1.0, rope_high=4.0, rope_original=16),
     dict(qkv_bias=True, proj_bias=True, head=False)),
    ("Llama, rope_parameters llama3 without original_max_position_embeddings (max_position_embeddings), "
     "num_key_value_heads null, head_dim given, pretraining_tp 2, inv_freq buffers, F16",
     dict(KVH=None, rope=dict(rope_parameters={**{k: v for k, v in LLAMA3.items()
                                                  if k != "original_max_position_embeddings"},
                                               "rope_theta": 20000.0}), head_dim=4,
          pretraining_tp=2, inv_freq=True),
     dict(dtype="F16", prefix="model.", keep=("lm_head.weight",)),
     dict(n_head=6, n_kv_head=6, rotary_base=20000.0, rope_scaling=1, rope_original=24), dict()),
    ("Llama, no rope keys at all (theta 10000), rope_scaling null and rope_theta at the top",
     dict(rope=dict(rope_scaling=None)), dict(prefix="model.", keep=("lm_head.weight",)),
     dict(rotary_base=10000.0, rope_scaling=0), dict()),
    ("Qwen2, hub spelling (rope_theta 1e6, sliding_window with use_sliding_window false), q/k/v biases, "
     "untied, F16", dict(family="qwen2", rope=dict(HUB_ROPE, rope_theta=1000000.0), sliding_window=7,
                         use_sliding_window=False, max_window_layers=0),
     dict(dtype="F16", prefix="model.", keep=("lm_head.weight",)),
     dict(family=5, n_kv_head=2, rotary_base=1e6, block=LLAMA_BLOCK | 8, flags=3, windows=[0, 0]),
     dict(qkv_bias=True)),
    ("Qwen2, transformers 5 spelling (layer_types all full_attention), lm_head equal to the embedding "
     "(tied), 2 query heads per KV head, no prefix, BF16", dict(family="qwen2", C=16, H=4, KVH=2,
                                                               layer_types=["full_attention"] * 2),
     dict(dtype="BF16"), dict(family=5, n_head=4, n_kv_head=2, flags=2, block=LLAMA_BLOCK | 8),
     dict(qkv_bias=True, head=False)),
]
for what, mk, wk, fields, ek in LLAMA_CASES:
    m = llama_model(**mk)
    same_head = "equal to the embedding" in what
    if same_head:
        m.tensors["lm_head.weight"] = m.tensors["embed_tokens.weight"]
    f, data = export_ok(what, m.write("llama", **wk))
    if f:
        C = mk.get("C", 24)
        want = dict(n_layer=2, n_embd=C, n_inner=20, n_ctx=24, vocab_size=V, eps=f32(1e-5), activation=3,
                    eos=384, bos=384, position_offset=0, rotary_dims=C // mk.get("H", 6), embed_dim=C,
                    windows=[0, 0])
        want.update(fields)
        check_fields(what, f, want)
        if same_head:
            del m.tensors["lm_head.weight"]
        check_tensors(what, f, data, llama_expected(m, 2, **ek))

# refusals: each names config.json and the key
LQ = dict(family="qwen2")
for what, model, changes, needles in [
    ("Llama hidden_act gelu", llama_model(), dict(hidden_act="gelu"), ("hidden_act 'gelu' is not supported", "silu")),
    ("Qwen2 hidden_act relu", llama_model(**LQ), dict(hidden_act="relu"), ("hidden_act 'relu'",)),
    ("Llama mlp_bias true", llama_model(), dict(mlp_bias=True), ("mlp_bias",)),
    ("head_dim other than hidden_size / num_attention_heads", llama_model(), dict(head_dim=8),
     ("head_dim 8", "24 / 6 = 4")),
    ("num_key_value_heads not dividing num_attention_heads", llama_model(), dict(num_key_value_heads=4),
     ("num_key_value_heads 4",)),
    ("num_key_value_heads 0", llama_model(), dict(num_key_value_heads=0), ("num_key_value_heads must be",)),
    ("Qwen2 without num_key_value_heads: Qwen2Config's default 32", llama_model(**LQ),
     dict(num_key_value_heads=DROP), ("num_key_value_heads 32",)),
    ("rope_scaling rope_type linear (hub spelling)", llama_model(rope=HUB_ROPE),
     dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), ("rope_scaling", "'linear'")),
    ("rope_scaling type dynamic (older key)", llama_model(rope=HUB_ROPE),
     dict(rope_scaling={"type": "dynamic", "factor": 2.0}), ("rope_scaling", "'dynamic'")),
    ("rope_parameters rope_type yarn", llama_model(),
     dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}), ("rope_parameters", "'yarn'")),
    ("rope_parameters rope_type longrope", llama_model(**LQ),
     dict(rope_parameters={"rope_type": "longrope", "rope_theta": 1e4}), ("'longrope'",)),
    ("llama3 without factor", llama_model(),
     dict(rope_parameters={k: v for k, v in LLAMA3.items() if k != "factor"}), ("has no factor",)),
    ("llama3 factor below 1", llama_model(), dict(rope_parameters=dict(LLAMA3, factor=0.5)),
     ("rope_parameters.factor must be",)),
    ("llama3 high_freq_factor not above low_freq_factor", llama_model(rope=HUB_ROPE),
     dict(rope_scaling=dict(LLAMA3, high_freq_factor=1.0)), ("rope_scaling.high_freq_factor",)),
    ("llama3 low_freq_factor 0", llama_model(), dict(rope_parameters=dict(LLAMA3, low_freq_factor=0)),
     ("low_freq_factor",)),
    ("llama3 original_max_position_embeddings 0", llama_model(),
     dict(rope_parameters=dict(LLAMA3, original_max_position_embeddings=0)), ("original_max_position_embeddings",)),
    ("llama3 with a key run does not read (attention_factor)", llama_model(),
     dict(rope_parameters=dict(LLAMA3, attention_factor=2.0)), ("rope_parameters.attention_factor",)),
    ("default rope with a factor", llama_model(),
     dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4, "factor": 2.0}), ("rope_parameters.factor",)),
    ("partial_rotary_factor 0.5 at the top", llama_model(rope=HUB_ROPE), dict(partial_rotary_factor=0.5),
     ("partial_rotary_factor = 0.5",)),
    ("rope_parameters.partial_rotary_factor 0.5", llama_model(**LQ),
     dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
     ("rope_parameters.partial_rotary_factor",)),
    ("top-level rope_theta disagreeing with rope_parameters.rope_theta", llama_model(), dict(rope_theta=7.0),
     ("rope_theta = 7.0", "rope_parameters.rope_theta = 500.0")),
    ("rope_theta 1", llama_model(rope=HUB_ROPE), dict(rope_theta=1), ("rope_theta must be a number > 1",)),
    ("rope_scaling and rope_parameters disagreeing", llama_model(),
     dict(rope_scaling=dict(LLAMA3, rope_theta=500.0)), ("rope_scaling", "rope_parameters", "disagree")),
    ("rope_scaling not an object", llama_model(rope=HUB_ROPE), dict(rope_scaling="llama3"),
     ('rope_scaling = "llama3" is not an object',)),
    ("Qwen2 use_sliding_window true", llama_model(**LQ), dict(use_sliding_window=True, sliding_window=8),
     ("use_sliding_window true",)),
    ("Qwen2 layer_types with sliding_attention", llama_model(**LQ),
     dict(layer_types=["full_attention", "sliding_attention"]), ("layer_types", "'sliding_attention'")),
    ("Qwen2 layer_types of the wrong length", llama_model(**LQ), dict(layer_types=["full_attention"]),
     ("layer_types", "list of 2")),
    ("rms_norm_eps 1", llama_model(), dict(rms_norm_eps=1.0), ("rms_norm_eps",)),
    ("attention_bias not a boolean", llama_model(), dict(attention_bias="yes"), ("attention_bias",)),
    ("use_sliding_window not a boolean", llama_model(**LQ), dict(use_sliding_window=0), ("use_sliding_window",)),
    ("pretraining_tp 0", llama_model(), dict(pretraining_tp=0), ("pretraining_tp must be",)),
    ("head_dim 0", llama_model(), dict(head_dim=0), ("head_dim must be a positive integer",)),
    ("rope_parameters not an object", llama_model(), dict(rope_parameters=[500.0]),
     ("rope_parameters = [500.0] is not an object",)),
    ("Qwen2 layer_types not a list", llama_model(**LQ), dict(layer_types="full_attention"),
     ("layer_types", "is not a list")),
    ("llama3 with a top-level original_max_position_embeddings (not read by transformers) disagreeing",
     llama_model(rope=HUB_ROPE), dict(rope_scaling={k: v for k, v in LLAMA3.items()
                                                   if k != "original_max_position_embeddings"},
                                      original_max_position_embeddings=32),
     ("original_max_position_embeddings = 32", "max_position_embeddings = 24")),
    ("Qwen2ForSequenceClassification", llama_model(**LQ), dict(architectures=["Qwen2ForSequenceClassification"]),
     ("architecture 'Qwen2ForSequenceClassification'", "Qwen2ForCausalLM")),
]:
    refused(what, with_config(model, **changes), "config.json", *needles)

m = llama_model(family="qwen2")
m.add("layers.0.self_attn.o_proj.bias", (24,))
refused("Qwen2 with an o_proj bias (Qwen2Attention has none)", m.write("bad"),
        "unexpected tensor(s) layers.0.self_attn.o_proj.bias")
m = llama_model()
m.tensors["layers.1.self_attn.k_proj.weight"] = ((24, 24), values(24 * 24, 1))
refused("k_proj with n_head rows although num_key_value_heads is 2", m.write("bad"),
        "layers.1.self_attn.k_proj.weight has shape [24, 24]", "[8, 24]", "2 key/value heads")
m = llama_model()
del m.tensors["layers.0.mlp.up_proj.weight"]
refused("a missing up_proj", m.write("bad"), "missing tensor(s) layers.0.mlp.up_proj.weight")
refused("Llama tie_word_embeddings false without lm_head",
        llama_model(head=None, tie_word_embeddings=False).write("bad"), "tie_word_embeddings false")

if os.path.exists(RUN):
    # Llama 3 rope scaling's ranges: export.py and run agree at and past each end.
    LLAMA_EDGES = []
    for v in (1.0, 0.999, 999999.0, 1e6):
        LLAMA_EDGES.append((f"llama3 factor {v:g}", dict(factor=v), 132, "<f", v))
    for v in (0.0, 1e-3):
        LLAMA_EDGES.append((f"llama3 low_freq_factor {v:g}", dict(low_freq_factor=v), 136, "<f", v))
    for v in (1.0, 1.001, 1e6):
        LLAMA_EDGES.append((f"llama3 high_freq_factor {v:g} (low 1)", dict(high_freq_factor=v), 140, "<f", v))
    for v in (0, 1, 1 << 24, (1 << 24) + 1):
        LLAMA_EDGES.append((f"llama3 original_max_position_embeddings {v}",
                            dict(original_max_position_embeddings=v), 144, "<I", v))
    ok_b, err_b, base = exports(llama_model(rope=dict(rope_parameters=dict(LLAMA3, rope_theta=1e4))).write("lbase"))
    h.check("the Llama 3 edge base exports", ok_b, err_b)
    keep = os.path.join(TMP, "llama_edge_base.bin")
    shutil.copy(base, keep)
    for what, change, off, fmt, value in LLAMA_EDGES:
        ok_e, err_e, _out = exports(with_config(llama_model(), "edge",
                                                rope_parameters=dict(LLAMA3, rope_theta=1e4, **change)))
        ok_r, err_r = run_accepts(keep, off, fmt, value)
        h.check(f"{what}: export.py and run agree ({'accepted' if ok_e else 'refused'})", ok_e == ok_r,
                f"export: {err_e}\nrun: {err_r}")

shutil.rmtree(TMP, ignore_errors=True)
h.done()
