#!/usr/bin/env python3
"""Eight ./run processes on one checkpoint at once (standard library only).

Checks that 8 concurrent runs print exactly what one run prints (sampled
generation with a seed, and --score), and measures how the memory-mapped
checkpoint is shared: while all 8 are alive, with every weight page touched,
it reads Rss and Pss of each process from /proc/PID/smaps_rollup and of the
checkpoint's mapping from /proc/PID/smaps, and prints total RSS vs total PSS.
The processes are held at that point by their own stdout: each writes into a
pipe shrunk to one page that is not read until the sample has been taken.

The checkpoint: $CONCURRENCY_MODEL if set, else models/model.bin when present,
else the fixture tests/fixtures/head5_inner72_bin exported to tests/build/.
`python3 tests/test_concurrency.py --with-torch` uses instead
tests/build/concurrency-large.bin, making it first when missing: a random
2-layer, 256-wide GPT-2 with the real 50257-token vocabulary (about 60 MB)
written with transformers and exported with export.py (needs torch and
transformers; `make test` never does this).
Ends with "N passed, N failed".
"""
import fcntl
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Harness, ROOT, RUN, run_cmd  # noqa: E402

BUILD = os.path.join(ROOT, "tests", "build")
LARGE = os.path.join(BUILD, "concurrency-large.bin")
N = 8
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def make_large():
    """Optional: a random model of a few tens of MB, via transformers."""
    import shutil
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    hf = os.path.join(BUILD, "concurrency-hf")
    shutil.rmtree(hf, ignore_errors=True)
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_head=4, n_embd=256, n_positions=512, vocab_size=50257)
    GPT2LMHeadModel(cfg).save_pretrained(hf)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "tests", "data", "gpt2", f), hf)
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q", hf, LARGE])
    if p.returncode != 0:
        sys.exit(p.stderr.decode())
    print(f"wrote {LARGE} ({os.path.getsize(LARGE) / 1e6:.1f} MB)")


def pick_model(large):
    env = os.environ.get("CONCURRENCY_MODEL")
    if env:
        return env
    if large:
        return LARGE
    p = os.path.join(ROOT, "models", "model.bin")
    if os.path.exists(p):
        return p
    out = os.path.join(BUILD, "concurrency.bin")
    os.makedirs(BUILD, exist_ok=True)
    p = run_cmd([sys.executable, os.path.join(ROOT, "export.py"), "-q",
                 os.path.join(ROOT, "tests", "fixtures", "head5_inner72_bin", "hf"), out])
    if p.returncode != 0:
        sys.exit(p.stderr.decode())
    return out


def kb_fields(text, names):
    got = {}
    for name in names:
        m = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
        got[name] = int(m.group(1)) if m else 0
    return got


