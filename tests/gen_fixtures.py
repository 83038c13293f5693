#!/usr/bin/env python3
"""Write the small Hugging Face GPT-2 fixtures in tests/fixtures/ and, for each,
the reference outputs that transformers itself computes for them.

Run by hand (needs torch, transformers, tokenizers, safetensors); its output is
committed, so `make test` needs none of them:

    python3 tests/gen_fixtures.py            # rewrites tests/fixtures/

Each fixture is tests/fixtures/<name>/ with
    hf/             a model directory as transformers (or torch.save, for the
                    pytorch_model.bin ones) writes it: config.json, weights,
                    vocab.json + merges.txt (and tokenizer.json for one)
    expected.json   prompts, ids, greedy continuation, per-token log-probs,
                    the mean loss, "text_score": a text for --score and its
                    loss, and "long": 2*n_positions+5 ids scored in
                    independent chunks of n_positions tokens (SPEC --score);
                    every number comes from transformers
    logits.f32      little-endian float32 logits at every position of
                    expected["score_ids"], shape [len(score_ids), vocab_size]

The references are computed in float32 even for float16/bfloat16 checkpoints:
the saved directory is loaded back with dtype=torch.float32, which is exactly
what the exporter produces (the stored half values widened to float32).
Weights are random (seeded), scaled up (initializer_range 0.2, and random
biases and LayerNorm parameters rather than 0 and 1) so that a bias that is
dropped or a transposed matrix shows, and so greedy decoding is not a tie.
"""
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, GPT2Model, GPT2Tokenizer
from transformers.utils import logging as hf_logging

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
EOT = "<|endoftext|>"

# Training text for the small byte-level BPE vocabularies (written for this
# project). Mixed scripts, digits, contractions and whitespace runs, so the
# GPT-2 pre-tokenizer's every branch has something to do.
CORPUS = """\
The keeper of the north light wrote in her log every evening at six. She wrote
the wind, the height of the sea, the ships she had counted, and the state of
the lamp. On quiet nights the entries were short: "Calm. 3 ships. Lamp good."
On other nights they ran for pages, and the ink went thin where the spray had
reached the paper.

It's a strange job, she told the inspector, when he came out on the supply boat
in 1987. You don't talk to anyone for weeks, and then you can't stop talking.
He'd brought coffee, two sacks of flour, a crate of lamp oil and 400 metres of
new rope. They sat at the table and she talked for an hour.

Counting is what keeps you sane out here. 1, 2, 3, 10, 100, 1000. Seventeen
gulls on the rail; 42 steps to the lamp room; 365 log entries a year, 366 in a
leap year. The numbers don't care whether you're lonely.

In the spring the birds came back: terns, puffins, a pair of ravens that she
named Hugin and Munin. She'd read about them in an old book of Norse stories,
the ravens who fly over the world each day and come home to tell the god what
they've seen. Her ravens mostly told her that the bread was stale.

Le café du port était fermé. Ça arrive souvent en hiver, disait le patron,
naïf ou résigné. Die Überfahrt dauerte zwölf Stunden; über dem Wasser lag
Nebel. Η θάλασσα ήταν ήρεμη. Море было спокойным. 海は静かだった。灯台の光が
遠くまで届いた。 바다는 조용했다. 🌊⛵🐦 — « fin » …

    def count(ships):
        total = 0
        for s in ships:   # one at a time
            total += 1
        return total

Tabs\tand  double  spaces,   and\n\nblank lines; 'quotes' and "more quotes";
(parentheses) [brackets] {braces} <angles> #hash $12.50 100% a+b=c x*y/z ~!@^&
The end? Not yet. The lamp still turns, the log still fills, and the sea is
still there in the morning, grey and patient and enormous.
"""

PROMPTS = [
    "The keeper wrote in her log",
    "On quiet nights the lamp",
    "It's a strange job, she said. You don't",
    "Counting: 1, 2, 3, 42 steps",
    "Le café du port était",
    "海は静かだった 🌊 and the ravens",
    "    def count(ships):\n        total",
    "Tabs\tand  spaces",
]


# ---------------------------------------------------------------- tokenizers

