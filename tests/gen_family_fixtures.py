#!/usr/bin/env python3
"""Write the GPT-Neo, GPT-NeoX and OPT fixtures in tests/fixtures_families/
and, for each, the reference outputs transformers computes for them.

Run by hand (needs torch, transformers, safetensors); its output is
committed, so `make test` needs none of them:

    .venv-hf/bin/python tests/gen_family_fixtures.py [NAME ...]

Each fixture is tests/fixtures_families/<name>/ with
    hf/             a model directory: config.json (in the hub's or in
                    transformers 5's spelling), weights (save_pretrained, or
                    a state dict written directly where the hub's checkpoints
                    look different), vocab.json + merges.txt
    expected.json   the ids scored, their per-position log-probs, a prompt
                    and its greedy continuation of 64 tokens from
                    generate(do_sample=False); every number from transformers
    logits.f32      little-endian float32 logits at every position of
                    expected["score_ids"], shape [len(score_ids), vocab_size]

The tokenizer is GPT-2-style byte-level BPE (tests/fixtures/f32_st_basic's
vocab.json and merges.txt, 385 ids, <|endoftext|> = 384) for every fixture:
the families' own tokenizers are the tokenizer's business, and the model
side is what these fixtures test.  The references are computed in float32
with eager attention, from the saved directory loaded back as a user would.
Weights are random (seeded) and scaled up, LayerNorm parameters and biases
random rather than 1 and 0, so that a dropped bias, a swapped LayerNorm or a
mis-ordered q/k/v shows; each fixture's shapes are small and odd.
"""
import json
import os
import shutil
import struct
import sys

import torch
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, GPTNeoConfig, GPTNeoForCausalLM, GPTNeoXConfig,
                          GPTNeoXForCausalLM, OPTConfig, OPTForCausalLM)
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import dump_json, greedy  # noqa: E402  (greedy: generate(do_sample=False) with each step's top-2 margin)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures_families")
TOKDIR = os.path.join(HERE, "fixtures", "f32_st_basic", "hf")
N_TOKENS, EOT = 385, 384
N_CTX = 80          # room for a prompt and 64 new tokens
N_NEW = 64
PROMPT_LEN = 9

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

FIXTURES = [
    dict(name="neo_local_st", family="gpt_neo", dtype="float32", fmt="safetensors",
         cfg=dict(hidden_size=24, num_layers=3, num_heads=3, intermediate_size=40,
                  attention_types=[[["global", "local"], 1], [["local"], 1]], window_size=5,
                  activation_function="gelu_new", layer_norm_epsilon=1e-4),
         about="GPT-Neo: global, local, local layers with window 5 (shorter than the "
               "sequences), head_dim 8, intermediate_size 40, fp32 model.safetensors"),
    dict(name="neo_hub_fp16_bin", family="gpt_neo", dtype="float16", fmt="bin", hub_buffers=True,
         cfg=dict(hidden_size=16, num_layers=4, num_heads=2, intermediate_size=None,
                  attention_types=[[["local", "global"], 2]], window_size=7,
                  activation_function="gelu_new"),
         about="GPT-Neo like the hub's pytorch_model.bin: float16, transformer. prefix, "
               "attn.attention.bias/masked_bias buffers, no lm_head; local/global, window 7, "
               "intermediate_size null (4 * hidden)"),
    dict(name="neox_parallel_hub_bf16_st", family="gpt_neox", dtype="bfloat16",
         fmt="safetensors", hub_config=True, hub_keys=True, vocab=400, reseed=100,
         cfg=dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=80,
                  rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
                  hidden_act="gelu", layer_norm_eps=1e-5, tie_word_embeddings=False),
         about="Pythia-style GPT-NeoX: hub config spelling (rotary_pct 0.25, rotary_emb_base, "
               "torch_dtype), hub key names (gpt_neox. prefix, embed_out), parallel residual, "
               "head_dim 16 -> 4 rotary dims, untied, vocab 400 > 385 tokens, bfloat16"),
    dict(name="neox_sequential_nobias_bin", family="gpt_neox", dtype="float32", fmt="bin",
         cfg=dict(hidden_size=40, num_hidden_layers=2, num_attention_heads=2, intermediate_size=56,
                  rope_parameters={"rope_theta": 500.0, "partial_rotary_factor": 0.5,
                                   "rope_type": "default"},
                  use_parallel_residual=False, attention_bias=False, hidden_act="gelu_new",
                  layer_norm_eps=1e-3, tie_word_embeddings=True),
         about="GPT-NeoX, transformers 5 config spelling (rope_parameters: theta 500, "
               "partial_rotary_factor 0.5 -> 10 of 20 dims), sequential residual, "
               "attention_bias false, tied embeddings, pytorch_model.bin fp32"),
    dict(name="opt_preln_fp16_st", family="opt", dtype="float16", fmt="safetensors",
         cfg=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=56,
                  do_layer_norm_before=True, activation_function="relu"),
         about="OPT pre-LN (125m-style), ffn_dim 56, relu, float16 model.safetensors, "
               "position table with the +2 offset"),
    dict(name="opt_postln_proj_st", family="opt", dtype="float32", fmt="safetensors",
         cfg=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, ffn_dim=48,
                  do_layer_norm_before=False, word_embed_proj_dim=16,
                  activation_function="relu"),
         about="OPT-350m-style: post-LN, no final LayerNorm, word_embed_proj_dim 16 < hidden 32 "
               "(project_in / project_out), fp32"),
    dict(name="opt_noaffine_nobias_bin", family="opt", dtype="float32", fmt="bin", prefixless=True,
         cfg=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, ffn_dim=40,
                  do_layer_norm_before=True, enable_bias=False,
                  layer_norm_elementwise_affine=False, activation_function="gelu"),
         about="OPT with enable_bias false and layer_norm_elementwise_affine false (no LayerNorm "
               "parameters in the file), gelu, pytorch_model.bin saved from OPTModel "
               "(decoder. prefix, no lm_head)"),
]

