#!/usr/bin/env python3
"""bench.py: `make bench` -- speed of `run` against transformers on the CPU.

    python tests/bench.py [--quick] [--reps N] [--models 124M,355M] [--threads 1,2]
                          [--run PATH] [--rebuild] [--no-hf] [--compare PATH] [--json PATH]

What it does (issue 5):
  1. builds tests/build/bench/bench_membw and bench_flops (if missing or older
     than their sources) and measures this machine's memory read bandwidth
     and float32 FMA peak, with 1 and 2 threads (best of several passes);
  2. makes random-weight GPT-2 models of the exact shapes of GPT-2 124M and
     355M with transformers (save_pretrained, safetensors) and exports them
     with export.py, in tests/build/bench/ (cached: later runs reuse them);
     --models also takes the real shapes of the other families (issue 13):
     gpt-neo-125m, pythia-160m, opt-125m, smollm2-135m, qwen2.5-0.5b (checkpoint format version 2);
  3. repeats, interleaved within each repetition so that both sides see the
     same machine load: `run` (a fresh process per measurement) and
     transformers (one long-lived worker process per model and thread count,
     torch.set_num_threads(T), model.generate with its KV cache, greedy) on
     the same token ids -- a 128-token prompt followed by 128 generated
     tokens, and a 512-token prompt followed by one token;
  4. prints one table of medians: prefill tokens/s (128 and 512 tokens),
     decode tokens/s, peak RSS, ours, theirs and the median of the per-
     repetition ratios ours/theirs, with decode's effective bandwidth and
     prefill's GFLOP/s as fractions of the measured machine limits, and
     checks that concurrent processes share the checkpoint's pages.
With --compare PATH another `run` binary (an older build, say) takes
transformers' place, measured the same way, interleaved: ours/theirs is then
this build against that one.

Timing definitions (the same for both sides):
  prefill  from the start of the prompt's forward pass to the logits of its
           last position (ours: `run -v`'s "prompt:" line; transformers: from
           calling generate() to the first call of a logits processor).
  decode   from those logits to the last of N generated tokens: N tokens,
           N-1 forward passes (ours: the "generated N tokens in S s" line;
           transformers: from the first logits-processor call to generate()'s
           return). tokens/s = N / S, as `run -v` prints it. Its GB/s counts
           the weights a token streams: every tensor but the position table
           and, with an untied lm_head (Pythia), the token embedding (one row
           of each is read), so that every family is held to the same bar.
  peak RSS ours: ru_maxrss of each `run` process (os.wait4), the larger of
           the two runs of a repetition; theirs: VmHWM of the worker process,
           which includes loading the model.
The random models have no end-of-text token (eos/bos null in config.json),
so neither side stops before N tokens; every measurement is checked for that.

Figures on a shared machine are noisy: read the spread column.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "tests", "build", "bench")
EXPORT = os.path.join(ROOT, "export.py")

# name: the transformers model type, its config (random weights of that
# shape) and what the exported checkpoint's header must say. GPT2Config's
# defaults are GPT-2 124M (small); 355M is GPT-2 medium. The families are the
# real shapes hf_family_parity.py checks run against (REAL there), in float32.
MODELS = {
    "124M": dict(type="gpt2", config=dict(),
                 expect=dict(version=1, n_layer=12, n_head=12, n_embd=768, vocab_size=50257, n_ctx=1024)),
    "355M": dict(type="gpt2", config=dict(n_layer=24, n_head=16, n_embd=1024),
                 expect=dict(version=1, n_layer=24, n_head=16, n_embd=1024, vocab_size=50257, n_ctx=1024)),
    "gpt-neo-125m": dict(type="gpt_neo", config=dict(
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=None,
        attention_types=[[["global", "local"], 6]], window_size=256, max_position_embeddings=2048,
        vocab_size=50257), expect=dict(version=2, n_layer=12, n_head=12, n_embd=768, vocab_size=50257,
                                       n_ctx=2048)),
    "pythia-160m": dict(type="gpt_neox", config=dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048, vocab_size=50304,
        use_parallel_residual=True, tie_word_embeddings=False),
        expect=dict(version=2, n_layer=12, n_head=12, n_embd=768, vocab_size=50304, n_ctx=2048)),
    "opt-125m": dict(type="opt", config=dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072,
        max_position_embeddings=2048, vocab_size=50272, word_embed_proj_dim=768,
        do_layer_norm_before=True),
        expect=dict(version=2, n_layer=12, n_head=12, n_embd=768, vocab_size=50272, n_ctx=2048)),
    # the Llama-style block (issue 14); contexts cut to 4096 positions (speed does not depend on it)
    "smollm2-135m": dict(type="llama", config=dict(
        hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        intermediate_size=1536, vocab_size=49152, rope_theta=100000.0, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=True),
        expect=dict(version=2, n_layer=30, n_head=9, n_embd=576, vocab_size=49152, n_ctx=4096)),
    "qwen2.5-0.5b": dict(type="qwen2", config=dict(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, rope_theta=1000000.0, max_position_embeddings=4096,
        rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False),
        expect=dict(version=2, n_layer=24, n_head=14, n_embd=896, vocab_size=151936, n_ctx=4096)),
}
DEFAULT_MODELS = ["124M", "355M"]
FAMILIES = "gpt-neo-125m,pythia-160m,opt-125m,smollm2-135m,qwen2.5-0.5b"  # make bench BENCH_ARGS="--models ..."
SEED = 1234
PROMPT_LENS = (128, 512)
DECODE_TOKENS = 128
MB = 1e6  # RSS and sizes in the table are 10^6 bytes
SETTLE_S = 0.2  # pause before each measurement


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------
# Microbenchmarks
# ----------------------------------------------------------------------------

def cc_flags(cc):
    for arch in ("-march=native", "-mcpu=native", None):
        flags = ["-O2"] + ([arch] if arch else []) + ["-std=c11", "-Wall", "-Wextra", "-pthread"]
        probe = subprocess.run([cc] + flags + ["-x", "c", "-E", "-o", os.devnull, os.devnull],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            return flags
    return ["-O2", "-std=c11", "-Wall", "-Wextra", "-pthread"]


def build_micro(name):
    src = os.path.join(ROOT, "tests", f"{name}.c")
    exe = os.path.join(BUILD, name)
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(src):
        return exe
    cc = os.environ.get("CC", "cc")
    cmd = [cc] + cc_flags(cc) + ["-o", exe, src]
    log(" ".join(cmd))
    r = subprocess.run(cmd)
    if r.returncode != 0:
        die(f"cannot build {name}")
    return exe


def parse_kv_line(line):
    parts = line.split()
    if not parts:
        return {}
    d = {"kind": parts[0]}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        try:
            d[k] = int(v)
        except ValueError:
            try:
                d[k] = float(v)
            except ValueError:
                d[k] = v
    return d


def run_micro(exe, args, max_threads):
    r = subprocess.run([exe] + [str(a) for a in args] + [str(max_threads)],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die(f"{exe} failed (exit {r.returncode})")
    return {d["threads"]: d for d in map(parse_kv_line, r.stdout.splitlines()) if d.get("threads")}


def measure_machine(max_threads, passes, prev=None, mib=1024):
    """Best-of-passes memory read bandwidth and FMA peak for 1..max_threads;
    with prev, keeps the better of the old and new figures (the machine's
    limit is the best it ever showed: on a shared machine it is measured at
    the start, briefly after every repetition, and at the end)."""
    membw = run_micro(build_micro("bench_membw"), [mib, passes], max_threads)
    flops = run_micro(build_micro("bench_flops"), ["auto", passes], max_threads)
    out = {}
    for t in range(1, max_threads + 1):
        out[t] = {"membw_GBps": membw[t]["best_GBps"], "membw_median_GBps": membw[t]["median_GBps"],
                  "flops_GFLOPs": flops[t]["best_GFLOPs"], "flops_median_GFLOPs": flops[t]["median_GFLOPs"],
                  "isa": flops[t]["isa"], "vector_bytes": membw[t]["vector_bytes"]}
        if prev and t in prev:
            for k in ("membw_GBps", "flops_GFLOPs"):
                out[t][k] = max(out[t][k], prev[t][k])
    return out


# ----------------------------------------------------------------------------
# Random-weight models, exported
# ----------------------------------------------------------------------------

def model_config(name):
    cfg = dict(MODELS[name]["config"])
    # no end-of-text token: both engines generate exactly N tokens
    cfg.update(bos_token_id=None, eos_token_id=None)
    return cfg


def model_stamp(name):
    stamp = {"config": model_config(name), "seed": SEED}
    if MODELS[name]["type"] != "gpt2":  # (GPT-2's stamp as before: its cached models stay valid)
        stamp["type"] = MODELS[name]["type"]
    return stamp


def build_hf_model(name, hf_dir):
    """(in a subprocess) random weights of the given shape, saved as safetensors."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(SEED)
    config = AutoConfig.for_model(MODELS[name]["type"], **model_config(name))
    model = AutoModelForCausalLM.from_config(config).to(torch.float32).eval()
    tmp = hf_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    # GPT-2's own vocabulary (test data in the repo), or a 385-token one for a
    # model with fewer rows (SmolLM2's 49152); prompts are given as ids, so the
    # tokenizer does not affect speed
    src = (os.path.join(ROOT, "tests", "data", "gpt2") if config.vocab_size >= 50257
           else os.path.join(ROOT, "tests", "fixtures", "f32_st_basic", "hf"))
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(src, f), os.path.join(tmp, f))
    shutil.rmtree(hf_dir, ignore_errors=True)
    os.rename(tmp, hf_dir)


