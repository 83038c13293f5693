#!/usr/bin/env python3
"""Write the Llama and Qwen2 fixtures in tests/fixtures_llama/ and, for each,
the reference outputs transformers computes for them.

Run by hand (needs torch, transformers, safetensors); its output is
committed, so `make test` needs none of them:

    .venv-hf/bin/python tests/gen_llama_fixtures.py [NAME ...]

The layout is tests/gen_family_fixtures.py's (tests/test_llama_families.py
replays them): tests/fixtures_llama/<name>/ with
    hf/             a model directory: config.json (in the hub's spelling:
                    rope_theta, rope_scaling, torch_dtype, Qwen2's
                    sliding_window with use_sliding_window false; or in
                    transformers 5's: rope_parameters, dtype), weights from
                    save_pretrained (safetensors, single or sharded, float32,
                    float16 or bfloat16), GPT-2-style vocab.json + merges.txt
    expected.json   the ids scored, their per-position log-probs, a prompt
                    and its greedy continuation of 64 tokens; every number
                    from transformers
    logits.f32      little-endian float32 logits at every position of
                    expected["score_ids"], shape [len(score_ids), vocab_size]

The greedy reference is the step-by-step argmax of transformers' full
forward pass (eager attention, float32) over the prompt and the ids chosen so
far -- not generate(): see greedy_reference() for why.  generate's ids are
recorded too, with the step where they part from it, if they do.

Weights are random (seeded) at initializer_range 0.2, RMSNorm weights random
around 1 (the final one around 3, for clear greedy choices) and biases
random, so that a dropped bias, a swapped norm, q/k/v heads in the wrong order
or a wrong key/value head for a query head shows.  A fixture whose greedy run
has a top-two margin below 20 x the tolerance (1e-4 x max|logit|) is built
again from the next seed (the seed used is recorded), so that the test
checks all 64 steps rather than stopping at an accepted near-tie; so is one
whose greedy run reaches end-of-text before 64 ids.
"""
import json
import os
import shutil
import struct
import sys

import torch
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)
from transformers.utils import logging as hf_logging

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_family_fixtures import dump_json, write_f32  # noqa: E402

OUT = os.path.join(HERE, "fixtures_llama")
TOKDIR = os.path.join(HERE, "fixtures", "f32_st_basic", "hf")
N_TOKENS, EOT = 385, 384
N_CTX = 80          # room for a prompt and 64 new tokens
N_NEW = 64
PROMPT_LEN = 9
REL_TOL = 1e-4
MARGIN_TOLS = 20    # reseed while a greedy step's top-two margin is below this many tolerances

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CLASSES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 8.0,
          "original_max_position_embeddings": 64}

