#!/usr/bin/env python3
"""Writes tests/fixtures_chat/: for each chat form of tests/chat_forms.py, a
tiny random GPT-2 directory with that form's tokenizer and chat template
(save_pretrained) and expected.json, the ids transformers'
apply_chat_template gives for the test conversations.  Needs transformers
(the .venv-hf of `make test-hf`):

    .venv-hf/bin/python tests/gen_chat_fixtures.py

tests/test_chat.py replays them in `make test`; tests/hf_chat_templates.py
checks the same live in `make test-hf`.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import chat_forms as F  # noqa: E402

OUT = os.path.join(HERE, "fixtures_chat")


def main():
    for name in F.FORMS:
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        tok = F.build(name, os.path.join(d, "hf"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(F.expected(tok, name), f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"{name}: {sorted(os.listdir(os.path.join(d, 'hf')))}")


if __name__ == "__main__":
    main()
