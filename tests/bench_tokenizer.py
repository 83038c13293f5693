#!/usr/bin/env python3
"""Encode throughput, one thread: tokenizer.c vs tiktoken vs HF tokenizers.

    python3 tests/bench_tokenizer.py [--repeats N] [--file PATH]

The text is the multilingual part of tests/build_corpus.py (one fortune of
every file, in English, Chinese, German, Spanish, Italian, Russian, Portuguese,
Czech, Bulgarian..., plus KJV chapters and source code), unless --file is given.
Each tokenizer encodes the whole text as one string (plain text, no special
tokens), REPEATS times (HF also document by document, encode_batch on one
thread, since one huge string is its slow case); the median time gives MB/s (of UTF-8 input) and tokens/s.
Ours is timed inside the C driver (tests/build/test_tokenizer bench) with a fresh
tokenizer, so a cold word cache, for every repeat; tiktoken's encode_ordinary
and HF's Tokenizer.encode are timed in this process with one thread.
tiktoken and tokenizers are optional: a missing one is skipped.

Then one row pair per pre-tokenizer kind of section version 3 (issue 14): the
Llama-3-, Qwen2- and SmolLM2-style tokenizer.json of tests/tokenizer_kinds.py
(GPT-2's vocabulary; Llama-3's with ignore_merges), and cl100k_base at full
size from js-tiktoken's ranks (when tests/build/npm has them; make test-hf
installs them), each ours against HF tokenizers document by document (and
cl100k_base against tiktoken with Llama-3's pattern). Then the SentencePiece-
style BPE of section version 4 (tests/data/spm: the hub's form, transformers
5's, Metaspace split true), and a 1 MB line that is one BPE word. --no-kinds
skips all these.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import build_corpus  # noqa: E402

BUILD = os.path.join(HERE, "build")
DRIVER = os.path.join(BUILD, "test_tokenizer")
TOK = os.path.join(BUILD, "gpt2.tok")
GPT2_DIR = os.path.join(HERE, "data", "gpt2")


def bench_docs():
    cases = (build_corpus.fortunes(max_per_file=40) + build_corpus.bible(max_chapters=60)
             + build_corpus.source_code(max_bytes=300_000))
    return [t for _n, t, _s in cases]


def report(name, n_bytes, n_tokens, times):
    med = statistics.median(times)
    print(f"{name:22s} {n_bytes / med / 1e6:9.2f} MB/s {n_tokens / med / 1e6:9.3f} Mtok/s "
          f"  median {med * 1000:8.1f} ms of {len(times)}  ({n_tokens} tokens)", flush=True)
    return n_bytes / med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--file", help="text file to encode instead of the corpus")
    ap.add_argument("--no-kinds", action="store_true", help="only GPT-2's tokenizer")
    args = ap.parse_args()
    if args.file:
        with open(args.file, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        docs = [text]
    else:
        docs = bench_docs()
        text = "".join(docs)
    data = text.encode("utf-8")
    os.makedirs(BUILD, exist_ok=True)
    path = os.path.join(BUILD, "bench_text.txt")
    with open(path, "wb") as f:
        f.write(data)
    if not os.path.exists(TOK):
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "--tokenizer-only",
                        GPT2_DIR, TOK], check=True, stderr=subprocess.DEVNULL)
    n_ascii = sum(1 for b in data if b < 128)
    print(f"text: {len(data)} bytes, {len(text)} characters, {100 * (1 - n_ascii / len(data)):.0f}% "
          f"of bytes non-ASCII; {args.repeats} repeats, one thread")

    out = subprocess.run([DRIVER, "bench", TOK, path, str(args.repeats)], check=True,
                         stdout=subprocess.PIPE).stdout.decode().split()
    ours_tokens = int(out[1])
    ours = report("ours (tokenizer.c)", len(data), ours_tokens, [float(x) for x in out[2:]])

    rates = {}
    try:
        import hf_tokenizer_parity as ref
        enc = ref.tiktoken_encoding()
        enc.encode_ordinary("warm up")
        times, ids = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ids = enc.encode_ordinary(text)
            times.append(time.perf_counter() - t0)
        rates["tiktoken"] = report("tiktoken", len(data), len(ids), times)
        if len(ids) != ours_tokens:
            print(f"  note: tiktoken gives {len(ids)} tokens, ours {ours_tokens}")
    except ImportError as e:
        print(f"tiktoken: skipped ({e})")
    try:
        import tokenizers  # noqa: F401
        import hf_tokenizer_parity as ref
        hf = ref.hf_tokenizer().backend_tokenizer
        hf.encode("warm up", add_special_tokens=False)
        times, n = [], 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = len(hf.encode(text, add_special_tokens=False).ids)
            times.append(time.perf_counter() - t0)
        rates["HF tokenizers"] = report("HF tokenizers", len(data), n, times)
        # HF is much slower on one multi-megabyte string than on documents, so
        # also time it document by document (still one thread).
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = sum(len(e.ids) for e in hf.encode_batch(docs, add_special_tokens=False))
            times.append(time.perf_counter() - t0)
        rates["HF tokenizers per doc"] = report("HF tokenizers per doc", len(data), n, times)
    except ImportError as e:
        print(f"HF tokenizers: skipped ({e})")
    for k, v in rates.items():
        print(f"ours / {k}: {ours / v:.2f}x")
    if not args.no_kinds:
        bench_kinds(args, text, docs, data, path)
        bench_spm(args, docs, data, path)
    return 0


def time_ours(tok, path, repeats):
    out = subprocess.run([DRIVER, "bench", tok, path, str(repeats)], check=True,
                         stdout=subprocess.PIPE).stdout.decode().split()
    return int(out[1]), [float(x) for x in out[2:]]


def bench_kinds(args, text, docs, data, path):
    """Ours against HF tokenizers (per document, one thread) for each kind."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        print(f"kinds: skipped ({e})")
        return
    import tokenizer_kinds as K
    import hf_tokenizer_kinds as HK
    kdir = os.path.join(BUILD, "bench_kinds")
    dirs = [(f"{k}-style", b(os.path.join(kdir, k))) for k, b in K.KINDS.items()]
    tik = None
    if os.path.exists(HK.CL100K_JS):
        ranks, _pat = HK.cl100k_ranks()
        dirs.append(("cl100k_base", HK.cl100k_tokenizer_json(ranks, os.path.join(kdir, "cl100k"))))
        try:
            import tiktoken
            tik = tiktoken.Encoding("cl100k_llama3_pattern", pat_str=K.LLAMA3_PATTERN, mergeable_ranks=ranks,
                                    special_tokens={})
        except ImportError:
            pass
    else:
        print(f"cl100k_base: skipped (no {HK.CL100K_JS}; make test-hf installs js-tiktoken)")
    print("\nper pre-tokenizer kind (section version 3):")
    for label, d in dirs:
        tok = os.path.join(kdir, label + ".tok")
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok],
                       check=True)
        n_ours, times = time_ours(tok, path, args.repeats)
        ours = report(f"{label}: ours", len(data), n_ours, times)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hf.encode_special_tokens = True
        hf.encode("warm up", add_special_tokens=False)
        times, n = [], 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = sum(len(e.ids) for e in hf.encode_batch(docs, add_special_tokens=False))
            times.append(time.perf_counter() - t0)
        theirs = report(f"{label}: HF per doc", len(data), n, times)
        line = f"  ours / HF tokenizers per doc: {ours / theirs:.2f}x"
        if tik is not None and label == "cl100k_base":
            tik.encode_ordinary("warm up")
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                n = len(tik.encode_ordinary(text))
                times.append(time.perf_counter() - t0)
            line += f"; ours / tiktoken: {ours / report(f'{label}: tiktoken', len(data), n, times):.2f}x"
        print(line, flush=True)