FIXTURES = [
    dict(name="llama_gqa3_llama3_hub_bf16", family="llama", dtype="bfloat16", spelling="hub", vocab=400,
         cfg=dict(hidden_size=60, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=52, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  rope_parameters=dict(LLAMA3, rope_theta=10000.0)),
         about="Llama: 6 query heads on 2 key/value heads (3 per KV head), head_dim 10, Llama 3 rope "
               "scaling (factor 8, low 1, high 8, original 64: of the 5 frequencies one kept, one "
               "blended, three divided), hub spelling (rope_theta + rope_scaling, torch_dtype), "
               "untied lm_head, vocab 400 > 385 tokens, bfloat16 model.safetensors"),
    dict(name="llama_gqa2_t5_fp16_sharded", family="llama", dtype="float16", spelling="t5", shard="40KB",
         cfg=dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=44, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 500.0}),
         about="Llama: 4 query heads on 2 key/value heads (2 per KV head), head_dim 8, "
               "transformers 5 spelling (rope_parameters theta 500, dtype), tied embeddings, "
               "float16 sharded safetensors"),
    dict(name="llama_mha_attnbias_f32", family="llama", dtype="float32", spelling="t5",
         cfg=dict(hidden_size=28, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                  intermediate_size=36, rms_norm_eps=1e-5, tie_word_embeddings=False, attention_bias=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
         about="Llama with attention_bias true (q, k, v and o_proj biases), as many key/value "
               "heads as query heads, head_dim 14, untied, float32 model.safetensors"),
    dict(name="qwen2_gqa3_bias_hub_f32", family="qwen2", dtype="float32", spelling="hub", vocab=400,
         cfg=dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=50, rms_norm_eps=1e-6, tie_word_embeddings=False,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         about="Qwen2: q/k/v biases (no o_proj bias), 6 query heads on 2 key/value heads, head_dim 6, "
               "hub spelling (rope_theta 1e6, sliding_window 32768 with use_sliding_window false, "
               "max_window_layers, torch_dtype, no layer_types), untied, vocab 400, float32"),
    dict(name="qwen2_gqa2_t5_bf16_sharded", family="qwen2", dtype="bfloat16", spelling="t5", shard="30KB",
         cfg=dict(hidden_size=40, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=56, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
         about="Qwen2: 4 query heads on 2 key/value heads, head_dim 10, biases, transformers 5 "
               "spelling (rope_parameters, layer_types, dtype), tied, bfloat16 sharded safetensors"),
]


def make_model(fx, vocab_size, n_ctx=N_CTX, std=0.2):
    cfg_cls, model_cls = CLASSES[fx["family"]]
    kw = dict(fx["cfg"], vocab_size=vocab_size, max_position_embeddings=n_ctx,
              bos_token_id=EOT, eos_token_id=EOT, pad_token_id=None, initializer_range=std)
    return model_cls(cfg_cls(**kw)).eval()


def perturb(model, gen, final_norm=3.0):
    """Random RMSNorm weights (1 would hide a swapped norm) and biases (0
    would hide a dropped one); the final norm sharper, for clear greedy choices."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.norm.weight":
                p.copy_(final_norm + 0.5 * torch.randn(p.shape, generator=gen))
            elif "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def hub_config(model, fx):
    """config.json as the hub's Llama / Qwen2 checkpoints spell it (written by
    transformers 4): rope_theta and rope_scaling at the top, torch_dtype."""
    d = model.config.to_dict()
    rope = dict(d.pop("rope_parameters"))
    d["rope_theta"] = rope.pop("rope_theta")
    d["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    d.pop("dtype", None)
    d["torch_dtype"] = fx["dtype"]
    d["architectures"] = [type(model).__name__]
    if fx["family"] == "qwen2":
        d.pop("layer_types", None)
        d.update(sliding_window=32768, use_sliding_window=False, max_window_layers=21)
    return d


def save(fx, model, hfdir):
    """save_pretrained in the fixture's dtype; the hub spelling rewrites config.json."""
    model = model.to(DTYPES[fx["dtype"]])
    kw = {"max_shard_size": fx["shard"]} if fx.get("shard") else {}
    model.save_pretrained(hfdir, **kw)
    if fx["spelling"] == "hub":
        with open(os.path.join(hfdir, "config.json"), "w") as f:
            json.dump(hub_config(model, fx), f, indent=2, sort_keys=True)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKDIR, fn), hfdir)
    model.float()


def greedy_reference(model, prompt_ids, n_new=N_NEW):
    """Greedy decoding as the argmax of the full forward pass at each step
    (eager attention, no cache): the reference for run's greedy ids.

    generate(do_sample=False) computes each step's logits incrementally (a
    KV cache, one new position per forward).  In float32 it is a sound
    reference too: on 288 random perturbed Llama/Qwen2 GQA models (eager and
    sdpa, 64 steps each) its step logits were within 8e-4 of the full
    forward's (max|logit| up to 51; the full forward's own float32 error
    against float64 is as large) and its ids never left the full forward's
    argmax.  What does take other ids is generate on a model loaded with
    from_pretrained's defaults: transformers 5 loads a bfloat16 / float16
    checkpoint in that dtype (dtype "auto") and with sdpa, so generate then
    runs in half precision (steps with top-two margins of 0.006-0.17 flip).
    The full forward in float32 with eager attention is the definition used
    here, and the one the score test checks logits against; generate's ids
    (float32, eager) are recorded beside it.  Returns (ids, top-two margins,
    top-two ids)."""
    ids, margins, top2 = list(prompt_ids), [], []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            top2.append(top.indices.tolist())
            ids.append(int(top.indices[0]))
            if ids[-1] == EOT:
                break
    return ids[len(prompt_ids):], margins, top2


def generate_ids(model, prompt_ids, n_new=N_NEW):
    out = model.generate(
        torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        do_sample=False, max_new_tokens=n_new, eos_token_id=EOT, pad_token_id=EOT)
    return out[0, len(prompt_ids):].tolist()


def first_difference(a, b):
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


def check_config(fx, cfg):
    """The saved directory, loaded back, has the configuration the fixture describes."""
    want = fx["cfg"]
    rope = cfg.rope_parameters
    for k, v in want["rope_parameters"].items():
        assert rope.get(k) == v, (fx["name"], k, rope)
    for k in ("num_attention_heads", "num_key_value_heads", "hidden_size", "tie_word_embeddings"):
        assert getattr(cfg, k) == want[k], (fx["name"], k)
    if fx["family"] == "qwen2":
        assert cfg.sliding_window is None and not cfg.use_sliding_window, fx["name"]
        assert all(t == "full_attention" for t in cfg.layer_types), fx["name"]
    assert getattr(cfg, "attention_bias", False) == want.get("attention_bias", False), fx["name"]