def read_header(path):
    with open(path, "rb") as f:
        h = f.read(256)
        if len(h) != 256 or h[:8] != b"GPT2CKPT":
            return None
        version, header_bytes, L, H, C, F, P, V = struct.unpack_from("<8I", h, 8)
        h += f.read(max(0, min(header_bytes, 1 << 20) - 256))
    flags, eos = struct.unpack_from("<Ii", h, 48)
    tok_off, tok_bytes, w_off, w_bytes, file_bytes = struct.unpack_from("<5Q", h, 56)
    d = {"version": version, "n_layer": L, "n_head": H, "n_embd": C, "n_inner": F, "n_ctx": P,
         "vocab_size": V, "flags": flags, "eos": eos, "weights_offset": w_off,
         "weights_bytes": w_bytes, "file_bytes": file_bytes, "weight_type": 0,
         # version 1 (GPT-2) as version 2 would say it (tests/SPEC.md 1b)
         "family": 0, "block": 0x78, "pos_offset": 0, "rotary_dims": 0, "embed_dim": C,
         "n_kv_head": H, "windows": [0] * L}
    if version == 2 and len(h) >= 256 + 4 * L:
        fam, block, pos_off, rot = struct.unpack_from("<4I", h, 100)
        E, kvh = struct.unpack_from("<2I", h, 120)
        d.update(family=fam, block=block, pos_offset=pos_off, rotary_dims=rot, embed_dim=E,
                 n_kv_head=kvh or H, windows=list(struct.unpack_from(f"<{L}I", h, 256)),
                 weight_type=struct.unpack_from("<I", h, 156)[0])
    return d


