"""A tiny test harness shared by the Python test runners (standard library only).

Usage:
    from harness import Harness
    h = Harness("engine")
    h.check("greedy ids match", got == want, f"got {got} want {want}")
    h.done()            # prints "N passed, N failed" and exits non-zero on failure
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "run")


class Harness:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.verbose = os.environ.get("VERBOSE", "") not in ("", "0")

    def check(self, what, ok, detail=""):
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"  ok   {what}")
        else:
            self.failed += 1
            msg = f"  FAIL {what}"
            if detail:
                msg += "\n       " + str(detail).replace("\n", "\n       ")
            print(msg, flush=True)
        return ok

    def done(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def run_cmd(args, input=None, timeout=300, env=None):
    """Run a command; returns CompletedProcess with bytes stdout/stderr."""
    if isinstance(input, str):
        input = input.encode()
    return subprocess.run(args, input=input, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=env)
