#!/usr/bin/env python3
"""Live check (make test-hf) of the second round of views against transformers,
on freshly made random models:

- --logit-lens: for every position and every layer, the top token and its
  probability equal transformers' output_hidden_states pushed through the
  model's final norm (and OPT-350m's project_out) and its lm_head; the last
  hidden state, which transformers returns already normalised, gives the
  model's logits. Models of six families: GPT-2, GPT-Neo (local layers),
  GPT-NeoX (parallel residual, rotary), OPT (post-LN with project_in/out),
  Llama (grouped-query attention), Qwen2 (q/k/v biases).
- --trace: every step (ln_1, q, k, v, scores, softmax, weighted sum,
  projection, x + attention, ln_2, the MLP's hidden layer and output, the
  residual, ln_f, logits) equals transformers' intermediate values, read
  with forward hooks, on a random GPT-2.
- --value-weighted: each weight times the norm of the value it reads (the
  values from c_attn's output), renormalised, equals run's matrix.
- The page of a 12-layer, 12-head model over 200 tokens: its size, and it
  renders in headless Chromium (144 grid cells, no console error).
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import torch
from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoConfig, GPTNeoForCausalLM, GPTNeoXConfig,
                          GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(2)
h = Harness("hf_views_parity")
seed = int(os.environ.get("HF_PARITY_SEED", random.randrange(1 << 30)))
print(f"  seed {seed} (HF_PARITY_SEED={seed} repeats this run)")
rng = random.Random(seed)
work = tempfile.mkdtemp(prefix="hf-views-")
TOKDIR = os.path.join(ROOT, "tests", "fixtures", "hub_like_st", "hf")
V = 320


def save(model, name):
    d = os.path.join(work, name)
    model.save_pretrained(d)
    for fn in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(TOKDIR, fn), d)
    ckpt = os.path.join(work, name + ".bin")
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", d, ckpt])
    return ckpt if h.check(f"{name}: export", p.returncode == 0, p.stderr[-500:]) else None


def family_models():
    H = rng.choice([2, 4])
    C = H * rng.choice([8, 16])
    L = rng.randint(2, 3)
    common = dict(vocab_size=V, bos_token_id=0, eos_token_id=0)
    yield "gpt2", GPT2LMHeadModel(GPT2Config(n_layer=L, n_head=H, n_embd=C, n_positions=64, initializer_range=0.2,
                                              **common)), lambda m: (m.transformer.ln_f, None)
    yield "gpt_neo", GPTNeoForCausalLM(GPTNeoConfig(num_layers=L, num_heads=H, hidden_size=C, max_position_embeddings=64,
                                                     attention_types=[[["global", "local"], L // 2]] + [[["global"], 1]] * (L % 2),
                                                     window_size=5, initializer_range=0.1, **common)), \
        lambda m: (m.transformer.ln_f, None)
    yield "gpt_neox", GPTNeoXForCausalLM(GPTNeoXConfig(num_hidden_layers=L, num_attention_heads=H, hidden_size=C,
                                                       intermediate_size=4 * C, max_position_embeddings=64,
                                                       rotary_pct=0.5, use_parallel_residual=True,
                                                       initializer_range=0.1, **common)), \
        lambda m: (m.gpt_neox.final_layer_norm, None)
    yield "opt (post-LN, project_in/out)", OPTForCausalLM(OPTConfig(
        num_hidden_layers=L, num_attention_heads=H, hidden_size=C, ffn_dim=4 * C, word_embed_proj_dim=C // 2,
        max_position_embeddings=64, do_layer_norm_before=False, init_std=0.1, pad_token_id=1, **common)), \
        lambda m: (m.model.decoder.final_layer_norm, m.model.decoder.project_out)
    yield "llama (GQA)", LlamaForCausalLM(LlamaConfig(num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=H // 2,
                                                      hidden_size=C, intermediate_size=3 * C, max_position_embeddings=64,
                                                      initializer_range=0.1, tie_word_embeddings=False, **common)), \
        lambda m: (m.model.norm, None)
    yield "qwen2", Qwen2ForCausalLM(Qwen2Config(num_hidden_layers=L, num_attention_heads=H, num_key_value_heads=H // 2,
                                                hidden_size=C, intermediate_size=3 * C, max_position_embeddings=64,
                                                initializer_range=0.1, tie_word_embeddings=True, **common)), \
        lambda m: (m.model.norm, None)


def parse_lens(text):
    rows = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) == 6 and not line.startswith("#"):
            rows[(int(f[0]), -1 if f[2] == "emb" else int(f[2]))] = (int(f[3]), float(f[5]))
    return rows


# --- the logit lens on six families ---------------------------------------------------
for case, (name, model, parts) in enumerate(family_models()):
    torch.manual_seed(seed + case)
    for p_ in model.parameters():  # random weights everywhere, norms included
        p_.data.normal_(0, 0.3 if p_.dim() > 1 else 0.5).add_(1.0 if p_.dim() == 1 and p_.numel() == model.config.hidden_size else 0)
    model = model.eval()
    ckpt = save(model, f"m{case}")
    if not ckpt:
        continue
    ids = [rng.randrange(V - 20) for _ in range(rng.randint(8, 40))]
    ref = type(model).from_pretrained(os.path.join(work, f"m{case}"), attn_implementation="eager").eval()
    norm, project_out = parts(ref)
    with torch.no_grad():
        out = ref(torch.tensor([ids]), output_hidden_states=True)
        hs = out.hidden_states
        L = len(hs) - 1
        want = []
        for k in range(L):
            x = hs[k][0]
            if norm is not None:
                x = norm(x)
            if project_out is not None:
                x = project_out(x)
            want.append(ref.get_output_embeddings()(x))
        want.append(out.logits[0])
    p = run_cmd([RUN, ckpt, "--ids", "-p", " ".join(map(str, ids)), "-n", "0", "--logit-lens"])
    if not h.check(f"{name}: --logit-lens exits 0", p.returncode == 0, p.stderr):
        continue
    got = parse_lens(p.stdout.decode("utf-8", "replace"))
    h.check(f"{name}: a row for every position and layer", len(got) == len(ids) * (L + 1), (len(got), len(ids), L))
    worst, bad = 0.0, []
    for k in range(L + 1):
        probs = torch.softmax(want[k].double(), -1)
        for i in range(len(ids)):
            tid, pr = got.get((i, k - 1), (-1, 0.0))
            top = torch.topk(want[k][i], 2)
            tie = float(top.values[0] - top.values[1]) < 1e-4 * max(1.0, float(want[k][i].abs().max()))
            if tid != int(top.indices[0]) and not (tie and tid == int(top.indices[1])):
                bad.append((i, k - 1, tid, int(top.indices[0])))
            worst = max(worst, abs(pr - float(probs[i, tid])) if 0 <= tid < V else 1.0)
    h.check(f"{name}: the top token after every layer is transformers' (hidden_states through the final norm "
            f"and lm_head)", not bad, bad[:5])
    h.check(f"{name}: and its probability (worst |diff| {worst:.2g})", worst < 1e-4, worst)
    print(f"  {name}: {L} layers, {len(ids)} tokens, worst |p diff| {worst:.2g}")

# --- the trace and value weighting on a random GPT-2 ------------------------------------
torch.manual_seed(seed + 100)
H = rng.choice([2, 3, 4])
cfg = GPT2Config(n_layer=2, n_head=H, n_embd=H * 8, n_positions=64, vocab_size=V, initializer_range=0.3,
                 bos_token_id=0, eos_token_id=0)
ckpt = save(GPT2LMHeadModel(cfg).eval(), "trace")
ref = GPT2LMHeadModel.from_pretrained(os.path.join(work, "trace"), attn_implementation="eager").eval()
ids = [rng.randrange(V - 20) for _ in range(rng.randint(4, 20))]
C, hd, t = cfg.n_embd, cfg.n_embd // H, len(ids) - 1
seen = {}


def keep(name, take_input=False):
    def hook(module, inp, out):
        seen[name] = (inp[0] if take_input else (out[0] if isinstance(out, tuple) else out))[0].detach()
    return hook


hooks = []
for l, block in enumerate(ref.transformer.h):
    hooks += [block.ln_1.register_forward_hook(keep(f"ln_1 {l}")),
              block.attn.c_attn.register_forward_hook(keep(f"qkv {l}")),
              block.attn.c_proj.register_forward_hook(keep(f"merged {l}", True)),
              block.attn.c_proj.register_forward_hook(keep(f"projection {l}")),
              block.ln_2.register_forward_hook(keep(f"ln_2 {l}")),
              block.mlp.act.register_forward_hook(keep(f"act {l}")),
              block.mlp.register_forward_hook(keep(f"mlp {l}")),
              block.register_forward_hook(keep(f"x {l}"))]
hooks.append(ref.transformer.ln_f.register_forward_hook(keep("ln_f")))
with torch.no_grad():
    out = ref(torch.tensor([ids]), output_attentions=True, output_hidden_states=True)
for hk in hooks:
    hk.remove()
want = [("x = wte+wpe", out.hidden_states[0][0][t])]
for l in range(cfg.n_layer):
    qkv = seen[f"qkv {l}"]
    q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
    scores = (k[:, :hd] @ q[t, :hd]) / hd ** 0.5
    x_before = out.hidden_states[l][0][t]
    want += [("ln_1(x)", seen[f"ln_1 {l}"][t]), ("q", q[t, :hd]), ("k", k[t, :hd]), ("v", v[t, :hd]),
             ("scores", scores), ("softmax", out.attentions[l][0, 0, t, :t + 1]),
             ("weighted sum", seen[f"merged {l}"][t, :hd]), ("projection", seen[f"projection {l}"][t]),
             ("x + attention", x_before + seen[f"projection {l}"][t]), ("ln_2(x)", seen[f"ln_2 {l}"][t]),
             ("act(fc)", seen[f"act {l}"][t]), ("mlp", seen[f"mlp {l}"][t]), ("x", seen[f"x {l}"][t])]
want += [("ln_f(x)", seen["ln_f"][t]), ("logits", out.logits[0][t])]
p = run_cmd([RUN, ckpt, "--ids", "-p", " ".join(map(str, ids)), "-n", "0", "--trace"])
steps = re.findall(r"^  (\S.{12}) (\(.{11}) (.*)$", p.stdout.decode("utf-8", "replace"), re.M)
h.check("--trace: exits 0, every step", p.returncode == 0 and [s[0].strip() for s in steps] == [w[0] for w in want],
        ([s[0].strip() for s in steps], [w[0] for w in want]))
for (name, shape, nums), (wname, ref_vals) in zip(steps, want):
    got = [float(x) for x in nums.replace("...", "").split()]
    n_want = min(6, ref_vals.numel())
    shape_ok = shape.strip().startswith(f"({ref_vals.numel()})")
    ok = len(got) == n_want and all(abs(a - float(b)) <= 1e-4 * max(1.0, abs(float(b)))
                                    for a, b in zip(got, ref_vals[:n_want]))
    h.check(f"--trace {wname.strip()}: shape and first numbers equal transformers'", ok and shape_ok,
            (shape, got, ref_vals[:n_want].tolist()))

# value-weighted: weight times |v_j| from c_attn's values, renormalised
for l in range(cfg.n_layer):
    v = seen[f"qkv {l}"][:, 2 * C:]
    for head in range(H):
        norms = v[:, head * hd:(head + 1) * hd].norm(dim=-1)
        a = out.attentions[l][0, head] * norms[None, :]
        a = a / a.sum(-1, keepdim=True)
        p = run_cmd([RUN, ckpt, "--ids", "-p", " ".join(map(str, ids)), "-n", "0", "--attention", "--value-weighted",
                     "--layer", str(l), "--head", str(head)])
        rows = [[float(x) for x in line.split("\t")[2].split()] for line in p.stdout.decode().splitlines()
                if line and not line.startswith("#")]
        diff = max((abs(x - float(a[i, j])) for i, r in enumerate(rows) for j, x in enumerate(r)), default=1.0)
        h.check(f"--value-weighted L{l} H{head}: equals transformers' weights times |v|, renormalised",
                len(rows) == len(ids) and diff < 2e-5, diff)

# --- the page at 12 layers x 12 heads over 200 tokens --------------------------------------
cfg = GPT2Config(n_layer=12, n_head=12, n_embd=48, n_positions=256, vocab_size=V, bos_token_id=0, eos_token_id=0)
ckpt = save(GPT2LMHeadModel(cfg).eval(), "big")
page = os.path.join(work, "big.html")
ids = [rng.randrange(V - 20) for _ in range(200)]
p = run_cmd([RUN, ckpt, "--ids", "-p", " ".join(map(str, ids)), "-n", "0", "--attention-html", page, "--logit-lens"])
size = os.path.getsize(page) if os.path.exists(page) else 0
print(f"  page for 12 layers x 12 heads x 200 tokens (with the logit lens): {size} bytes ({size / 1e6:.2f} MB)")
h.check("the 12x12x200 page is written and under 5 MB", p.returncode == 0 and 0 < size < 5e6, (p.stderr, size))
chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if chromium and size:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={work}/profile", "--enable-logging=stderr", "--v=0"]
    q = subprocess.run([chromium, *flags, "--virtual-time-budget=20000", "--dump-dom", "file://" + page],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    dom = q.stdout.decode("utf-8", "replace")
    body = re.search(r"<body[^>]*>", dom)
    b = body.group(0) if body else ""
    errors = [x for x in q.stderr.decode("utf-8", "replace").splitlines() if "CONSOLE" in x and ("Uncaught" in x or "ERROR" in x)]
    h.check("12x12x200 page: no script or console error", body is not None and "data-error" not in b and not errors,
            (b, errors[:3]))
    h.check("12x12x200 page: all 144 heads drawn in the grid", 'data-grid="144"' in b, b)
    h.check("12x12x200 page: the matrix drawn whole", f'data-rendered="{200 * 201 // 2}"' in b, b)
shutil.rmtree(work, ignore_errors=True)
h.done()
