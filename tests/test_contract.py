#!/usr/bin/env python3
"""One contract between export.py and run (standard library only).

1. The header's edges: for every header field, values at and just past each
   end of its range go through export.py's config reader and through run
   (a valid checkpoint with that one field patched); both accept the value or
   both refuse it, naming the field.
2. Edge models (tests/contract/, made by tests/gen_contract.py with
   transformers): layer_norm_epsilon 0, one head, head sizes 1 and 3, an odd
   n_inner, a context of one position, a byte-only vocabulary, each
   activation. export.py exports each, run loads it, and its logits at every
   position equal transformers' to 1e-4 x max|logit|, with the fast kernels
   and with --plain-kernels.
"""
import json
import math
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

sys.path.insert(0, ROOT)
import export  # noqa: E402

h = Harness("contract")
CONTRACT = os.path.join(ROOT, "tests", "contract")
tmp = tempfile.mkdtemp(prefix="contract-")
EXPORT = [sys.executable, os.path.join(ROOT, "export.py"), "-q"]


def export_dir(hfdir, out):
    return run_cmd([*EXPORT, hfdir, out])


# --- 1. the header's edges ----------------------------------------------------

BASE = os.path.join(CONTRACT, "eps0_gelu_new", "hf")
base_bin = os.path.join(tmp, "base.bin")
p = export_dir(BASE, base_bin)
h.check("the base edge model exports", p.returncode == 0, p.stderr)
header = bytearray(open(base_bin, "rb").read()) if p.returncode == 0 else bytearray(256)
base_cfg = json.load(open(os.path.join(BASE, "config.json")))


def export_verdict(changes):
    """export.py's config reader on the base config with `changes`: None when
    it accepts, else its message."""
    d = os.path.join(tmp, "cfg")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = dict(base_cfg, **changes)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    try:
        export.read_config(d)
        return None
    except export.ExportError as e:
        return str(e)


def run_verdict(offset, fmt, value):
    """run on the base checkpoint with one header field patched: (exit code, stderr)."""
    data = bytearray(header)
    struct.pack_into(fmt, data, offset, value)
    path = os.path.join(tmp, "patched.bin")
    with open(path, "wb") as f:
        f.write(data)
    p = run_cmd([RUN, path, "--tokenize", "-p", "a"])
    return p.returncode, p.stderr.decode("utf-8", "replace")


# (config key, header offset, run's name for it, largest value), SPEC order
SIZES = [("n_layer", 16, "n_layer", 4096), ("n_head", 20, "n_head", 4096), ("n_embd", 24, "n_embd", 1 << 16),
         ("n_inner", 28, "n_inner", 1 << 20), ("n_positions", 32, "n_ctx", 1 << 20),
         ("vocab_size", 36, "vocab_size", 1 << 24)]
for key, off, name, limit in SIZES:
    for value in (0, 1, limit, limit + 1):
        changes = {key: value}
        if key == "n_head":
            changes["n_embd"] = max(value, 1)  # keep n_embd a multiple of n_head
        if key == "n_embd":
            changes["n_head"] = 1
        e = export_verdict(changes)
        export_range = e is not None and f"{key} must be" in e
        rc, err = run_verdict(off, "<I", value)
        run_range = f"{name} = {value} is out of range" in err
        in_range = 1 <= value <= limit
        h.check(f"{key} = {value}: export.py and run agree ({'accepted' if in_range else 'refused'})",
                export_range == run_range == (not in_range), f"export: {e}\nrun: exit {rc} {err}")

# layer_norm_epsilon, as the header's float32 holds it
for eps, ok in ((0.0, True), (1e-12, True), (0.5, True), (0.99999999, False), (1.0, False), (-1e-6, False)):
    e = export_verdict({"layer_norm_epsilon": eps})
    rc, err = run_verdict(40, "<f", eps)
    run_ok = "layer_norm_epsilon" not in err
    h.check(f"layer_norm_epsilon {eps!r}: export.py and run agree ({'accepted' if ok else 'refused'})",
            (e is None) == run_ok == ok, f"export: {e}\nrun: exit {rc} {err}")

# every activation export.py writes is one run knows, and no other
for act, code in export.ACTIVATIONS.items():
    e = export_verdict({"activation_function": act})
    rc, err = run_verdict(44, "<I", code)
    h.check(f"activation {act} (code {code}): export.py writes it, run accepts it", e is None and rc == 0, (e, err))
rc, err = run_verdict(44, "<I", max(export.ACTIVATIONS.values()) + 1)
h.check("the next activation code: run refuses it", rc == 3 and "activation" in err, err)
e = export_verdict({"activation_function": "tanh"})
h.check("an activation run does not know: export.py refuses it", e is not None and "activation_function" in e, e)

# eos/bos ids: export records an id past the vocabulary as none (-1), which run accepts
e = export_verdict({"eos_token_id": 256, "bos_token_id": 255})
rc, err = run_verdict(52, "<i", -1)
h.check("eos -1 (none): run accepts it", rc == 0, err)
rc, err = run_verdict(52, "<i", 256)
h.check("eos = vocab_size: run refuses it (export.py never writes it)", rc == 3 and "eos_token_id" in err, err)

# --- 2. the edge models against transformers ----------------------------------


def read_f32(path):
    data = open(path, "rb").read()
    return struct.unpack("<%df" % (len(data) // 4), data)


names = sorted(d for d in os.listdir(CONTRACT) if os.path.isdir(os.path.join(CONTRACT, d)))
h.check("the edge models are there", len(names) >= 6, names)
for name in names:
    fdir = os.path.join(CONTRACT, name)
    exp = json.load(open(os.path.join(fdir, "expected.json")))
    want = read_f32(os.path.join(fdir, "logits.f32"))
    out = os.path.join(tmp, name + ".bin")
    p = export_dir(os.path.join(fdir, "hf"), out)
    if not h.check(f"{name}: export.py exports it ({exp['about']})", p.returncode == 0, p.stderr):
        continue
    ids = " ".join(map(str, exp["ids"]))
    for kernels in ([], ["--plain-kernels"]):
        dump = os.path.join(tmp, name + ".logits")
        p = run_cmd([RUN, out, "--score", "--ids", "--dump-logits", dump, *kernels], input=ids)
        what = f"{name}{' ' + kernels[0] if kernels else ''}"
        if exp["n_positions"] == 1:  # each chunk is one token: logits, but nothing to predict
            h.check(f"{what}: --score says a context of 1 predicts nothing (exit 4)",
                    p.returncode == 4 and b"no token to predict" in p.stderr, p.stderr)
        else:
            h.check(f"{what}: --score runs", p.returncode == 0, p.stderr)
        got = read_f32(dump) if os.path.exists(dump) else ()
        bound = 1e-4 * max(abs(v) for v in want)
        worst = max((abs(a - b) for a, b in zip(got, want)), default=math.inf)
        h.check(f"{what}: logits at all {len(exp['ids'])} positions equal transformers' (worst {worst:.2e}, "
                f"bound {bound:.2e})", len(got) == len(want) and worst <= bound, (len(got), len(want), worst))

shutil.rmtree(tmp, ignore_errors=True)
h.done()