def tensors(h):
    """(name, floats) of every tensor, in the file's order (SPEC 1 and 1b)."""
    C, F, V, P, E, b = h["n_embd"], h["n_inner"], h["vocab_size"], h["n_ctx"], h["embed_dim"], h["block"]
    qkv = C + 2 * (C // h["n_head"]) * h["n_kv_head"]
    ln_bias = not b & 0x80
    out = [("wte", V * E)]
    if not b & 4:
        out.append(("wpe", (P + h["pos_offset"]) * C))
    if E < C:
        out.append(("project_in", C * E))
    for l in range(h["n_layer"]):
        layer = [("ln_1.weight", C), ("ln_1.bias", C * ln_bias), ("qkv.weight", qkv * C),
                 ("qkv.bias", qkv * bool(b & 8)), ("proj.weight", C * C), ("proj.bias", C * bool(b & 16)),
                 ("ln_2.weight", C), ("ln_2.bias", C * ln_bias), ("fc.weight", F * C),
                 ("fc.bias", F * bool(b & 32)), ("up.weight", F * C * bool(b & 0x100)),
                 ("fc_proj.weight", C * F), ("fc_proj.bias", C * bool(b & 32))]
        out += [(f"h.{l}.{n}", k) for n, k in layer if k]
    if b & 64:
        out += [("ln_f.weight", C)] + ([("ln_f.bias", C)] if ln_bias else [])
    if E < C:
        out.append(("project_out", E * C))
    if h["flags"] & 1:
        out.append(("lm_head", V * E))
    return out


def pad64(n):
    return (4 * n + 63) // 64 * 64


def row_length(h, name):
    """The row length of a weight matrix (what 8 bits store in blocks of 32), else None."""
    C, F, E = h["n_embd"], h["n_inner"], h["embed_dim"]
    last = name.split(".", 2)[-1] if name.startswith("h.") else name
    return {"wte": E, "lm_head": E, "project_in": E, "project_out": C, "qkv.weight": C,
            "proj.weight": C, "fc.weight": C, "up.weight": C, "fc_proj.weight": F}.get(last)


def tensor_bytes(h, name, n):
    """Bytes of a tensor in the file, padding included (SPEC 1c: an 8-bit
    matrix is n int8 values, padded, then its scales, padded)."""
    cols = row_length(h, name)
    if h.get("weight_type") != 1 or cols is None:
        return pad64(n)
    return (n + 63) // 64 * 64 + pad64(n // cols * ((cols + 31) // 32))


def expected_weight_bytes(h):
    """weights_bytes per tests/SPEC.md section 1 / 1b (every tensor padded to 64 bytes)."""
    return sum(tensor_bytes(h, name, n) for name, n in tensors(h))


def decode_bytes(h):
    """The bytes of weights one decoded token reads: every tensor but the
    position table (one row of it is read) and, when the lm_head is untied
    (Pythia), the token embedding (one row); a tied wte is read whole as the
    lm_head. An 8-bit checkpoint's matrices count as stored (values and scales)."""
    skip = {"wpe"} | ({"wte"} if h["flags"] & 1 else set())
    return sum(tensor_bytes(h, name, n) for name, n in tensors(h) if name not in skip)


def checkpoint_ok(path, name):
    if not os.path.isfile(path):
        return False
    h = read_header(path)
    if not h or h["file_bytes"] != os.path.getsize(path):
        return False
    if any(h[k] != v for k, v in MODELS[name]["expect"].items()) or h["eos"] != -1:
        return False
    return h["weights_bytes"] == expected_weight_bytes(h)


def prepare_model(name, rebuild):
    """Returns (hf_dir, checkpoint path), building what is missing."""
    base = os.path.join(BUILD, f"gpt2-{name}-random" if MODELS[name]["type"] == "gpt2" else f"{name}-random")
    hf_dir, ckpt = base + "-hf", base + ".bin"
    stamp_path = os.path.join(hf_dir, "bench-stamp.json")
    stamp = model_stamp(name)
    have = False
    if not rebuild and os.path.isfile(stamp_path):
        try:
            with open(stamp_path) as f:
                have = json.load(f) == stamp
        except (OSError, ValueError):
            have = False
    if not have:
        log(f"{name}: making random weights with transformers -> {os.path.relpath(hf_dir, ROOT)}")
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, "--build-model", name, hf_dir])
        if r.returncode != 0:
            die(f"building the random {name} model failed")
        with open(stamp_path, "w") as f:
            json.dump(stamp, f)
        log(f"{name}: made in {time.time() - t0:.1f} s")
        if os.path.exists(ckpt):
            os.unlink(ckpt)
    if rebuild or not checkpoint_ok(ckpt, name) or os.path.getmtime(ckpt) < os.path.getmtime(stamp_path):
        log(f"{name}: exporting -> {os.path.relpath(ckpt, ROOT)}")
        t0 = time.time()
        r = subprocess.run([sys.executable, EXPORT, "-q", hf_dir, ckpt])
        if r.returncode != 0:
            die(f"export.py failed on {hf_dir}")
        if not checkpoint_ok(ckpt, name):
            die(f"{ckpt}: the exported checkpoint does not have the expected header/size")
        log(f"{name}: exported in {time.time() - t0:.1f} s")
    else:
        drop_page_cache(ckpt)
    return hf_dir, ckpt