CLASSES = {"gpt_neo": (GPTNeoConfig, GPTNeoForCausalLM), "gpt_neox": (GPTNeoXConfig, GPTNeoXForCausalLM),
           "opt": (OPTConfig, OPTForCausalLM)}
FINAL_NORMS = ("transformer.ln_f.weight", "gpt_neox.final_layer_norm.weight",
               "model.decoder.final_layer_norm.weight")


def make_model(fx, vocab_size, n_ctx=N_CTX):
    cfg_cls, model_cls = CLASSES[fx["family"]]
    kw = dict(fx["cfg"], vocab_size=vocab_size, max_position_embeddings=n_ctx,
              bos_token_id=EOT, eos_token_id=EOT, pad_token_id=None)
    std = fx.get("init_std", 0.2)
    if fx["family"] == "opt":
        kw.update(init_std=std, dropout=0.0)
    else:
        kw.update(initializer_range=std)
    model = model_cls(cfg_cls(**kw))
    return model.eval()


def perturb(model, gen, fx):
    """Random LayerNorm parameters and biases (0 and 1 would hide mistakes);
    the last LayerNorm sharper, for clear greedy choices."""
    last_ln = f"model.decoder.layers.{model.config.num_hidden_layers - 1}.final_layer_norm.weight"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in FINAL_NORMS or (fx["family"] == "opt" and name == last_ln
                                       and not model.config.do_layer_norm_before):
                p.copy_(3.0 + 0.5 * torch.randn(p.shape, generator=gen))
            elif "norm" in name.split(".")[-2] or name.split(".")[-2].startswith("ln_"):
                if name.endswith(".weight"):
                    p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def hub_state_dict(fx, model):
    """The state dict as the hub's checkpoints carry it."""
    dtype = DTYPES[fx["dtype"]]
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if fx["family"] == "gpt_neo":
        sd.pop("lm_head.weight", None)
        if fx.get("hub_buffers"):
            n = N_CTX
            full = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)
            for i, kind in enumerate(model.config.attention_layers):
                mask = full if kind == "global" else torch.bitwise_xor(
                    full, torch.tril(full, -model.config.window_size))
                sd[f"transformer.h.{i}.attn.attention.bias"] = mask.clone()
                sd[f"transformer.h.{i}.attn.attention.masked_bias"] = torch.tensor(-1e9, dtype=dtype)
    if fx["family"] == "gpt_neox" and fx.get("hub_keys"):
        sd["embed_out.weight"] = sd.pop("lm_head.weight")
        for i in range(model.config.num_hidden_layers):
            inv = model.gpt_neox.rotary_emb.inv_freq.detach().clone()
            sd[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = inv
    if fx.get("prefixless"):   # saved from the base model: OPTModel -> decoder.*
        sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return sd


def hub_config(model, dtype_name):
    """GPTNeoXConfig as the hub's Pythia config.json spells it."""
    d = model.config.to_dict()
    rope = d.pop("rope_parameters")
    d["rotary_pct"] = rope["partial_rotary_factor"]
    d["rotary_emb_base"] = int(rope["rope_theta"])
    d.pop("dtype", None)
    d["torch_dtype"] = dtype_name
    d["architectures"] = ["GPTNeoXForCausalLM"]
    return d


def write_weights(fx, model, hfdir):
    dtype = DTYPES[fx["dtype"]]
    model = model.to(dtype)
    direct = fx["fmt"] == "bin" or fx.get("hub_keys") or fx.get("hub_buffers")
    if not direct:
        model.save_pretrained(hfdir)
        return
    if fx.get("hub_config"):
        with open(os.path.join(hfdir, "config.json"), "w") as f:
            json.dump(hub_config(model, fx["dtype"]), f, indent=2, sort_keys=True)
    else:
        model.config.architectures = [type(model).__name__]
        model.config.dtype = dtype
        model.config.save_pretrained(hfdir)
    sd = hub_state_dict(fx, model)
    if fx["fmt"] == "bin":
        torch.save(sd, os.path.join(hfdir, "pytorch_model.bin"))
    else:
        save_file(sd, os.path.join(hfdir, "model.safetensors"), metadata={"format": "pt"})




def write_f32(path, t):
    t = t.contiguous().to(torch.float32)
    with open(path, "wb") as f:
        f.write(struct.pack("<%df" % t.numel(), *t.flatten().tolist()))


def build(fx, index):
    name = fx["name"]
    seed = 2000 + index + fx.get("reseed", 0)   # reseed: away from a greedy near-tie
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    vocab_size = fx.get("vocab", N_TOKENS)
    fdir = os.path.join(OUT, name)
    hfdir = os.path.join(fdir, "hf")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(hfdir)

    model = make_model(fx, vocab_size)
    perturb(model, gen, fx)
    src = {k: v.detach().to(DTYPES[fx["dtype"]]).float() for k, v in model.state_dict().items()}
    write_weights(fx, model, hfdir)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKDIR, fn), hfdir)

    # Reference: the saved directory, loaded back in float32.
    ref = AutoModelForCausalLM.from_pretrained(hfdir, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    got = ref.state_dict()
    for k, v in src.items():
        assert torch.equal(got[k], v), (name, k)
    cfg = ref.config
    if fx["family"] == "gpt_neox":
        want = fx["cfg"].get("rope_parameters") or {
            "rope_theta": fx["cfg"]["rotary_emb_base"], "partial_rotary_factor": fx["cfg"]["rotary_pct"]}
        assert cfg.rope_parameters["rope_theta"] == want["rope_theta"], name
        assert cfg.rope_parameters["partial_rotary_factor"] == want["partial_rotary_factor"], name

    g = torch.Generator().manual_seed(seed + 1)
    score_ids = torch.randint(0, N_TOKENS - 1, (N_CTX,), generator=g).tolist()
    prompt_ids = score_ids[:PROMPT_LEN]
    with torch.no_grad():
        logits = ref(torch.tensor([score_ids])).logits[0].float()
    lp = torch.log_softmax(logits.double(), dim=-1)
    rows = [[j, score_ids[j], float(lp[j - 1, score_ids[j]])] for j in range(1, len(score_ids))]
    write_f32(os.path.join(fdir, "logits.f32"), logits)
    g_ids, margins, top2 = greedy(ref, prompt_ids, N_NEW, EOT)

    exp = {
        "name": name,
        "about": fx["about"],
        "generated_by": "tests/gen_family_fixtures.py with torch %s, transformers %s" % (
            torch.__version__, __import__("transformers").__version__),
        "seed": seed,
        "family": fx["family"],
        "config": json.loads(cfg.to_json_string(use_diff=False)),
        "stored_dtype": fx["dtype"],
        "weights_format": fx["fmt"],
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
            "prompt_ids": prompt_ids,
            "max_new_tokens": N_NEW,
            "ids": g_ids,
            "stopped_at_eos": bool(g_ids and g_ids[-1] == EOT and len(g_ids) < N_NEW),
            "top2_margins": margins,
            "top2_ids": top2,
        },
    }
    with open(os.path.join(fdir, "expected.json"), "w", encoding="utf-8") as f:
        f.write(dump_json(exp))
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(fdir) for fn in fns)
    print("%-28s %-8s V=%-4d %-9s %-11s %6.1f KB  max|logit| %.2f  greedy %d/%d min margin %.4f  "
          "loss %.4f" % (name, fx["family"], vocab_size, fx["dtype"], fx["fmt"], size / 1024,
                         exp["max_abs_logit"], len(g_ids), N_NEW, min(margins), exp["mean_nll"]))
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
