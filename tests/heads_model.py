#!/usr/bin/env python3
"""A GPT-2 built by hand whose heads do known jobs, for --find-heads
(standard library only).

    python3 tests/heads_model.py DIR    # writes DIR/config.json, model.safetensors, the tokenizer

Two layers of two heads, C = 256, head size 128, 128 positions, the 320-token
vocabulary of the fixtures. The residual stream is laid out by hand:
  dims   0..127  the position, one-hot (A at dim p)
  dims 128..191  the token, a random code of +-1 (one per token)
  dims 192..255  empty, until layer 0 writes the previous token's code there
Every LayerNorm has weight 1 and bias 0, the MLPs are zero, and:
  layer 0 head 0  previous token: its query is the position moved back by one
                  (q_d = S y_{d+1}), its key the position (k_d = y_d), so
                  query i matches key i-1; its value is the token's code,
                  which the projection writes into dims 192..255
  layer 0 head 1  all zero: every score 0, weights exactly 1/(i+1)
  layer 1 head 0  induction: its query is the token's code, its key the code
                  of the token before (dims 192..255): query i matches the
                  key j whose previous token is token i, the token after an
                  earlier copy of it
  layer 1 head 1  sink: a constant query (its bias) against the key of
                  position 0's one-hot dimension
The scores are scaled so that the wanted key wins by a wide margin; on
--find-heads's repeated random tokens the three scores come out near 1, and
the all-zero head's exactly as an even spread gives."""
import array
import json
import os
import random
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOKDIR = os.path.join(HERE, "fixtures", "hub_like_st", "hf")
V, P, C, H, F = 320, 128, 256, 2, 4
HD = C // H
A = 8.0           # the position's one-hot value
S_PREV, S_IND, S_SINK = 2.0, 3.0, 30.0


def zeros(*shape):
    n = 1
    for s in shape:
        n *= s
    return [0.0] * n


def build():
    rng = random.Random(16)
    code = [[rng.choice((-1.0, 1.0)) for _ in range(64)] for _ in range(V)]
    t = {}
    wte = zeros(V, C)
    for tok in range(V):
        wte[tok * C + 128:tok * C + 192] = code[tok]
    wpe = zeros(P, C)
    for p in range(P):
        wpe[p * C + p] = A
    t["transformer.wte.weight"] = ([V, C], wte)
    t["transformer.wpe.weight"] = ([P, C], wpe)
    for l in range(2):
        # Conv1D weights are [in, out]; the qkv columns are q (C), k (C), v (C), head h at h*HD
        attn = zeros(C, 3 * C)
        bias = zeros(3 * C)
        proj = zeros(C, C)

        def w(i, o, val):
            attn[i * 3 * C + o] = val
        if l == 0:
            for d in range(HD - 1):
                w(d + 1, d, S_PREV)          # head 0 query: the position moved back by one
            for d in range(HD):
                w(d, C + d, 1.0)             # head 0 key: the position
            for d in range(64):
                w(128 + d, 2 * C + d, 1.0)   # head 0 value: the token's code
                proj[d * C + 192 + d] = 1.0  # ... written into dims 192..255
        else:
            for d in range(64):
                w(128 + d, d, S_IND)         # head 0 query: this token's code
                w(192 + d, C + d, 1.0)       # head 0 key: the previous token's code
            bias[HD] = S_SINK                # head 1 query: a constant
            w(0, C + HD, 1.0)                # head 1 key: position 0's dimension
        pre = f"transformer.h.{l}."
        for name in ("ln_1", "ln_2"):
            t[pre + name + ".weight"] = ([C], [1.0] * C)
            t[pre + name + ".bias"] = ([C], zeros(C))
        t[pre + "attn.c_attn.weight"] = ([C, 3 * C], attn)
        t[pre + "attn.c_attn.bias"] = ([3 * C], bias)
        t[pre + "attn.c_proj.weight"] = ([C, C], proj)
        t[pre + "attn.c_proj.bias"] = ([C], zeros(C))
        t[pre + "mlp.c_fc.weight"] = ([C, F], zeros(C, F))
        t[pre + "mlp.c_fc.bias"] = ([F], zeros(F))
        t[pre + "mlp.c_proj.weight"] = ([F, C], zeros(F, C))
        t[pre + "mlp.c_proj.bias"] = ([C], zeros(C))
    t["transformer.ln_f.weight"] = ([C], [1.0] * C)
    t["transformer.ln_f.bias"] = ([C], zeros(C))
    return t


def write(d):
    os.makedirs(d, exist_ok=True)
    tensors = build()
    header, blobs, at = {}, [], 0
    for name, (shape, vals) in tensors.items():
        b = array.array("f", vals).tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
              "bos_token_id": 0, "eos_token_id": 0, "layer_norm_epsilon": 1e-05, "n_embd": C, "n_head": H,
              "n_inner": F, "n_layer": 2, "n_positions": P, "vocab_size": V, "scale_attn_weights": True,
              "scale_attn_by_inverse_layer_idx": False, "tie_word_embeddings": True}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKDIR, fn), d)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: heads_model.py DIR")
    write(sys.argv[1])