def prepare_q8(name, ckpt):
    """The 8-bit checkpoint of a model: export.py --dtype q8 of its float32 one."""
    q8 = ckpt[:-4] + "-q8.bin"
    if not os.path.isfile(q8) or os.path.getmtime(q8) < os.path.getmtime(ckpt):
        log(f"{name}: writing the 8-bit checkpoint -> {os.path.relpath(q8, ROOT)}")
        t0 = time.time()
        r = subprocess.run([sys.executable, EXPORT, "-q", "--dtype", "q8", ckpt, q8])
        if r.returncode != 0:
            die(f"export.py --dtype q8 failed on {ckpt}")
        log(f"{name}: written in {time.time() - t0:.1f} s")
    h = read_header(q8)
    if not h or h["weight_type"] != 1 or h["weights_bytes"] != expected_weight_bytes(h):
        die(f"{q8}: not the 8-bit checkpoint expected")
    drop_page_cache(q8)
    return q8


def drop_page_cache(path):
    """What export.py does after writing a checkpoint: drop its pages from the
    page cache (a no-op for pages some process has mapped), so the first `run`
    reads it back in the 2 MB pages its MADV_HUGEPAGE mapping asks for. A
    checkpoint cached from an earlier bench would otherwise keep whatever
    pages it was first read into."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_prompts(vocab_size):
    """Fixed pseudo-random token ids (a simple LCG: no numpy needed)."""
    x = SEED
    ids = []
    for _ in range(max(PROMPT_LENS)):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        ids.append((x >> 33) % min(vocab_size, 50256))
    out = {}
    for n in PROMPT_LENS:
        path = os.path.join(BUILD, f"prompt-{n}.ids")
        with open(f"{path}.{os.getpid()}", "w") as f:
            f.write(" ".join(map(str, ids[:n])) + "\n")
        os.replace(f"{path}.{os.getpid()}", path)  # a bench running beside this one never reads half a file
        out[n] = (path, ids[:n])
    return out


# ----------------------------------------------------------------------------
# Ours: one fresh `run` process per measurement
# ----------------------------------------------------------------------------

def parse_run_stderr(text):
    d = {}
    for line in text.splitlines():
        w = line.split()
        if line.startswith("prompt: ") and len(w) >= 5:
            d["prompt_tokens"], d["prefill_s"] = int(w[1]), float(w[4])
        elif line.startswith("generated ") and len(w) >= 5:
            d["generated"], d["decode_s"] = int(w[1]), float(w[4])
            d["stopped_by"] = line.split("stopped by", 1)[-1].strip()
        elif line.startswith("model ") and " loaded in " in line:
            try:
                d["load_s"] = float(line.split(" loaded in ", 1)[1].split()[0])
            except (ValueError, IndexError):
                pass
    return d


def run_ours(run, ckpt, prompt_path, n_prompt, steps, threads):
    cmd = [run, ckpt, "--ids", "-f", prompt_path, "-n", str(steps), "-t", "0",
           "--threads", str(threads), "-v"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if p.returncode != 0:
        die(f"{' '.join(cmd)} exited {p.returncode}:\n{stderr.strip()}")
    d = parse_run_stderr(stderr)
    if "prefill_s" not in d or "decode_s" not in d:
        die(f"{' '.join(cmd)}: no 'prompt:'/'generated' lines on stderr:\n{stderr.strip()}")
    if d["prompt_tokens"] != n_prompt or d["generated"] != steps:
        die(f"{' '.join(cmd)}: expected {n_prompt} prompt and {steps} generated tokens, got "
            f"{d['prompt_tokens']} and {d['generated']} (stopped by {d.get('stopped_by')})")
    d["ids"] = [int(t) for t in stdout.split()]
    if len(d["ids"]) != steps:
        die(f"{' '.join(cmd)}: printed {len(d['ids'])} ids, expected {steps}")
    d["maxrss"] = ru.ru_maxrss * 1024  # Linux: kilobytes
    d["wall_s"] = wall
    return d


# ----------------------------------------------------------------------------
# Theirs: a transformers worker process (one per model and thread count)
# ----------------------------------------------------------------------------

def proc_status(field, pid="self"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def hf_worker(hf_dir, threads):
    """Serve generate() requests: one JSON object a line on stdin, one a line
    back on the original stdout (anything libraries print goes to stderr)."""
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    import torch
    from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    peak_load = proc_status("VmHWM")

    class Stamp(LogitsProcessor):
        def __init__(self):
            self.times = []

        def __call__(self, input_ids, scores):
            self.times.append(time.perf_counter())
            return scores

    def generate(ids, steps):
        stamp = Stamp()
        x = torch.tensor([ids], dtype=torch.long)
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=steps,
                                 do_sample=False, num_beams=1, use_cache=True, pad_token_id=0,
                                 logits_processor=LogitsProcessorList([stamp]))
            t1 = time.perf_counter()
        new = out[0, len(ids):].tolist()
        return {"prefill_s": stamp.times[0] - t0, "decode_s": t1 - stamp.times[0],
                "generated": len(new), "ids": new, "forwards": len(stamp.times)}

    generate(list(range(1, 65)), 8)  # warm-up: first-call costs are not the steady state
    # from here on VmHWM is the peak while generating (Linux: clear_refs 5
    # resets it); the whole-process peak, load included, is kept apart
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    reply.write(json.dumps({"ready": True, "load_s": load_s, "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "class": type(model).__name__,
                            "attn": getattr(model.config, "_attn_implementation", None)}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "exit":
            reply.write(json.dumps({"peak_rss": max(peak_load or 0, proc_status("VmHWM") or 0),
                                    "peak_rss_load": peak_load,
                                    "peak_rss_generate": proc_status("VmHWM") if reset else None,
                                    "rss_now": proc_status("VmRSS")}) + "\n")
            return
        reply.write(json.dumps(generate(req["ids"], req["steps"])) + "\n")


class Theirs:
    def __init__(self, hf_dir, threads, name):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
        self.log_path = os.path.join(BUILD, f"hf-worker-{name}-t{threads}.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([sys.executable, __file__, "--hf-worker", hf_dir, str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                  text=True, env=env)
        self.info = self._read()
        if not self.info.get("ready"):
            self._fail("did not start")

    def _fail(self, what):
        self.p.kill()
        self.log.close()
        with open(self.log_path) as f:
            tail = f.read()[-3000:]
        die(f"transformers worker {what}; its log ({self.log_path}):\n{tail}")

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            self._fail("exited")
        return json.loads(line)

    def generate(self, ids, steps):
        self.p.stdin.write(json.dumps({"ids": ids, "steps": steps}) + "\n")
        self.p.stdin.flush()
        d = self._read()
        if d["generated"] != steps:
            die(f"transformers generated {d['generated']} tokens, expected {steps}")
        return d

    def close(self):
        self.p.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
        self.p.stdin.flush()
        d = self._read()
        self.p.wait()
        self.log.close()
        d["class"], d["attn"] = self.info.get("class"), self.info.get("attn")
        return d


class OtherRun:
    """--compare: another `run` binary (say, an older build) in the
    transformers worker's place, a fresh process per measurement as ours."""
    def __init__(self, run, ckpt, prompts, threads):
        self.run, self.ckpt, self.threads = run, ckpt, threads
        self.paths = {len(ids): path for path, ids in prompts.values()}
        self.peak = 0

    def generate(self, ids, steps):
        d = run_ours(self.run, self.ckpt, self.paths[len(ids)], len(ids), steps, self.threads)
        self.peak = max(self.peak, d["maxrss"])
        return d

    def close(self):
        return {"peak_rss": self.peak}


