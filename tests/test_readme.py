#!/usr/bin/env python3
"""README.md points into run.c by line number ("`name` ([run.c:N](run.c#LN))");
each such line must still hold what the README says it does, and every
option of run must be in the README's table."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT  # noqa: E402

h = Harness("readme")
readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
lines = open(os.path.join(ROOT, "run.c"), encoding="utf-8").read().split("\n")

refs = re.findall(r"`([^`]+)` \(\[run\.c:(\d+)\]\(run\.c#L(\d+)\)\)", readme)
h.check("the README points into run.c", len(refs) >= 10, len(refs))
for name, n, anchor in refs:
    n = int(n)
    text = name.rstrip("()")
    h.check(f"run.c:{n} holds `{text}`", n == int(anchor) and 0 < n <= len(lines) and text in lines[n - 1],
            f"line {n}: {lines[n - 1] if 0 < n <= len(lines) else '(none)'}")

src = "\n".join(lines)
for opt in re.findall(r'\{"([a-z-]+)", (?:no|required)_argument', src):
    h.check(f"README documents --{opt}", f"--{opt}" in readme)
h.done()
