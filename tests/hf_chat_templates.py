#!/usr/bin/env python3
"""Chat forms live against transformers (make test-hf): for each form of
tests/chat_forms.py, a directory built now with transformers
(save_pretrained), its apply_chat_template ids for the test conversations
computed now, and tests/test_chat.py's check_form run on them (export.py's
record of the form, `run --tokenize --chat`, `run -i` under a pty). Also
checks that the committed tests/fixtures_chat/*/expected.json is what
transformers gives today.
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from harness import Harness  # noqa: E402
import chat_forms as F  # noqa: E402
import test_chat  # noqa: E402

BUILD = os.path.join(HERE, "build", "hf_chat")


def main():
    h = Harness("hf_chat_templates")
    shutil.rmtree(BUILD, ignore_errors=True)
    os.makedirs(BUILD)
    for name in F.FORMS:
        d = os.path.join(BUILD, name)
        tok = F.build(name, d)
        live = F.expected(tok, name)
        with open(os.path.join(test_chat.FIXTURES, name, "expected.json")) as f:
            committed = json.load(f)
        h.check(f"{name}: the committed expected.json is what apply_chat_template gives now",
                committed == live)
        test_chat.check_form(h, name, d, live, BUILD)
    h.done()


if __name__ == "__main__":
    main()