def build_once(fx, seed, fdir):
    hfdir = os.path.join(fdir, "hf")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(hfdir)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab_size = fx.get("vocab", N_TOKENS)
    model = make_model(fx, vocab_size)
    perturb(model, gen)
    src = {k: v.detach().to(DTYPES[fx["dtype"]]).float() for k, v in model.state_dict().items()}
    save(fx, model, hfdir)

    # Reference: the saved directory, loaded back in float32, eager attention.
    ref = AutoModelForCausalLM.from_pretrained(hfdir, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    got = ref.state_dict()
    for k, v in src.items():
        assert torch.equal(got[k], v), (fx["name"], k)
    check_config(fx, ref.config)

    g = torch.Generator().manual_seed(seed + 1)
    score_ids = torch.randint(0, N_TOKENS - 1, (N_CTX,), generator=g).tolist()
    prompt_ids = score_ids[:PROMPT_LEN]
    with torch.no_grad():
        logits = ref(torch.tensor([score_ids])).logits[0].float()
    g_ids, margins, top2 = greedy_reference(ref, prompt_ids)
    gen_ids = generate_ids(ref, prompt_ids)
    return ref, vocab_size, score_ids, prompt_ids, logits, g_ids, margins, top2, gen_ids


def build(fx, index):
    name = fx["name"]
    fdir = os.path.join(OUT, name)
    seed = 3000 + 100 * index
    for attempt in range(20):
        ref, vocab_size, score_ids, prompt_ids, logits, g_ids, margins, top2, gen_ids = \
            build_once(fx, seed, fdir)
        tol = REL_TOL * float(logits.abs().max())
        if min(margins) >= MARGIN_TOLS * tol and len(g_ids) == N_NEW:
            break
        print("  %s: seed %d: greedy top-two margin %.3g (%d x tolerance: %.3g), %d ids before "
              "end-of-text; next seed" % (name, seed, min(margins), MARGIN_TOLS, MARGIN_TOLS * tol, len(g_ids)))
        seed += 1
    else:
        raise SystemExit(f"{name}: no seed without a greedy near-tie")

    lp = torch.log_softmax(logits.double(), dim=-1)
    rows = [[j, score_ids[j], float(lp[j - 1, score_ids[j]])] for j in range(1, len(score_ids))]
    write_f32(os.path.join(fdir, "logits.f32"), logits)
    gd = first_difference(gen_ids, g_ids)
    exp = {
        "name": name,
        "about": fx["about"],
        "generated_by": "tests/gen_llama_fixtures.py with torch %s, transformers %s" % (
            torch.__version__, __import__("transformers").__version__),
        "seed": seed,
        "family": fx["family"],
        "config_spelling": fx["spelling"],
        "config": json.loads(ref.config.to_json_string(use_diff=False)),
        "stored_dtype": fx["dtype"],
        "weights_format": "sharded safetensors" if fx.get("shard") else "safetensors",
        "tokenizer_n_tokens": N_TOKENS,
        "vocab_size": vocab_size,
        "n_ctx": N_CTX,
        "eos_token_id": EOT,
        "score_ids": score_ids,
        "logits_file": "logits.f32",
        "logits_shape": [len(score_ids), vocab_size],
        "max_abs_logit": float(logits.abs().max()),
        "score": rows,
        "mean_nll": -sum(r[2] for r in rows) / len(rows),
        "greedy": {
            "reference": "argmax of the full forward pass (eager, float32) at each step",
            "prompt_ids": prompt_ids,
            "max_new_tokens": N_NEW,
            "ids": g_ids,
            "stopped_at_eos": bool(g_ids and g_ids[-1] == EOT and len(g_ids) < N_NEW),
            "top2_margins": margins,
            "top2_ids": top2,
            "generate_ids": gen_ids,
            "generate_differs_at": gd,
        },
    }
    with open(os.path.join(fdir, "expected.json"), "w", encoding="utf-8") as f:
        f.write(dump_json(exp))
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(fdir) for fn in fns)
    print("%-30s %-6s V=%-4d %-9s %6.1f KB  max|logit| %.2f  greedy %d/%d min margin %.4f  "
          "generate differs at %s  loss %.4f" % (name, fx["family"], vocab_size, fx["dtype"], size / 1024,
                                                 exp["max_abs_logit"], len(g_ids), N_NEW, min(margins),
                                                 gd, exp["mean_nll"]))
    return size


def main():
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    only = set(sys.argv[1:])
    total = 0
    for i, fx in enumerate(FIXTURES):
        if not only or fx["name"] in only:
            total += build(fx, i)
    print("total %.1f KB" % (total / 1024))


if __name__ == "__main__":
    main()
