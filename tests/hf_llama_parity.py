#!/usr/bin/env python3
"""Llama and Qwen2: export.py + run against transformers, live, on freshly
built random models (needs torch and transformers: make test-hf).

Models: the small odd shapes of tests/gen_llama_fixtures.py (grouped-query
attention with 2 and 3 query heads per key/value head and without, Llama 3
rope scaling, Llama's attention_bias, Qwen2's q/k/v biases, tied and untied,
both config spellings, float32 / float16 / bfloat16, single and sharded
safetensors), built again from other seeds, and the real shapes with random
weights at transformers' own initialisation (initializer_range 0.02, norms 1):
  SmolLM2-135M  LlamaConfig: 30 layers, hidden 576, 9 heads on 3 key/value
                heads, intermediate 1536, vocab 49152, rope_theta 100000,
                rms_norm_eps 1e-5, tied; float32 model.safetensors,
                transformers 5 spelling
  Qwen2.5-0.5B  Qwen2Config: 24 layers, hidden 896, 14 heads on 2 key/value
                heads, intermediate 4864, vocab 151936, rope_theta 1e6,
                q/k/v biases, tied, sliding_window 32768 with
                use_sliding_window false; bfloat16 sharded safetensors,
                the hub's spelling
Each is saved with save_pretrained, exported, and checked three ways:
  1. the checkpoint read back as tests/SPEC.md section 1b describes it and
     evaluated here with torch (spec_logits) gives transformers' logits;
  2. run --score --ids --dump-logits gives transformers' logits at every
     position within 1e-4 * max|logit|, and its --score log-probs within
     twice that;
  3. run --ids -t 0 -n 64: at every step run's id is the argmax of
     transformers' full forward (eager, float32) over the prompt and run's
     ids so far -- one forward over the whole sequence gives every step's
     logits.  Where the reference's top two are closer than the tolerance,
     either is accepted (a note says so) and the next steps are still
     checked, on run's path.
generate(do_sample=False) is run too, and where its ids part from the full
forward's argmax a note gives the step and the margin there: it is not the
reference (tests/gen_llama_fixtures.py, greedy_reference, says why).
QUICK=1 skips the real shapes.
"""
import math
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN  # noqa: E402
import gen_llama_fixtures as gl  # noqa: E402
from hf_family_parity import read_checkpoint, run_logits  # noqa: E402  (SPEC 1b's reader, run's logits)

EXPORT = os.path.join(ROOT, "export.py")
REL_TOL = 1e-4
N_SCORE = 256

