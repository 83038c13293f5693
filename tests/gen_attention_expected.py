#!/usr/bin/env python3
"""Write tests/attention/expected.json: the attention weights transformers
computes (output_attentions=True, eager attention) for every layer and head
of two fixtures, on fixed token ids. Run by hand (needs torch and
transformers); the output is committed so `make test` needs neither.

    python3 tests/gen_attention_expected.py
"""
import json
import os

import torch
from transformers import GPT2LMHeadModel

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [
    # fixture, prompt ids (within each fixture's vocabulary and context)
    ("f32_st_basic", [297, 220, 377, 381, 269, 382, 68, 289, 303, 81, 361]),
    ("head5_inner72_bin", [5, 17, 200, 3, 99, 42, 7, 7, 7, 128, 64, 1]),
    ("inv_layer_idx_st", [12, 40, 41, 42, 300, 7, 19]),
]


def main():
    out = {"generated_by": f"tests/gen_attention_expected.py with torch {torch.__version__}", "cases": []}
    for name, ids in CASES:
        hf = os.path.join(HERE, "fixtures", name, "hf")
        model = GPT2LMHeadModel.from_pretrained(hf, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            att = model(torch.tensor([ids]), output_attentions=True).attentions
        # att[layer] is (1, heads, T, T); keep the lower triangle, row by row
        weights = [[[row[: i + 1] for i, row in enumerate(a[0, h].tolist())] for h in range(a.shape[1])] for a in att]
        out["cases"].append({"fixture": name, "ids": ids, "attention": weights})
    with open(os.path.join(HERE, "attention", "expected.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