def mapping_of(pid, path):
    """Rss and Pss (kB) of the mappings of `path` in process pid."""
    real = os.path.realpath(path)
    rss = pss = 0
    cur = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split(None, 5)
                cur = len(parts) == 6 and parts[5].strip() == real
            elif cur and line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif cur and line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def start(args, small_pipe):
    r, w = os.pipe()
    if small_pipe:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
        except OSError:
            pass
    p = subprocess.Popen([RUN, *args], stdout=w, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(w)
    return p, r


def drain(procs):
    """Read every stdout and stderr to the end, in parallel; wait for exit."""
    outs = [None] * len(procs)
    errs = [None] * len(procs)

    def reader(i, p, r):
        chunks = []
        with os.fdopen(r, "rb") as f:
            while True:
                b = f.read(65536)
                if not b:
                    break
                chunks.append(b)
        outs[i] = b"".join(chunks)
        errs[i] = p.stderr.read()
        p.wait()

    ts = [threading.Thread(target=reader, args=(i, p, r)) for i, (p, r) in enumerate(procs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    return outs, errs


def main():
    large = "--with-torch" in sys.argv[1:]
    if large and not os.path.exists(LARGE):
        make_large()
    h = Harness("concurrency")
    model = pick_model(large)
    size_mb = os.path.getsize(model) / 2**20
    head = open(model, "rb").read(96)
    n_ctx = int.from_bytes(head[32:36], "little")
    print(f"  checkpoint {os.path.relpath(model, ROOT)}: {size_mb:.1f} MiB, context {n_ctx}")

    # 1. sampled generation: 8 at once == 1 alone
    gen = [model, "-p", "The keeper of the lighthouse", "-n", str(min(48, n_ctx - 12)), "-t", "0.9",
           "-s", "1234", "--threads", "1"]
    one = run_cmd([RUN, *gen])
    h.check("one generation exits 0 with text", one.returncode == 0 and one.stdout, one.stderr)
    procs = [start(gen, False) for _ in range(N)]
    outs, errs = drain(procs)
    h.check(f"{N} concurrent generations exit 0", all(p.returncode == 0 for p, _ in procs),
            [(p.returncode, e[-200:]) for (p, _), e in zip(procs, errs)])
    h.check(f"{N} concurrent generations print what one run prints", all(o == one.stdout for o in outs),
            [o[:60] for o in outs if o != one.stdout][:2])

    # 2. --score on a long input, held by a one-page stdout pipe while sampled
    words = ("the keeper wrote in her log that the light had burned all night and the ships "
             "passed safely by the rocks while the storm went on until morning").split()
    text = " ".join(words[i % len(words)] for i in range(700))
    prompt = os.path.join(BUILD, "concurrency-prompt.txt")
    with open(prompt, "w") as f:
        f.write(text)
    score = [model, "--score", "-f", prompt, "--threads", "1"]
    one = run_cmd([RUN, *score])
    h.check("one --score exits 0", one.returncode == 0 and one.stdout.count(b"\n") > 450, one.stderr[-300:])
    w_off = int.from_bytes(head[72:80], "little")
    w_kb = (os.path.getsize(model) - w_off) // 1024
    procs = [start(score, True) for _ in range(N)]
    samples = {}
    deadline = time.time() + 300
    while time.time() < deadline:
        cur = {}
        try:
            for p, _ in procs:
                with open(f"/proc/{p.pid}/smaps_rollup") as f:
                    roll = kb_fields(f.read(), ("Rss", "Pss"))
                cur[p.pid] = (roll, mapping_of(p.pid, model))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            break   # one already finished: the pipe did not hold it
        samples = cur
        if all(m[0] >= 0.9 * w_kb for _, m in cur.values()) and all(p.poll() is None for p, _ in procs):
            time.sleep(0.2)   # every weight page has been touched by all of them
            try:
                samples = {p.pid: (kb_fields(open(f"/proc/{p.pid}/smaps_rollup").read(), ("Rss", "Pss")),
                                   mapping_of(p.pid, model)) for p, _ in procs}
            except (FileNotFoundError, ProcessLookupError):
                pass
            break
        time.sleep(0.05)
    outs, errs = drain(procs)
    h.check(f"{N} concurrent --score runs exit 0", all(p.returncode == 0 for p, _ in procs),
            [(p.returncode, e[-200:]) for (p, _), e in zip(procs, errs)])
    h.check(f"{N} concurrent --score runs print what one run prints", all(o == one.stdout for o in outs))
    h.check(f"{N} concurrent --score summaries agree", all(e.splitlines()[-1:] == one.stderr.splitlines()[-1:] for e in errs))

    if len(samples) == N:
        rss = [s[0]["Rss"] for s in samples.values()]
        pss = [s[0]["Pss"] for s in samples.values()]
        mrss = [s[1][0] for s in samples.values()]
        mpss = [s[1][1] for s in samples.values()]
        print(f"  {N} processes: total RSS {sum(rss) / 1024:.1f} MiB, total PSS {sum(pss) / 1024:.1f} MiB, "
              f"one process RSS {max(rss) / 1024:.1f} MiB (PSS {max(pss) / 1024:.1f} MiB)")
        print(f"  the checkpoint mapping: RSS {max(mrss) / 1024:.1f} MiB in each, total RSS "
              f"{sum(mrss) / 1024:.1f} MiB, total PSS {sum(mpss) / 1024:.1f} MiB "
              f"(file {size_mb:.1f} MiB, so it is held once, not {N} times)")
        h.check("every process maps all the weights", min(mrss) >= 0.9 * w_kb, (mrss, w_kb))
        # shared pages are split between the processes that map them: 8 processes
        # that share the checkpoint's pages account for about one copy in total
        h.check("the checkpoint's pages are shared (total PSS of the mapping ~ one copy)",
                sum(mpss) <= 1.5 * max(mrss) + 64, (sum(mpss), max(mrss)))
        h.check("total PSS is below total RSS", sum(pss) < sum(rss), (sum(pss), sum(rss)))
    else:
        h.check("sampled all processes while they ran", False, f"got {len(samples)} of {N}")
    h.done()


if __name__ == "__main__":
    main()