# ----------------------------------------------------------------------------
# Shared pages: several processes on one checkpoint
# ----------------------------------------------------------------------------

def smaps_rollup(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                w = line.split()
                if len(w) >= 3 and w[2] == "kB":
                    d[w[0].rstrip(":")] = int(w[1]) * 1024
    except OSError:
        return None
    return d


def sharing_test(run, ckpt, prompt_path, n_procs):
    """Start n_procs `run`s on one checkpoint; once all have finished their
    prompt (every weight touched), read each one's smaps_rollup."""
    def launch(k):
        procs, ready = [], []
        for _ in range(k):
            p = subprocess.Popen([run, ckpt, "--ids", "-f", prompt_path, "-n", str(DECODE_TOKENS),
                                  "-t", "0", "--threads", "1", "-v"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            ev = threading.Event()

            def watch(p=p, ev=ev):
                for line in p.stderr:
                    if line.startswith("prompt:"):
                        ev.set()
                ev.set()
            threading.Thread(target=watch, daemon=True).start()
            procs.append(p)
            ready.append(ev)
        for ev in ready:
            ev.wait(600)
        alive = [p for p in procs if p.poll() is None]
        rolls = [smaps_rollup(p.pid) for p in alive]
        for p in procs:
            p.wait()
        if len(alive) < k or any(r is None for r in rolls):
            return None
        return {key: sum(r.get(key, 0) for r in rolls)
                for key in ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous", "FilePmdMapped")}
    one = launch(1)
    many = launch(n_procs)
    return {"one": one, "many": many, "n": n_procs}


# ----------------------------------------------------------------------------
# Figures derived from the measurements
# ----------------------------------------------------------------------------

LINEAR = ("qkv.weight", "proj.weight", "fc.weight", "up.weight", "fc_proj.weight", "project_in")


def prefill_flops(h, n):
    """FLOPs of a prompt of n tokens: 2 x (weights of the layers' linear maps)
    x n, plus attention (q.k and the weighted sum of v over the keys the
    query sees: 2 x 2 x C x (t+1) for the token at position t, every layer,
    or 2 x 2 x C x min(t+1, w) in a layer with a local window w), plus the
    output layer for the last position only."""
    C, V, E = h["n_embd"], h["vocab_size"], h["embed_dim"]
    linear = sum(k for name, k in tensors(h) if name.split(".", 2)[-1] in LINEAR or name in LINEAR)
    attention = sum(4 * C * sum(min(t + 1, w) if w else t + 1 for t in range(n)) for w in h["windows"])
    return 2 * linear * n + attention + 2 * V * E + 2 * E * C * (E < C)


def kv_bytes(h, positions):
    return 2 * h["n_layer"] * min(positions, h["n_ctx"]) * h["n_embd"] * 4


def fmt(x, digits=1):
    if x is None or x != x:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def spread(xs):
    """(max - min) / median, in percent: how noisy the repetitions were."""
    if len(xs) < 2:
        return "-"
    m = median(xs)
    return f"{100 * (max(xs) - min(xs)) / m:.0f}" if m else "-"


def print_report(res, machine, models, threads, reps, hf, sharing, load0, other="transformers", q8_of=None):
    lines = []
    p = lines.append
    p("")
    if other != "transformers":
        p(f"run {res['meta']['run']} (ours) vs run {res['meta']['compare']} (theirs): medians of {reps} "
          f"interleaved repetitions; random weights, float32, greedy")
    elif hf:
        p(f"run vs transformers {res['meta']['transformers']} / torch {res['meta']['torch']} on the CPU: "
          f"medians of {reps} interleaved repetitions; random weights, float32, greedy")
    else:
        p(f"run alone (--no-hf): medians of {reps} repetitions; random weights, float32, greedy")
    load1 = os.getloadavg()
    p(f"machine: {os.cpu_count()} CPUs; load average (1/5/15 min) at start {load0[0]:.2f} {load0[1]:.2f} "
      f"{load0[2]:.2f}, at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
      + ("  -- busy: other processes share the CPUs, figures are noisy" if max(load0[0], load1[0]) > 0.5 else ""))
    for t in threads:
        m = machine[t]
        p(f"  {t} thread{'s' if t > 1 else ' '}: memory read {m['membw_GBps']:.1f} GB/s (median pass "
          f"{m['membw_median_GBps']:.1f}), FP32 FMA peak {m['flops_GFLOPs']:.1f} GFLOP/s "
          f"({m['isa']}; median pass {m['flops_median_GFLOPs']:.1f})")
    p("")
    head = ("model", "thr", "measure", "ours", other, "ours/theirs", "spread % o/t",
            "ours vs the machine")
    rows = [head]
    over = [False]
    fractions = {}
    for name in models:
        h = res[name]["header"]
        for t in threads:
            r = res[name][t]
            ours, theirs, ratio = r["ours"], r["theirs"], r["ratio"]
            m = machine[t]
            for key, label in (("prefill128", "prefill 128 tok/s"), ("prefill512", "prefill 512 tok/s"),
                               ("decode", f"decode {DECODE_TOKENS} tok/s"), ("rss", "peak RSS MB")):
                o, th = ours.get(key, []), theirs.get(key, [])
                scale = 1 / MB if key == "rss" else 1
                mo = median(o) * scale
                mt = median(th) * scale if th else None
                mr = median(ratio[key]) if ratio.get(key) else None
                if key.startswith("prefill"):
                    n = int(key[7:])
                    gf = prefill_flops(h, n) / 1e9 * median(o) / n
                    note = f"{gf:.1f} GFLOP/s = {100 * gf / m['flops_GFLOPs']:.0f}% of FMA peak"
                    over[0] |= gf > m["flops_GFLOPs"]
                elif key == "decode":
                    # N tokens take N-1 forward passes (the first comes from the prompt's)
                    gbs = decode_bytes(h) * median(o) * (DECODE_TOKENS - 1) / DECODE_TOKENS / 1e9
                    note = f"{gbs:.1f} GB/s = {100 * gbs / m['membw_GBps']:.0f}% of read bandwidth"
                    fractions.setdefault(t, []).append(f"{name} {100 * gbs / m['membw_GBps']:.0f}%")
                    over[0] |= gbs > m["membw_GBps"]
                else:
                    worst = r["rss_budget"]
                    note = (f"budget ckpt+KV+64MB {worst['budget'] / MB:.0f}: "
                            f"{'ok' if worst['rss'] <= worst['budget'] else 'OVER'} "
                            f"({(worst['rss'] - worst['budget']) / MB:+.0f})")
                sp = f"{spread(o)}/{spread(th) if th else '-'}"
                rows.append((f"{name}", str(t), label, fmt(mo), fmt(mt), fmt(mr, 2), sp, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for i, r in enumerate(rows):
        cells = [c.ljust(widths[j]) if j in (0, 2, 7) else c.rjust(widths[j]) for j, c in enumerate(r)]
        p("  ".join(cells).rstrip())
        if i == 0:
            p("  ".join("-" * w for w in widths))
    if over[0]:
        p("")
        p("WARNING: a fraction above 100% means the machine was busier while its limits were measured")
        p("than during the runs (other processes): rerun `make bench` on a quiet machine.")
    p("")
    if len(models) > 1:
        for t in threads:
            p(f"decode, ours, as a fraction of the {t}-thread read bandwidth: " + ", ".join(fractions[t]))
    p("prefill: GFLOP/s = (2 x layer weights x tokens + attention (local windows counted) + "
      "last-position logits) / time;")
    p(f"decode: {DECODE_TOKENS} tokens after the 128-token prompt, tok/s = N/S as `run -v` prints it; "
      f"GB/s = the weights a token streams (all but the position table, and the token embedding when "
      f"the lm_head is untied) x forward passes/s ((N-1)/S);")
    p("peak RSS: ours = ru_maxrss of each run (larger of the 128 and 512-token runs); theirs = VmHWM of "
      "the worker (loading included); for RSS a ratio below 1 is better.")
    if q8_of:
        p(f"rows 'NAME q8': ours = NAME's checkpoint in 8 bits (export.py --dtype q8), theirs = ours in "
          f"float32 on the same weights, in the same repetitions (not {other}): ours/theirs is 8-bit/float32; "
          f"their GB/s counts the bytes an 8-bit token reads (int8 values and float32 scales).")
    for name in models:
        r = res[name]
        h = r["header"]
        notes = []
        for t in threads:
            w = r[t].get("worker") or {}
            if w.get("peak_rss_generate"):
                notes.append(f"{t} thr: transformers peak while generating "
                             f"{w['peak_rss_generate'] / MB:.0f} MB, at load {w['peak_rss_load'] / MB:.0f} MB")
        w = r[threads[0]].get("worker") or {}
        if w.get("class"):
            notes.append(f"transformers runs {w['class']} (attention: {w['attn']})")
        p(f"{name}: checkpoint {h['file_bytes'] / MB:.0f} MB (weights {h['weights_bytes'] / MB:.0f} MB, "
          f"{decode_bytes(h) / MB:.0f} MB streamed a token); "
          f"ours loads in {fmt(median(r['load_s']), 3)} s (median)" + "".join("; " + n for n in notes))
        if r.get("agree") is not None:
            vs = "ours in float32" if q8_of and name in q8_of else other
            p(f"{name}: greedy ids, ours vs {vs}: first {r['agree']} of {DECODE_TOKENS} agree "
              f"in the last repetition (random weights: near-ties may flip later ones)")
    if sharing:
        one, many, n = sharing["one"], sharing["many"], sharing["n"]
        if one and many:
            p(f"sharing ({sharing['model']}, 1 thread each): one process RSS {one['Rss'] / MB:.0f} MB, "
              f"PSS {one['Pss'] / MB:.0f} MB; {n} concurrent: total RSS {many['Rss'] / MB:.0f} MB, "
              f"total PSS {many['Pss'] / MB:.0f} MB = {many['Pss'] / one['Pss']:.2f}x one process "
              f"(shared clean {many['Shared_Clean'] / MB:.0f} MB, private dirty "
              f"{many['Private_Dirty'] / MB:.0f} MB) -> "
              f"{'pages shared' if many['Pss'] < 0.5 * n * one['Pss'] else 'NOT shared'}; "
              f"mapped in 2 MB pages: {one.get('FilePmdMapped', 0) / MB:.0f} MB of one process's RSS")
        else:
            p("sharing: could not sample all processes (one finished too early?)")
    print("\n".join(lines), flush=True)


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description="benchmark run against transformers (issue 5)")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, 124M only (development)")
    ap.add_argument("--reps", type=int, help="repetitions (default 5; 3 with --quick)")
    ap.add_argument("--models", help=f"comma-separated, from: {', '.join(MODELS)} (default "
                    f"{','.join(DEFAULT_MODELS)}; the families' real shapes: --models {FAMILIES})")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--run", default=os.path.join(ROOT, "run"), help="the run binary (default ./run)")
    ap.add_argument("--rebuild", action="store_true", help="remake the random models and checkpoints")
    ap.add_argument("--no-hf", action="store_true", help="ours only (no transformers, no ratios)")
    ap.add_argument("--compare", metavar="PATH", help="another run binary in transformers' place "
                    "(an older build: ours/theirs is new/old)")
    ap.add_argument("--no-q8", action="store_true", help="without the 8-bit rows (each model's "
                    "checkpoint in 8 bits against ours in float32, on the same weights)")
    ap.add_argument("--json", default=os.path.join(BUILD, "results.json"), help="raw results")
    ap.add_argument("--build-model", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--hf-worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build_model:
        return build_hf_model(*a.build_model)
    if a.hf_worker:
        return hf_worker(a.hf_worker[0], int(a.hf_worker[1]))

    t_start = time.time()
    load0 = os.getloadavg()
    reps = a.reps or (3 if a.quick else 5)
    models = a.models.split(",") if a.models else (["124M"] if a.quick else DEFAULT_MODELS)
    threads = [int(t) for t in a.threads.split(",")]
    for m in models:
        if m not in MODELS:
            die(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    if not os.access(a.run, os.X_OK):
        die(f"{a.run}: no such executable (make run)")
    if a.compare and not os.access(a.compare, os.X_OK):
        die(f"{a.compare}: no such executable")
    if a.compare:
        a.no_hf = True
    os.makedirs(BUILD, exist_ok=True)

    log(f"measuring the machine (memory read bandwidth, FMA peak), 1..{max(threads)} threads")
    machine = measure_machine(max(threads), 5 if a.quick else 9)
    paths = {m: prepare_model(m, a.rebuild) for m in models}
    # the 8-bit rows: NAME q8 is the 8-bit checkpoint (ours) against ours in
    # float32 (theirs) on the same weights, interleaved the same way
    q8_of = {}
    if not a.no_q8 and not a.compare:
        for m in list(models):
            q8_of[f"{m} q8"] = m
            paths[f"{m} q8"] = (paths[m][0], prepare_q8(m, paths[m][1]))
        models = models + list(q8_of)

    meta = {"torch": "-", "transformers": "-"}
    if not a.no_hf:
        import importlib.metadata as md
        meta = {k: md.version(k) for k in ("torch", "transformers")}
    if a.compare:
        meta.update(run=os.path.abspath(a.run), compare=os.path.abspath(a.compare))
    res = {"meta": meta}
    for name in models:
        hf_dir, ckpt = paths[name]
        h = read_header(ckpt)
        prompts = make_prompts(h["vocab_size"])
        r = res[name] = {"header": h, "load_s": []}
        theirs = {}
        if name in q8_of:
            f32 = paths[q8_of[name]][1]
            theirs = {t: OtherRun(a.run, f32, prompts, t) for t in threads}
        elif a.compare:
            theirs = {t: OtherRun(a.compare, ckpt, prompts, t) for t in threads}
            run_ours(a.compare, ckpt, prompts[128][0], 128, 4, max(threads))
        elif not a.no_hf:
            for t in threads:
                log(f"{name}: starting the transformers worker, {t} thread(s)")
                theirs[t] = Theirs(hf_dir, t, name)
        log(f"{name}: warm-up run of ours (page cache)")
        run_ours(a.run, ckpt, prompts[128][0], 128, 4, max(threads))
        for t in threads:
            r[t] = {"ours": {k: [] for k in ("prefill128", "prefill512", "decode", "rss")},
                    "theirs": {k: [] for k in ("prefill128", "prefill512", "decode", "rss")},
                    "ratio": {k: [] for k in ("prefill128", "prefill512", "decode", "rss")},
                    "rss_budget": None}
        for rep in range(reps):
            for t in threads:
                rr = r[t]
                o, th = {}, {}
                # alternate who goes first, so a drift in machine load does not favour one side
                order = ("ours", "theirs") if (rep + t) % 2 == 0 else ("theirs", "ours")
                for n, steps in ((128, DECODE_TOKENS), (512, 1)):
                    path, ids = prompts[n]
                    for who in order:
                        # let the other side's threads (OpenMP spins after a parallel region) go quiet
                        time.sleep(SETTLE_S)
                        if who == "ours":
                            d = run_ours(a.run, ckpt, path, n, steps, t)
                            o[n] = d
                            r["load_s"].append(d.get("load_s", float("nan")))
                            budget = h["file_bytes"] + kv_bytes(h, n + steps) + 64 * 2**20
                            worst = rr["rss_budget"]
                            if worst is None or d["maxrss"] - budget > worst["rss"] - worst["budget"]:
                                rr["rss_budget"] = {"rss": d["maxrss"], "budget": budget}
                        elif theirs:
                            th[n] = theirs[t].generate(ids, steps)
                vals_o = {"prefill128": 128 / o[128]["prefill_s"], "prefill512": 512 / o[512]["prefill_s"],
                          "decode": DECODE_TOKENS / o[128]["decode_s"],
                          "rss": max(o[128]["maxrss"], o[512]["maxrss"])}
                for k, v in vals_o.items():
                    rr["ours"][k].append(v)
                if th:
                    vals_t = {"prefill128": 128 / th[128]["prefill_s"], "prefill512": 512 / th[512]["prefill_s"],
                              "decode": DECODE_TOKENS / th[128]["decode_s"]}
                    for k, v in vals_t.items():
                        rr["theirs"][k].append(v)
                        rr["ratio"][k].append(vals_o[k] / v)
                    a_ids, b_ids = o[128]["ids"], th[128]["ids"]
                    agree = 0
                    while agree < len(a_ids) and agree < len(b_ids) and a_ids[agree] == b_ids[agree]:
                        agree += 1
                    r["agree"] = agree
                log(f"{name} rep {rep + 1}/{reps} {t} thr: ours prefill128 {vals_o['prefill128']:.0f} "
                    f"prefill512 {vals_o['prefill512']:.0f} decode {vals_o['decode']:.1f} tok/s"
                    + (f"; theirs {vals_t['prefill128']:.0f} {vals_t['prefill512']:.0f} "
                       f"{vals_t['decode']:.1f}" if th else "")
                    + f"  [{time.time() - t_start:.0f} s]")
            machine = measure_machine(max(threads), 3, machine, mib=512)
        for t, w in theirs.items():
            info = w.close()
            r[t]["worker"] = info
            r[t]["theirs"]["rss"] = [info["peak_rss"]]
            r[t]["ratio"]["rss"] = [x / info["peak_rss"] for x in r[t]["ours"]["rss"]]

    log("sharing: 1 and then 4 concurrent runs on one checkpoint")
    share_model = models[0]
    sharing = sharing_test(a.run, paths[share_model][1], os.path.join(BUILD, "prompt-128.ids"), 4)
    sharing["model"] = share_model
    log("measuring the machine again (the best figures seen are kept)")
    machine = measure_machine(max(threads), 5 if a.quick else 9, machine)

    res["machine"] = machine
    res["sharing"] = sharing
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1, default=str)
    print_report(res, machine, models, threads, reps, not a.no_hf or bool(a.compare), sharing, load0,
                 other="other run" if a.compare else "transformers", q8_of=q8_of)
    log(f"done in {time.time() - t_start:.0f} s; raw figures in {os.path.relpath(a.json, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
