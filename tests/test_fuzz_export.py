#!/usr/bin/env python3
"""Replay of export.py's fuzz corpus (standard library only; no atheris).

Every file under tests/fuzz/export/<target>/ goes once through the same
entry point the atheris harness (tests/fuzz_export.py) fuzzes, from
tests/fuzz_export_targets.py, and must keep the contract: export.py
accepts the input, or refuses it with an ExportError whose one-line message
names a file of the model directory; never another exception, never more
than TIMEOUT seconds, never more memory than the address-space cap allows.

Files named crash-* are inputs that once broke that contract (each fixed
in export.py): they must be refused.  Each target must also accept at
least one of its inputs and refuse at least one, so a target that no
longer reaches export.py's parser (or its success path) fails here; and
the contract check itself is tried on targets that break it.
"""
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness  # noqa: E402

import fuzz_export_targets as targets  # noqa: E402

h = Harness("fuzz_export")
MAX_CORPUS_BYTES = 2 << 20


class Hang(BaseException):
    """Raised by the alarm: not an Exception, so no `except Exception` in export.py swallows it."""


def _alarm(_signum, _frame):
    raise Hang("still running after the time limit")


def replay(name, data, timeout=targets.TIMEOUT):
    """(verdict, None) or (None, the failure's traceback) for one input."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        return targets.run_target(name, data), None
    except BaseException:
        return None, traceback.format_exc(limit=-6)
    finally:
        signal.alarm(0)


def self_test():
    """The contract check fails where it should (a test that cannot fail is a defect)."""
    def raises(exc):
        def target(_data):
            targets.workdir("self_test").write({})
            raise exc
        return target

    d = targets.workdir("self_test").dir
    cases = [("an IndexError escapes", raises(IndexError("x")), IndexError),
             ("a RecursionError escapes", raises(RecursionError()), RecursionError),
             ("a refusal naming no file", raises(targets.export.ExportError("bad input")),
              targets.ContractError),
             ("a refusal naming a file elsewhere", raises(targets.export.ExportError(
                 f"{os.path.dirname(d)}/other/config.json: bad input")), targets.ContractError)]
    for what, target, want in cases:
        targets.TARGETS["self_test"] = target
        try:
            targets.run_target("self_test", b"")
            got = None
        except BaseException as e:   # noqa: B902 - what escapes is the point
            got = type(e)
        finally:
            del targets.TARGETS["self_test"]
        h.check(f"contract check: {what} is a failure", got is want, f"got {got}")
    targets.TARGETS["self_test"] = lambda _data: targets.workdir("self_test").write({})
    try:
        h.check("contract check: success is ok", targets.run_target("self_test", b"") == "ok")
    finally:
        del targets.TARGETS["self_test"]
    v, err = None, None
    targets.TARGETS["self_test"] = lambda _data: time.sleep(30)
    try:
        t0 = time.time()
        v, err = replay("self_test", b"", timeout=1)
    finally:
        del targets.TARGETS["self_test"]
    h.check("contract check: a hang is a failure", v is None and "Hang" in (err or "")
            and time.time() - t0 < 10, err)


def main():
    targets.limit_memory()
    self_test()
    total = 0
    for name in targets.TARGETS:
        d = os.path.join(targets.CORPUS, name)
        files = sorted(os.listdir(d)) if os.path.isdir(d) else []
        h.check(f"{name}: corpus directory has inputs", files, d)
        verdicts = {"ok": 0, "refused": 0}
        t0 = time.time()
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                data = fh.read()
            total += len(data)
            v, err = replay(name, data)
            if h.check(f"{name}/{f}", v is not None, err):
                verdicts["ok" if v == "ok" else "refused"] += 1
                if f.startswith("crash-"):
                    h.check(f"{name}/{f}: the former crasher is refused", v.startswith("refused"), v)
        h.check(f"{name}: some input is accepted", verdicts["ok"] > 0, verdicts)
        h.check(f"{name}: some input is refused", verdicts["refused"] > 0, verdicts)
        print(f"  {name}: {len(files)} inputs, {verdicts['ok']} accepted, {verdicts['refused']} refused "
              f"({time.time() - t0:.1f} s)", flush=True)
    h.check(f"the corpus is under {MAX_CORPUS_BYTES} bytes", total < MAX_CORPUS_BYTES, total)
    unknown = sorted(set(os.listdir(targets.CORPUS)) - set(targets.TARGETS))
    h.check("every corpus directory is a target's", not unknown, unknown)
    targets.cleanup()
    h.done()


if __name__ == "__main__":
    main()
