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

For the targets whose input is JSON, half the mutations are made on the
parsed JSON (a value replaced, a key added or removed, a list item
duplicated), so that the fuzzer gets past the JSON syntax to the checks
of each setting; the other half are libFuzzer's own byte mutations.
"""
import copy
import json
import os
import random
import sys

import atheris

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
with atheris.instrument_imports(include=["export", "fuzz_export_targets", "zipfile", "json"]):
    import fuzz_export_targets as targets


def dictionary_words():
    words = []
    with open(os.path.join(HERE, "fuzz", "export.dict"), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith('"\\"') and line.endswith('\\""'):
                words.append(line[3:-3])
    return words or ["type"]


WORDS = dictionary_words()
SCALARS = [None, True, False, 0, 1, -1, 2, 3, 4, 8, 255, 256, 4096, 4097, 50256, 1 << 16, 1 << 20,
           (1 << 24) - 1, 1 << 24, 1 << 31, 1 << 32, 1 << 63, 1 << 64, 10 ** 30, 0.0, -0.0, 0.5, 1.0,
           1e-5, 1e38, 1e308, "", " ", "a", "Ġ", "<|endoftext|>", "\u00e9", "\ud800"]


def json_segments(name, data):
    """[(start, end)] of the parts of `data` that target `name` reads as JSON."""
    if name in ("config_json", "tokenizer_json", "shard_index"):
        return [(0, len(data))]
    if name == "safetensors":
        return [(1, len(data))] if data and data[0] & 1 else []
    if name == "vocab_merges":
        end = data.find(b"\x00")
        return [(0, len(data) if end < 0 else end)]
    if name == "tokenizer_config" and data:
        out, start = [], 1
        for _ in range(3):
            end = data.find(b"\x00", start)
            out.append((start, len(data) if end < 0 else end))
            if end < 0:
                break
            start = end + 1
        return out
    return []


def nodes(value, out):
    """Every (container, key) in a JSON value."""
    if isinstance(value, dict):
        for k in value:
            out.append((value, k))
            nodes(value[k], out)
    elif isinstance(value, list):
        for i in range(len(value)):
            out.append((value, i))
            nodes(value[i], out)
    return out


MAX_DEPTH = 100


def depth(value):
    """How deeply a JSON value nests (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v)
    return deepest


def new_value(rng, doc):
    r = rng.random()
    if r < 0.45:
        return rng.choice(SCALARS)
    if r < 0.7:
        return rng.choice(WORDS)
    if r < 0.8:
        return {"type": rng.choice(WORDS)}
    if r < 0.9:
        found = nodes(doc, [])
        if found:
            c, k = rng.choice(found)
            return copy.deepcopy(c[k])
    return rng.choice([[], {}, [rng.choice(SCALARS)], {rng.choice(WORDS): rng.choice(SCALARS)}])


def mutate_json(doc, rng):
    found = nodes(doc, [])
    containers = [doc] if isinstance(doc, (dict, list)) else []
    containers += [c[k] for c, k in found if isinstance(c[k], (dict, list))]
    op = rng.randrange(4)
    if op == 0 and found:                       # replace a value
        c, k = rng.choice(found)
        c[k] = new_value(rng, doc)
    elif op == 1 and found:                     # remove a key or item
        c, k = rng.choice(found)
        del c[k]
    elif op == 2 and containers:                # add a key or item
        c = rng.choice(containers)
        if isinstance(c, dict):
            c[rng.choice(WORDS)] = new_value(rng, doc)
        else:
            c.insert(rng.randrange(len(c) + 1), new_value(rng, doc))
    elif containers:                            # duplicate or reverse a list / set a key twice
        lists = [c for c in containers if isinstance(c, list) and c]
        if lists:
            c = rng.choice(lists)
            if rng.random() < 0.5:
                c.append(copy.deepcopy(rng.choice(c)))
            else:
                c.reverse()
    else:
        doc = new_value(rng, doc)
    return doc


def make_mutator(name):
    def mutator(data, max_size, seed):
        rng = random.Random(seed)
        segs = json_segments(name, data)
        if segs and rng.random() < 0.5:
            start, end = rng.choice(segs)
            try:
                doc = json.loads(data[start:end])
            except (ValueError, RecursionError):
                doc = None
            if doc is not None or data[start:end].strip() == b"null":
                # Copying a node into its own subtree nests the document
                # deeper with each generation; past MAX_DEPTH the mutator
                # would overflow Python's stack itself (deepcopy, dumps), so
                # such a document falls back to byte mutation. export.py's
                # own limit (64 levels) stays inside what is generated.
                try:
                    doc = mutate_json(doc, rng)
                    text = None
                    if depth(doc) <= MAX_DEPTH:
                        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5,
                                          indent=None if rng.random() < 0.8 else 2)
                except RecursionError:
                    text = None
                if text is not None:
                    out = data[:start] + text.encode("utf-8", "surrogatepass") + data[end:]
                    if len(out) <= max_size:
                        return out
        return atheris.Mutate(data, max_size)
    return mutator


def main():
    # For libFuzzer's -merge=1, which runs argv[0] again with its own
    # arguments: FUZZ_EXPORT_TARGET names the target, FUZZ_EXPORT_SELF a
    # script that runs this one in the venv.
    sys.argv[0] = os.environ.get("FUZZ_EXPORT_SELF", sys.argv[0])
    name = os.environ.get("FUZZ_EXPORT_TARGET")
    if not name:
        if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
            sys.exit(f"usage: {sys.argv[0]} TARGET [libFuzzer options] [corpus dirs]\n"
                     f"targets: {', '.join(targets.TARGETS)}")
        name = sys.argv.pop(1)
    elif name not in targets.TARGETS:
        sys.exit(f"FUZZ_EXPORT_TARGET={name}: not a target ({', '.join(targets.TARGETS)})")
    targets.limit_memory()

    def one_input(data):
        targets.run_target(name, data)

    if json_segments(name, b"\x01"):
        atheris.Setup(sys.argv, one_input, custom_mutator=make_mutator(name))
    else:
        atheris.Setup(sys.argv, one_input)
    try:
        atheris.Fuzz()
    finally:
        targets.cleanup()


if __name__ == "__main__":
    main()
