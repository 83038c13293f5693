#!/usr/bin/env python3
"""Write the edge-configuration models of tests/contract/ and the logits that
transformers computes for them; tests/test_contract.py replays them.

Run by hand (needs torch, transformers, safetensors); its output is committed,
so `make test` needs none of them:

    .venv-hf/bin/python tests/gen_contract.py     # rewrites tests/contract/

Each model sits at an edge of what the checkpoint header can say: layer_norm
epsilon 0, one head, head sizes 1 and 3, an odd n_inner, a context of one
position, a byte-only vocabulary (256 tokens, no merges), and each activation
export.py accepts. Each is tests/contract/<name>/ with
    hf/             config.json, model.safetensors, vocab.json, merges.txt
    expected.json   the config's edge, the ids, and how they were scored
    logits.f32      little-endian float32 logits of every position of the ids,
                    scored in independent chunks of n_positions (SPEC --score)
Weights are random (seeded) with random biases and LayerNorm parameters.
"""
import json
import os
import shutil
import struct
import sys

import torch
from transformers import GPT2Config, GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "contract")
sys.path.insert(0, os.path.dirname(HERE))
from export import bytes_to_unicode  # noqa: E402  (GPT-2's byte <-> character table)

MODELS = [
    dict(name="eps0_gelu_new", n_layer=2, n_head=2, n_embd=8, n_inner=None, n_positions=16, eps=0.0,
         act="gelu_new", about="layer_norm_epsilon 0, gelu_new"),
    dict(name="one_head_gelu", n_layer=2, n_head=1, n_embd=5, n_inner=12, n_positions=12, eps=1e-5,
         act="gelu", about="one head (head size 5), exact-erf gelu"),
    dict(name="head1_relu", n_layer=1, n_head=4, n_embd=4, n_inner=8, n_positions=10, eps=1e-5,
         act="relu", about="head size 1, relu"),
    dict(name="head3_inner7_silu", n_layer=2, n_head=3, n_embd=9, n_inner=7, n_positions=9, eps=1e-3,
         act="silu", about="head size 3, odd n_inner 7, silu"),
    dict(name="ctx1_swish", n_layer=1, n_head=2, n_embd=6, n_inner=5, n_positions=1, eps=1e-5,
         act="swish", about="a context of one position (n_positions 1), swish"),
    dict(name="bytes_gelu_tanh", n_layer=1, n_head=2, n_embd=16, n_inner=24, n_positions=24, eps=1e-5,
         act="gelu_pytorch_tanh", about="byte-only vocabulary scored over 24 positions, gelu_pytorch_tanh"),
]
VOCAB = 256  # every model: the 256 byte tokens, no merges


def write_tokenizer(hfdir):
    table = bytes_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    with open(os.path.join(hfdir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(hfdir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")


def build(m, index):
    torch.manual_seed(2000 + index)
    gen = torch.Generator().manual_seed(2000 + index)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=m["n_positions"], n_embd=m["n_embd"], n_layer=m["n_layer"],
                     n_head=m["n_head"], n_inner=m["n_inner"], activation_function=m["act"],
                     layer_norm_epsilon=m["eps"], initializer_range=0.3, bos_token_id=None, eos_token_id=None)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    fdir = os.path.join(OUT, m["name"])
    hfdir = os.path.join(fdir, "hf")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(hfdir)
    model.save_pretrained(hfdir)
    write_tokenizer(hfdir)

    ref = GPT2LMHeadModel.from_pretrained(hfdir, dtype=torch.float32, attn_implementation="eager").eval()
    n_ctx = m["n_positions"]
    n_ids = max(2 * n_ctx + 3, 8)
    ids = torch.randint(0, VOCAB, (n_ids,), generator=gen).tolist()
    rows = []
    for start in range(0, len(ids), n_ctx):
        with torch.no_grad():
            rows.append(ref(torch.tensor([ids[start:start + n_ctx]])).logits[0].float())
    logits = torch.cat(rows, 0)
    with open(os.path.join(fdir, "logits.f32"), "wb") as f:
        f.write(struct.pack("<%df" % logits.numel(), *logits.flatten().tolist()))
    with open(os.path.join(fdir, "expected.json"), "w") as f:
        json.dump({"about": m["about"], "ids": ids, "vocab_size": VOCAB, "n_positions": n_ctx,
                   "made_by": "tests/gen_contract.py: transformers GPT2LMHeadModel, float32, eager attention, "
                              "each chunk of n_positions ids scored on its own"}, f, indent=1)
    print(f"{m['name']}: {m['about']}")


def main():
    for i, m in enumerate(MODELS):
        build(m, i)


if __name__ == "__main__":
    main()