def bench_spm(args, docs, data, path):
    """Section version 4 (SentencePiece-style BPE, byte fallback): the base
    tokenizer of tests/data/spm in the hub's form (Prepend/Replace, a document is
    one BPE word), in transformers 5's (Metaspace, split false) and with
    Metaspace split true, ours against HF tokenizers per document; then one
    1 MB line (one word) against HF on the same string."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        print(f"spm: skipped ({e})")
        return
    import tokenizer_spm as S
    sdir = os.path.join(BUILD, "bench_spm")
    print("\nSentencePiece-style BPE (section version 4):")
    toks = {}
    for name in ("hub", "tf5", "meta_always_split"):
        d = S.write(name, os.path.join(sdir, name))
        tok = os.path.join(sdir, name + ".tok")
        subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "-q", "--tokenizer-only", d, tok],
                       check=True)
        toks[name] = (d, tok)
        n_ours, times = time_ours(tok, path, args.repeats)
        ours = report(f"spm {name}: ours", len(data), n_ours, times)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        hf.encode_special_tokens = True
        hf.encode("warm up", add_special_tokens=False)
        times, n = [], 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n = sum(len(e.ids) for e in hf.encode_batch(docs, add_special_tokens=False))
            times.append(time.perf_counter() - t0)
        theirs = report(f"spm {name}: HF per doc", len(data), n, times)
        print(f"  ours / HF tokenizers per doc: {ours / theirs:.2f}x", flush=True)
    words = " ".join(d.replace("\n", " ") for d in docs)
    line = words.encode("utf-8")[:1 << 20].decode("utf-8", "ignore")
    lpath = os.path.join(sdir, "line.txt")
    with open(lpath, "w", encoding="utf-8") as f:
        f.write(line)
    d, tok = toks["hub"]
    n_ours, times = time_ours(tok, lpath, args.repeats)
    nb = len(line.encode("utf-8"))
    ours = report("spm hub 1 MB line: ours", nb, n_ours, times)
    hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    hf.encode_special_tokens = True
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n = len(hf.encode(line, add_special_tokens=False).ids)
        times.append(time.perf_counter() - t0)
    theirs = report("spm hub 1 MB line: HF", nb, n, times)
    print(f"  ours / HF tokenizers: {ours / theirs:.2f}x", flush=True)


if __name__ == "__main__":
    sys.exit(main())
