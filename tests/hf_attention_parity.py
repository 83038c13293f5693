#!/usr/bin/env python3
"""Live check (make test-hf): the weights `run --attention` prints equal what
transformers returns with output_attentions=True, on freshly made random
models, for every layer and head; each printed row sums to 1."""
import os
import random
import shutil
import sys
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

hf_logging.set_verbosity_error()
h = Harness("hf_attention_parity")
seed = int(os.environ.get("HF_PARITY_SEED", random.randrange(1 << 30)))
print(f"  seed {seed} (HF_PARITY_SEED={seed} repeats this run)")
rng = random.Random(seed)
work = tempfile.mkdtemp(prefix="hf-attn-")

for case in range(3):
    n_head = rng.choice([1, 2, 3, 4, 6])
    cfg = GPT2Config(n_layer=rng.randint(1, 3), n_head=n_head, n_embd=n_head * rng.choice([4, 8, 16]),
                     n_positions=rng.choice([16, 32, 48]), vocab_size=320, initializer_range=0.3,
                     scale_attn_by_inverse_layer_idx=rng.random() < 0.3, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(seed + case)
    model = GPT2LMHeadModel(cfg).eval()
    d = os.path.join(work, f"m{case}")
    model.save_pretrained(d)
    for name in ("vocab.json", "merges.txt"):  # a fixture's 320-token byte-level vocabulary
        src = os.path.join(ROOT, "tests", "fixtures", "hub_like_st", "hf", name)
        with open(src, "rb") as f, open(os.path.join(d, name), "wb") as g:
            g.write(f.read())
    ckpt = os.path.join(work, f"m{case}.bin")
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", d, ckpt])
    if not h.check(f"case {case}: export", p.returncode == 0, p.stderr):
        continue
    ids = [rng.randrange(300) for _ in range(rng.randint(2, cfg.n_positions))]
    model = GPT2LMHeadModel.from_pretrained(d, attn_implementation="eager").eval()
    with torch.no_grad():
        att = model(torch.tensor([ids]), output_attentions=True).attentions
    worst = 0.0
    for layer in range(cfg.n_layer):
        for head in range(cfg.n_head):
            p = run_cmd([RUN, ckpt, "--ids", "-p", " ".join(map(str, ids)), "-n", "0", "--attention",
                         "--layer", str(layer), "--head", str(head)])
            rows = [[float(x) for x in line.split("\t")[2].split()]
                    for line in p.stdout.decode().splitlines() if line and not line.startswith("#")]
            want = att[layer][0, head]
            ok = len(rows) == len(ids) and all(len(r) == i + 1 for i, r in enumerate(rows))
            diff = max(abs(r[j] - float(want[i, j])) for i, r in enumerate(rows) for j in range(len(r))) if ok else 1.0
            worst = max(worst, diff)
            h.check(f"case {case} L{layer} H{head}: equals output_attentions", ok and diff < 2e-5, f"max diff {diff}")
            h.check(f"case {case} L{layer} H{head}: rows sum to 1",
                    ok and all(abs(sum(r) - 1) < 1e-5 * len(r) + 1e-6 for r in rows))
    print(f"  case {case}: {cfg.n_layer} layers x {cfg.n_head} heads, {len(ids)} tokens, max |diff| {worst:.2g}")
shutil.rmtree(work, ignore_errors=True)
h.done()