def train_tokenizer(kind, workdir):
    """Two byte-level BPE vocabularies in GPT-2's vocab.json/merges.txt format:
    'A': 384 ids learned from CORPUS, then <|endoftext|> appended as the last
         id (as GPT-2 does: 50256 is the last id);
    'B': 320 ids with <|endoftext|> trained in as id 0."""
    tok = ByteLevelBPETokenizer()
    lines = CORPUS.splitlines(keepends=True)
    if kind == "A":
        tok.train_from_iterator(lines, vocab_size=384, min_frequency=2,
                                special_tokens=[], show_progress=False)
    else:
        tok.train_from_iterator(lines, vocab_size=320, min_frequency=2,
                                special_tokens=[EOT], show_progress=False)
    d = os.path.join(workdir, "tok" + kind)
    os.makedirs(d, exist_ok=True)
    tok.save_model(d)
    vocab_path = os.path.join(d, "vocab.json")
    with open(vocab_path, encoding="utf-8") as f:
        vocab = json.load(f)
    if EOT not in vocab:
        vocab[EOT] = len(vocab)
    # Ids in order, as GPT-2's own vocab.json is written.
    vocab = dict(sorted(vocab.items(), key=lambda kv: kv[1]))
    assert sorted(vocab.values()) == list(range(len(vocab)))
    with open(vocab_path, "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    return d, len(vocab), vocab[EOT]


def load_hf_tokenizer(d):
    return GPT2Tokenizer.from_pretrained(d)


# ---------------------------------------------------------------- fixtures

# name -> description. Shapes are deliberately odd; each fixture also varies
# one or two storage properties.
FIXTURES = [
    dict(name="f32_st_basic", tok="A", n_layer=2, n_head=4, n_embd=32, n_inner=None,
         n_positions=32, fmt="safetensors", dtype="float32",
         about="baseline: fp32 model.safetensors, tied lm_head, gelu_new"),
    dict(name="head5_inner72_bin", tok="A", n_layer=3, n_head=5, n_embd=40, n_inner=72,
         n_positions=16, fmt="bin", dtype="float32", bin_keep_lm_head=True,
         about="n_head 5, n_inner != 4*n_embd, n_positions 16, pytorch_model.bin "
               "(transformer. prefix; lm_head.weight saved as a second reference "
               "to wte's storage)"),
    dict(name="fp16_untied_st", tok="A", n_layer=2, n_head=2, n_embd=24, n_inner=80,
         n_positions=32, fmt="safetensors", dtype="float16", tie=False,
         about="float16 safetensors, untied lm_head"),
    dict(name="bf16_gelu_erf_st", tok="B", n_layer=1, n_head=3, n_embd=48, n_inner=96,
         n_positions=24, fmt="safetensors", dtype="bfloat16", act="gelu",
         about="bfloat16 safetensors, activation gelu (erf), 1 layer, "
               "<|endoftext|> is id 0"),
    dict(name="noprefix_fp16_st", tok="B", n_layer=2, n_head=6, n_embd=36, n_inner=None,
         n_positions=20, fmt="safetensors", dtype="float16", base_model=True,
         about="GPT2Model.save_pretrained: keys without transformer. prefix, no "
               "lm_head, float16, head_dim 6"),
    dict(name="sharded_bf16_st", tok="A", n_layer=3, n_head=4, n_embd=32, n_inner=64,
         n_positions=32, fmt="safetensors", dtype="bfloat16", shard="12KB",
         about="sharded safetensors (model-0000i-of-0000n + index), bfloat16"),
    dict(name="fp16_untied_eps_bin", tok="B", n_layer=2, n_head=2, n_embd=16, n_inner=40,
         n_positions=16, fmt="bin", dtype="float16", tie=False, eps=1e-3,
         about="pytorch_model.bin float16 (HalfStorage), untied lm_head, "
               "layer_norm_epsilon 1e-3"),
    dict(name="bf16_bin", tok="A", n_layer=1, n_head=2, n_embd=32, n_inner=None,
         n_positions=16, fmt="bin", dtype="bfloat16",
         about="pytorch_model.bin bfloat16 (BFloat16Storage)"),
    dict(name="hub_like_bin", tok="A", n_layer=2, n_head=4, n_embd=32, n_inner=None,
         n_positions=32, fmt="bin", dtype="float32", base_model=True, hub_buffers=True,
         hub_files=True,
         about="like the hub's gpt2 pytorch_model.bin: keys without prefix, "
               "attn.bias / attn.masked_bias buffers, no lm_head; ships "
               "vocab.json, merges.txt, tokenizer.json, tokenizer_config.json"),
    dict(name="hub_like_st", tok="B", n_layer=2, n_head=4, n_embd=32, n_inner=None,
         n_positions=24, fmt="safetensors", dtype="float32", base_model=True,
         hub_buffers=True, raw_safetensors=True,
         about="like the hub's gpt2 model.safetensors: no prefix, attn.bias "
               "buffers included"),
    dict(name="tokjson_only_st", tok="B", n_layer=1, n_head=4, n_embd=16, n_inner=None,
         n_positions=16, fmt="safetensors", dtype="float32", tokenizer_json_only=True,
         about="tokenizer.json only (no vocab.json/merges.txt)"),
    dict(name="bin_views", tok="A", n_layer=2, n_head=2, n_embd=16, n_inner=24,
         n_positions=16, fmt="bin", dtype="float32", bin_views=True,
         about="pytorch_model.bin whose tensors are views into one shared storage "
               "(non-zero storage offsets) and one non-contiguous (transposed) view"),
    dict(name="inv_layer_idx_st", tok="A", n_layer=3, n_head=4, n_embd=32, n_inner=None,
         n_positions=32, fmt="safetensors", dtype="float32", inv_layer=True,
         about="scale_attn_by_inverse_layer_idx=True (SPEC flags bit2)"),
    dict(name="noscale_st", tok="B", n_layer=2, n_head=2, n_embd=16, n_inner=None,
         n_positions=16, fmt="safetensors", dtype="float32", scale_attn=False,
         about="scale_attn_weights=False (SPEC flags bit1 clear)"),
    dict(name="padded_vocab_1head_st", tok="A", n_layer=2, n_head=1, n_embd=32, n_inner=48,
         n_positions=32, fmt="safetensors", dtype="float32", vocab_pad=448,
         act="gelu_pytorch_tanh",
         about="model vocab 448 > tokenizer's 385 ids, n_head 1, "
               "gelu_pytorch_tanh"),
    dict(name="relu_st", tok="B", n_layer=2, n_head=4, n_embd=16, n_inner=None,
         n_positions=16, fmt="safetensors", dtype="float32", act="relu",
         about="activation relu (SPEC activation 2)"),
    dict(name="silu_st", tok="A", n_layer=1, n_head=2, n_embd=16, n_inner=32,
         n_positions=16, fmt="safetensors", dtype="float32", act="silu",
         about="activation silu (SPEC activation 3)"),
]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def perturb(model, gen):
    """Random biases and LayerNorm parameters (the default init leaves them 0
    and 1, which would hide a dropped bias or a mixed-up LayerNorm)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight")):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("ln_f.weight"):
                # sharper output distributions: clear greedy choices
                p.copy_(3.0 + 0.5 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def flat_views(sd):
    """The same tensors, all as views into one float storage (non-zero
    storage offsets); c_fc weights of layer 0 as a transposed (strided) view."""
    total = sum(t.numel() for t in sd.values())
    flat = torch.empty(total, dtype=torch.float32)
    out, off = {}, 0
    for k, t in sd.items():
        n = t.numel()
        if k.endswith("h.0.mlp.c_fc.weight"):
            # stored [out, in] contiguously, exposed as the [in, out] transpose
            seg = flat[off:off + n].view(t.shape[1], t.shape[0])
            seg.copy_(t.t())
            v = seg.t()
            assert not v.is_contiguous()
        else:
            v = flat[off:off + n].view(t.shape)
            v.copy_(t)
        out[k] = v
        off += n
    return out


def make_model(fx, vocab_size, eot_id):
    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=fx["n_positions"], n_embd=fx["n_embd"],
        n_layer=fx["n_layer"], n_head=fx["n_head"], n_inner=fx["n_inner"],
        activation_function=fx.get("act", "gelu_new"),
        layer_norm_epsilon=fx.get("eps", 1e-5), initializer_range=0.2,
        scale_attn_weights=fx.get("scale_attn", True),
        scale_attn_by_inverse_layer_idx=fx.get("inv_layer", False),
        tie_word_embeddings=fx.get("tie", True),
        bos_token_id=eot_id, eos_token_id=eot_id,
    )
    cls = GPT2Model if fx.get("base_model") else GPT2LMHeadModel
    model = cls(cfg)
    return model.eval()


def write_weights(fx, model, hfdir):
    dtype = DTYPES[fx["dtype"]]
    model = model.to(dtype)
    if fx["fmt"] == "safetensors" and not fx.get("raw_safetensors"):
        kw = {"max_shard_size": fx["shard"]} if fx.get("shard") else {}
        model.save_pretrained(hfdir, **kw)
        return
    # pytorch_model.bin (transformers 5 no longer writes it: torch.save of the
    # state dict is what transformers 4's save_pretrained(safe_serialization=
    # False) did), or a safetensors file written directly (hub-style keys).
    cfg = model.config
    cfg.architectures = ["GPT2LMHeadModel" if isinstance(model, GPT2LMHeadModel)
                         or fx.get("hub_buffers") else "GPT2Model"]
    cfg.dtype = dtype
    cfg.save_pretrained(hfdir)
    if fx.get("hub_files"):
        GenerationConfig(bos_token_id=cfg.bos_token_id,
                         eos_token_id=cfg.eos_token_id).save_pretrained(hfdir)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if isinstance(model, GPT2LMHeadModel) and model.config.tie_word_embeddings:
        if fx.get("bin_keep_lm_head"):
            sd["lm_head.weight"] = sd["transformer.wte.weight"]  # same storage
        else:
            sd.pop("lm_head.weight", None)
    if fx.get("hub_buffers"):
        n = fx["n_positions"]
        pre = "transformer." if isinstance(model, GPT2LMHeadModel) else ""
        mask = torch.tril(torch.ones(n, n, dtype=dtype)).view(1, 1, n, n)
        for i in range(fx["n_layer"]):
            sd[f"{pre}h.{i}.attn.bias"] = mask.clone()
            if fx["fmt"] == "bin":
                sd[f"{pre}h.{i}.attn.masked_bias"] = torch.tensor(-1e4, dtype=dtype)
    if fx.get("bin_views"):
        sd = flat_views(sd)
    if fx["fmt"] == "bin":
        torch.save(sd, os.path.join(hfdir, "pytorch_model.bin"))
    else:
        save_file({k: v.contiguous() for k, v in sd.items()},
                  os.path.join(hfdir, "model.safetensors"), metadata={"format": "pt"})


def greedy(model, prompt_ids, n_new, eot_id):
    """generate(do_sample=False): the new ids, and at each step the gap
    between the two largest logits and their ids (to tell a near-tie)."""
    out = model.generate(
        torch.tensor([prompt_ids]), attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        do_sample=False, max_new_tokens=n_new, eos_token_id=eot_id, pad_token_id=eot_id,
        output_logits=True, return_dict_in_generate=True)
    ids = out.sequences[0, len(prompt_ids):].tolist()
    margins, top2 = [], []
    for step in out.logits[:len(ids)]:
        top = torch.topk(step[0].float(), 2)
        margins.append(float(top.values[0] - top.values[1]))
        top2.append(top.indices.tolist())
    return ids, margins, top2


def score(model, ids, n_ctx):
    """Per-token log-probs and logits, in independent chunks of n_ctx tokens
    (SPEC --score). Returns (rows, logits[T, V], mean_nll)."""
    rows, logit_rows, nll = [], [], []
    for start in range(0, len(ids), n_ctx):
        chunk = ids[start:start + n_ctx]
        x = torch.tensor([chunk])
        with torch.no_grad():
            out = model(x, labels=x if len(chunk) > 1 else None)
        lg = out.logits[0].float()
        logit_rows.append(lg)
        lp = torch.log_softmax(lg.double(), dim=-1)
        for j in range(1, len(chunk)):
            v = float(lp[j - 1, chunk[j]])
            rows.append([start + j, chunk[j], v])
            nll.append(-v)
        if len(chunk) > 1 and len(ids) <= n_ctx:
            # the single-chunk case: transformers' own loss is the reference
            loss = float(out.loss)
    if len(ids) <= n_ctx:
        mean = loss
    else:
        mean = sum(nll) / len(nll)
    return rows, torch.cat(logit_rows, 0), mean


def write_f32(path, t):
    t = t.contiguous().to(torch.float32)
    data = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    with open(path, "wb") as f:
        f.write(data)


def fit_text(tok, text, limit):
    """The longest prefix of `text` (whole characters) with at most `limit` ids."""
    while len(tok(text)["input_ids"]) > limit:
        text = text[:-1]
    return text


def build(fx, toks, corpus_ids, index):
    name = fx["name"]
    seed = 1000 + index
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tokdir, n_tokens, eot_id = toks[fx["tok"]]
    vocab_size = fx.get("vocab_pad", n_tokens)
    n_ctx = fx["n_positions"]

    fdir = os.path.join(OUT, name)
    hfdir = os.path.join(fdir, "hf")
    shutil.rmtree(fdir, ignore_errors=True)
    os.makedirs(hfdir)

    model = make_model(fx, vocab_size, eot_id)
    perturb(model, gen)
    write_weights(fx, model, hfdir)

    # the tokenizer files
    if fx.get("tokenizer_json_only") or fx.get("hub_files"):
        hft = load_hf_tokenizer(tokdir)
        tmp = tempfile.mkdtemp()
        hft.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "tokenizer.json"), hfdir)
        if fx.get("hub_files"):
            shutil.copy(os.path.join(tmp, "tokenizer_config.json"), hfdir)
        shutil.rmtree(tmp)
    if not fx.get("tokenizer_json_only"):
        for fn in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tokdir, fn), hfdir)

    # Reference: load what was written, in float32, as a user would.
    tok = GPT2Tokenizer.from_pretrained(tokdir) if fx.get("tokenizer_json_only") \
        else GPT2Tokenizer.from_pretrained(hfdir)
    ref = GPT2LMHeadModel.from_pretrained(hfdir, dtype=torch.float32,
                                          attn_implementation="eager").eval()
    # The loaded model must be the saved one, widened to float32.
    src = model.float().state_dict()
    got = ref.state_dict()
    for k, v in src.items():
        kk = k if k.startswith(("transformer.", "lm_head.")) else "transformer." + k
        assert torch.equal(got[kk], v), (name, k)
    if fx.get("tie", True):
        assert torch.equal(got["lm_head.weight"], got["transformer.wte.weight"]), name
    else:
        assert not torch.equal(got["lm_head.weight"], got["transformer.wte.weight"]), name
    assert ref.config.eos_token_id == eot_id

    # prompt text -> ids (the HF tokenizer), greedy continuation filling n_ctx
    text = fit_text(tok, PROMPTS[index % len(PROMPTS)], n_ctx // 2)
    text_ids = tok(text)["input_ids"]
    assert tok.decode(text_ids) == text
    n_new = n_ctx - len(text_ids)
    g_ids, margins, top2 = greedy(ref, text_ids, n_new, eot_id)

    special_text = fit_text(tok, "night" + EOT + "The lamp", n_ctx)
    special_ids = tok(special_text)["input_ids"]
    assert eot_id in special_ids

    # scoring: n_ctx ids of the corpus (the whole context, so the last
    # position embedding is used), and 2*n_ctx+5 ids scored in chunks
    off = (index * 37) % (len(corpus_ids) - 3 * n_ctx)
    score_ids = corpus_ids[off:off + n_ctx]
    rows, logits, loss = score(ref, score_ids, n_ctx)
    write_f32(os.path.join(fdir, "logits.f32"), logits)
    long_ids = corpus_ids[off:off + 2 * n_ctx + 5]
    long_rows, long_logits, long_mean = score(ref, long_ids, n_ctx)
    # --score on text: a piece of the corpus that fits the context
    st = fit_text(tok, CORPUS[(index * 97) % 1500:], n_ctx)
    st_ids = tok(st)["input_ids"]
    st_rows, _, st_loss = score(ref, st_ids, n_ctx)

    # text-mode greedy: the raw bytes of the greedy tokens (before any eos)
    byte_dec = {v: k for k, v in bytes_to_unicode().items()}
    inv = {i: s for s, i in tok.get_vocab().items()}

    def raw(i):
        s = inv.get(i)
        if s is None or s == EOT:
            return b""
        return bytes(byte_dec[c] for c in s)

    g_text_ids = g_ids[:g_ids.index(eot_id)] if eot_id in g_ids else g_ids

    exp = {
        "name": name,
        "about": fx["about"],
        "generated_by": "tests/gen_fixtures.py with torch %s, transformers %s" % (
            torch.__version__, __import__("transformers").__version__),
        "seed": seed,
        "hf_dir": "hf",
        "config": {k: getattr(ref.config, k) for k in (
            "n_layer", "n_head", "n_embd", "n_inner", "n_positions", "vocab_size",
            "activation_function", "layer_norm_epsilon", "scale_attn_weights",
            "scale_attn_by_inverse_layer_idx", "tie_word_embeddings")},
        "stored_dtype": fx["dtype"],
        "weights_format": fx["fmt"],
        "tokenizer_n_tokens": n_tokens,
        "eos_token_id": eot_id,
        "text": text,
        "text_ids": text_ids,
        "special_text": special_text,
        "special_ids": special_ids,
        "greedy": {
            "prompt_ids": text_ids,
            "max_new_tokens": n_new,
            "ids": g_ids,
            "stopped_at_eos": bool(g_ids and g_ids[-1] == eot_id and len(g_ids) < n_new),
            "top2_margins": margins,
            "top2_ids": top2,
            "text_bytes_hex": b"".join(raw(i) for i in g_text_ids).hex(),
        },
        "score_ids": score_ids,
        "logits_file": "logits.f32",
        "logits_shape": [len(score_ids), vocab_size],
        "max_abs_logit": float(logits.abs().max()),
        "score": rows,
        "mean_nll": loss,
        "perplexity": math.exp(loss),
        "text_score": {
            "text": st,
            "ids": st_ids,
            "score": st_rows,
            "mean_nll": st_loss,
            "perplexity": math.exp(st_loss),
        },
        "long": {
            "ids": long_ids,
            "max_abs_logit": float(long_logits.abs().max()),
            "score": long_rows,
            "mean_nll": long_mean,
            "perplexity": math.exp(long_mean),
        },
    }
    with open(os.path.join(fdir, "expected.json"), "w", encoding="utf-8") as f:
        f.write(dump_json(exp))
    size = sum(os.path.getsize(os.path.join(dp, fn))
               for dp, _, fns in os.walk(fdir) for fn in fns)
    print("%-24s V=%-4d L=%d H=%d C=%-3d F=%-4s ctx=%-3d %-9s %-11s %6.1f KB  "
          "max|logit| %.2f  greedy %d/%d min margin %.4f  loss %.4f" % (
              name, vocab_size, fx["n_layer"], fx["n_head"], fx["n_embd"],
              fx["n_inner"], n_ctx, fx["dtype"], fx["fmt"], size / 1024,
              exp["max_abs_logit"], len(g_ids), n_new, min(margins), loss))
    return size


def dump_json(obj, indent=""):
    """JSON with one key per line and lists of numbers kept on one line."""
    if isinstance(obj, dict) and obj:
        inner = indent + " "
        items = [inner + json.dumps(k) + ": " + dump_json(v, inner).lstrip()
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}" + ("" if indent else "\n")
    if isinstance(obj, list) and obj and isinstance(obj[0], list):
        inner = indent + " "
        return "[\n" + ",\n".join(inner + json.dumps(r) for r in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)


def bytes_to_unicode():
    """GPT-2's reversible byte <-> printable-unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main():
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp()
    try:
        toks = {k: train_tokenizer(k, work) for k in ("A", "B")}
        total = 0
        only = set(sys.argv[1:])
        for i, fx in enumerate(FIXTURES):
            if only and fx["name"] not in only:
                continue
            corpus_tok = GPT2Tokenizer.from_pretrained(toks[fx["tok"]][0])
            corpus_ids = corpus_tok(CORPUS)["input_ids"]
            total += build(fx, toks, corpus_ids, i)
        print("total %.1f KB" % (total / 1024))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
