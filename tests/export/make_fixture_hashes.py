#!/usr/bin/env python3
"""Write tests/export/fixture_weights.json: for every fixture in tests/fixtures/,
the sha256 of the float32 weights section that export.py must produce, computed
independently with torch + transformers (run by hand; test_export.py reads the
result without torch):

    python3 tests/export/make_fixture_hashes.py

The section is built from the model transformers loads (dtype float32), in the
order and layout of tests/SPEC.md section 1: Conv1D weights transposed to
[out, in], every tensor padded with zeros to a multiple of 64 bytes, lm_head
only when it differs from wte.  Re-run it whenever the fixtures are regenerated.
"""
import hashlib
import json
import os

import torch
from transformers import GPT2LMHeadModel, GPT2Model

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")


def section(model, untied):
    sd = {k[len("transformer."):] if k.startswith("transformer.") else k: v
          for k, v in model.state_dict().items()}
    names = ["wte.weight", "wpe.weight"]
    for l in range(model.config.n_layer):
        names += [f"h.{l}.{n}" for n in (
            "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
            "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
            "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    names += ["ln_f.weight", "ln_f.bias"] + (["lm_head.weight"] if untied else [])
    out = hashlib.sha256()
    for n in names:
        t = sd[n].detach().to(torch.float32)
        if n.rsplit(".", 2)[-2] in ("c_attn", "c_proj", "c_fc") and n.endswith("weight"):
            t = t.t()
        raw = t.contiguous().numpy().astype("<f4").tobytes()
        out.update(raw + bytes(-len(raw) % 64))
    return out.hexdigest()


def main():
    result = {}
    for name in sorted(os.listdir(FIXTURES)):
        hf = os.path.join(FIXTURES, name, "hf")
        if not os.path.isdir(hf):
            continue
        cfg = json.load(open(os.path.join(hf, "config.json")))
        cls = GPT2Model if cfg.get("architectures") == ["GPT2Model"] else GPT2LMHeadModel
        model = cls.from_pretrained(hf, dtype=torch.float32)
        untied = (cls is GPT2LMHeadModel and
                  not torch.equal(model.lm_head.weight, model.transformer.wte.weight))
        result[name] = {"weights_sha256": section(model, untied), "untied": int(untied)}
        print(name, result[name])
    with open(os.path.join(HERE, "fixture_weights.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