REAL = [
    dict(name="SmolLM2-135M (random)", family="llama", dtype="float32", spelling="t5", vocab=49152,
         n_ctx=8192, real=True,
         cfg=dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                  intermediate_size=1536, rms_norm_eps=1e-5, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
    dict(name="Qwen2.5-0.5B (random)", family="qwen2", dtype="bfloat16", spelling="hub", vocab=151936,
         n_ctx=32768, real=True, shard="400MB",
         cfg=dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  intermediate_size=4864, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
]


# ---------------------------------------------------------------- SPEC 1b, read back

def spec_inv_freq(hd):
    """SPEC 1b: base^(-2i/d), rescaled as the llama3 rope type does when the header says so."""
    d = hd["rot"]
    f = hd["base"] ** (-2.0 * torch.arange(d // 2, dtype=torch.float64) / d)
    if hd["scaling"] == 1:
        w = 2 * math.pi / f
        old, low, high, factor = hd["old"], hd["low"], hd["high"], hd["factor"]
        s = (old / w - low) / (high - low)
        mid = (1 - s) * f / factor + s * f
        f = torch.where(w < old / high, f, torch.where(w > old / low, f / factor, mid))
    return f


def spec_logits(hd, t, ids):
    """Logits at every position from the checkpoint as SPEC 1b says (RMSNorm,
    gated silu MLP, grouped-query attention, rotary on the first rot dims)."""
    L, H, KVH, C, b = hd["L"], hd["H"], hd["KVH"], hd["C"], hd["block"]
    D, T = C // H, len(ids)
    assert b & 128 and b & 256 and b & 4 and hd["act"] == 3, "a Llama-style block"

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + hd["eps"]) * w
    pos = torch.arange(T)
    ang = pos[:, None].double() * spec_inv_freq(hd)[None, :]
    cos, sin, half = ang.cos().float(), ang.sin().float(), hd["rot"] // 2

    def rotate(x):
        a, b2 = x[..., :half], x[..., half:2 * half]
        return torch.cat([a * cos - b2 * sin, b2 * cos + a * sin, x[..., 2 * half:]], dim=-1)
    mask = pos[None, :] <= pos[:, None]
    x = t["wte"][torch.tensor(ids)]
    for l in range(L):
        p = f"h.{l}."
        h = norm(x, t[p + "ln_1.weight"])
        qkv = h @ t[p + "qkv.weight"].T + (t[p + "qkv.bias"] if b & 8 else 0)
        q = qkv[:, :C].view(T, H, D).transpose(0, 1)
        k = qkv[:, C:C + KVH * D].view(T, KVH, D).transpose(0, 1)
        v = qkv[:, C + KVH * D:].view(T, KVH, D).transpose(0, 1)
        q, k = rotate(q), rotate(k)
        kv_of = torch.arange(H) // (H // KVH)      # query head h reads key/value head h / (H / KVH)
        s = q @ k[kv_of].transpose(-1, -2) / D ** 0.5
        s = s.masked_fill(~mask, float("-inf")).softmax(-1)
        o = (s @ v[kv_of]).transpose(0, 1).reshape(T, C)
        x = x + o @ t[p + "proj.weight"].T + (t[p + "proj.bias"] if b & 16 else 0)
        h = norm(x, t[p + "ln_2.weight"])
        g = torch.nn.functional.silu(h @ t[p + "fc.weight"].T) * (h @ t[p + "up.weight"].T)
        x = x + g @ t[p + "fc_proj.weight"].T
    x = norm(x, t["ln_f.weight"])
    return x @ t.get("lm_head", t["wte"]).T


# ---------------------------------------------------------------- run

def check_model(h, fx, model, work):
    name = fx["name"]
    hfdir = os.path.join(work, "hf")
    shutil.rmtree(hfdir, ignore_errors=True)
    os.makedirs(hfdir)
    gl.save(fx, model, hfdir)
    del model
    ref = AutoModelForCausalLM.from_pretrained(hfdir, dtype=torch.float32,
                                               attn_implementation="eager").eval()
    gl.check_config(fx, ref.config)
    binpath = os.path.join(work, "model.bin")
    p = subprocess.run([sys.executable, EXPORT, "-q", hfdir, binpath], capture_output=True, timeout=3600)
    shutil.rmtree(hfdir, ignore_errors=True)
    if not h.check(f"{name}: export.py exports it", p.returncode == 0, p.stderr.decode()[-600:]):
        return
    n_ctx = ref.config.max_position_embeddings
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, gl.N_TOKENS - 1, (min(N_SCORE, n_ctx),), generator=g).tolist()
    with torch.no_grad():
        want = ref(torch.tensor([ids])).logits[0].float()
    tol = REL_TOL * float(want.abs().max())

    hd, t = read_checkpoint(binpath)
    h.check(f"{name}: version 2, family {hd['family']}, n_kv_head {hd['KVH']}, file_bytes = the end "
            f"of the last tensor", hd["version"] == 2 and hd["end_of_tensors"] == hd["file_bytes"]
            and hd["family"] == {"llama": 4, "qwen2": 5}[fx["family"]]
            and hd["KVH"] == ref.config.num_key_value_heads, hd)
    with torch.no_grad():
        spec = spec_logits(hd, t, ids)
    del t
    worst = float((spec - want).abs().max())
    h.check(f"{name}: the checkpoint read as SPEC 1b says gives transformers' logits "
            f"(worst {worst:.2e}, bound {tol:.2e})", worst <= tol)
    del spec

    got, p = run_logits(binpath, ids, os.path.join(work, "logits.f32"), timeout=1800)
    if h.check(f"{name}: run --score --ids --dump-logits exits 0", got is not None,
               p.stderr.decode("utf-8", "replace")[-600:]):
        ok = got.numel() == want.numel()
        worst = float((got.view_as(want) - want).abs().max()) if ok else float("inf")
        h.check(f"{name}: run's logits at all {len(ids)} positions equal transformers' "
                f"(worst {worst:.2e}, bound {tol:.2e}, max|logit| {tol / REL_TOL:.3g})",
                ok and worst <= tol, (got.numel(), want.numel()))
        lp = torch.log_softmax(want.double(), -1)
        rows = [l.split("\t") for l in p.stdout.decode().splitlines()]
        ok = len(rows) == len(ids) - 1 and all(
            int(r[0]) == j + 1 and int(r[1]) == ids[j + 1] for j, r in enumerate(rows))
        worst_lp = max((abs(float(r[2]) - float(lp[j, ids[j + 1]])) for j, r in enumerate(rows)),
                       default=float("inf")) if ok else float("inf")
        h.check(f"{name}: --score log-probs equal transformers' (worst {worst_lp:.2e}, bound "
                f"{2 * tol + 1e-6:.2e})", ok and worst_lp <= 2 * tol + 1e-6, p.stdout.decode()[:300])
    del want

    prompt = ids[:gl.PROMPT_LEN]
    p = subprocess.run([RUN, binpath, "--ids", "-t", "0", "-n", str(gl.N_NEW), "-p", " ".join(map(str, prompt))],
                       capture_output=True, timeout=1800)
    if not h.check(f"{name}: greedy --ids exits 0", p.returncode == 0, p.stderr.decode()[-600:]):
        return
    got_ids = [int(x) for x in p.stdout.split()]
    with torch.no_grad():
        steps = ref(torch.tensor([prompt + got_ids])).logits[0, len(prompt) - 1:].float()
    bad, near = [], []
    for k, a in enumerate(got_ids):
        best = int(steps[k].argmax())
        if a != best:
            gap = float(steps[k, best] - steps[k, a])
            (near if gap < tol else bad).append((k, a, best, gap))
    for k, a, best, gap in near:
        print(f"  note {name}: greedy step {k}: run took {a}, the reference's argmax is {best}, "
              f"{gap:.3g} apart (< {tol:.3g}: a near-tie)")
    stopped = len(got_ids) < gl.N_NEW
    ended = stopped and int(steps[len(got_ids)].argmax()) == gl.EOT
    h.check(f"{name}: greedy {len(got_ids)} ids, each the argmax of transformers' full forward "
            f"at its step{' (then end-of-text)' if stopped else ''}",
            not bad and (len(got_ids) == gl.N_NEW or ended), f"{bad[:5]}; {len(got_ids)} ids")

    out = ref.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                       do_sample=False, max_new_tokens=gl.N_NEW, eos_token_id=gl.EOT, pad_token_id=gl.EOT,
                       output_logits=True, return_dict_in_generate=True)
    gen_ids = out.sequences[0, len(prompt):].tolist()
    # up to the first id where generate and run differ, both are on the same
    # path, so steps[k] is the full forward over generate's own ids so far
    k = gl.first_difference(gen_ids, got_ids)
    if (k is not None and k < len(gen_ids) and k < len(got_ids)
            and gen_ids[k] != int(steps[k].argmax())):
        top = torch.topk(steps[k], 2)
        print(f"  note {name}: generate(do_sample=False) parts from the full forward's argmax path at "
              f"step {k} (full forward's top-two margin there {float(top.values[0] - top.values[1]):.3g}, "
              f"generate's own {float(torch.topk(out.logits[k][0].float(), 2).values.diff().abs()):.3g})")


def main():
    torch.set_num_threads(2)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    h = Harness("hf_llama_parity")
    work = tempfile.mkdtemp(prefix="hf_llama_")
    try:
        cases = [(fx, fx.get("vocab", gl.N_TOKENS)) for fx in gl.FIXTURES]
        if os.environ.get("QUICK", "") in ("", "0"):
            cases += [(fx, fx["vocab"]) for fx in REAL]
        for n, (fx, vocab) in enumerate(cases):
            torch.manual_seed(500 + n)
            if fx.get("real"):   # transformers' own initialisation: std 0.02, norms 1
                model = gl.make_model(fx, vocab, n_ctx=fx["n_ctx"], std=0.02)
            else:
                model = gl.make_model(fx, vocab)
                gl.perturb(model, torch.Generator().manual_seed(500 + n))
            check_model(h, fx, model, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    h.done()


if __name__ == "__main__":
    main()
