#!/usr/bin/env python3
"""atheris harness for export.py's parsers: one target per run.

    python tests/fuzz_export.py TARGET [libFuzzer options] [corpus dirs...]

TARGET is one of tests/fuzz_export_targets.py's TARGETS (safetensors,
torch_zip, torch_pickle, shard_index, config_json, tokenizer_json,
vocab_merges, tokenizer_config); `make fuzz-export FUZZ_SECONDS=60` runs
each in turn on tests/fuzz/export/TARGET/ in a venv with atheris.  Any
exception that escapes the target (anything but export.py's own clean
refusal) is a crash: libFuzzer writes the input to -artifact_prefix, and
the input belongs in tests/fuzz/export/TARGET/ once export.py is fixed
(tests/test_fuzz_export.py replays that directory in make test).
"""
import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
with atheris.instrument_imports(include=["export", "fuzz_export_targets", "zipfile", "json"]):
    import fuzz_export_targets as targets


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer options] [corpus dirs]\n"
                 f"targets: {', '.join(targets.TARGETS)}")
    name = sys.argv.pop(1)
    targets.limit_memory()

    def one_input(data):
        targets.run_target(name, data)

    atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        targets.cleanup()


if __name__ == "__main__":
    main()
