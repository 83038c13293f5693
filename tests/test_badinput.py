#!/usr/bin/env python3
"""The bad-input matrix of ./run (standard library only).

Every case runs ./run on a damaged checkpoint, tokenizer file, input or
output stream and checks the exact exit status, that stderr names the file
(and, where it is easy to say, what is wrong), that nothing is printed on
stdout when it fails, that nothing crashed (a signal, or a status >= 128,
or a sanitizer report is always a failure) and that no output file is left
behind or damaged. What tests/test_cli.py already checks (usage errors, a
directory or /dev/null as the model, the odd bytes of one generation, --ids
errors) is not repeated here.

Cases whose correct behaviour is known to be broken in files this runner
does not own are listed in PENDING below: they are run and reported as
"pending", counted neither passed nor failed, and start counting as soon as
they pass.

The checkpoint is tests/fixtures/f32_st_basic exported to tests/build/; a
long-context tiny model for the SIGPIPE case is built with
tests/fuzz/make_seeds.py's writer. Ends with "N passed, N failed".
"""
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "fuzz"))
from harness import Harness, ROOT, RUN  # noqa: E402
import make_seeds  # noqa: E402

BUILD = os.path.join(ROOT, "tests", "build", "badinput")
h = Harness("badinput")
cases = 0

# Known bugs in run.c (owner: the lead); see the report of issue 6.
PENDING = set()


def check(what, ok, detail=""):
    """h.check, except that a known-broken (PENDING) case is reported, not counted."""
    if what in PENDING:
        if not ok:
            print(f"  PENDING {what} (known bug, not counted)\n       " + str(detail).replace("\n", "\n       ")[:600],
                  flush=True)
            return False
        print(f"  note: pending case now passes: {what} (remove it from PENDING)", flush=True)
    return h.check(what, ok, detail)


def sh(cmd, input=None, timeout=60, env=None):
    """Run a shell command line (bash); returns (rc, stdout, stderr, seconds)."""
    t0 = time.time()
    p = subprocess.Popen(cmd, shell=True, executable="/bin/bash", stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(input, timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        rc = "timeout"
    return rc, out, err, time.time() - t0


def run(args, input=None, timeout=60, redirect=""):
    cmd = " ".join(shq(a) for a in [RUN, *args]) + (" " + redirect if redirect else "")
    return sh(cmd, input=input, timeout=timeout)


def shq(s):
    return "'" + str(s).replace("'", "'\\''") + "'"


def crashed(rc, err):
    if rc == "timeout":
        return "did not finish (timeout)"
    if rc < 0 or rc >= 128:
        return f"killed or crashed (status {rc})"
    if re.search(rb"Sanitizer|runtime error:|LeakSanitizer", err):
        return "sanitizer report"
    return None


def case(what, result, code, needles=(), stdout=None, extra_ok=True, extra_detail=""):
    """Check one case: exit status `code` (int or set), every regex in needles
    found in stderr, stdout equal to `stdout` when given (b"" on failure)."""
    global cases
    cases += 1
    rc, out, err, _ = result
    errs = err.decode("utf-8", "replace")
    problems = []
    c = crashed(rc, err)
    if c:
        problems.append(c)
    codes = code if isinstance(code, (set, frozenset)) else {code}
    if rc not in codes:
        problems.append(f"exit {rc}, want {sorted(codes)}")
    for n in needles:
        if not re.search(n, errs):
            problems.append(f"stderr lacks /{n}/")
    if stdout is None and code != 0 and 0 not in codes:
        stdout = b""
    if stdout is not None and out != stdout:
        problems.append(f"stdout {out[:80]!r}, want {stdout[:80]!r}")
    if not extra_ok:
        problems.append(extra_detail)
    detail = "; ".join(problems) + f"\n stderr: {errs.strip()[:300]}"
    if what in PENDING:
        if problems:
            print(f"  PENDING {what} (known bug, not counted): {'; '.join(problems)}", flush=True)
            return False
        print(f"  note: pending case now passes: {what} (remove it from PENDING)", flush=True)
    return h.check(what, not problems, detail)


def export(fixture, out):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "-q",
                        os.path.join(ROOT, "tests", "fixtures", fixture, "hf"), out],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"cannot export {fixture}: {p.stderr.decode()[-400:]}")
    return open(out, "rb").read()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


# --- setup -------------------------------------------------------------------
shutil.rmtree(BUILD, ignore_errors=True)
os.makedirs(BUILD)
MODEL = os.path.join(BUILD, "good.bin")
GOOD = export("f32_st_basic", MODEL)
SIZE = len(GOOD)
TOK_OFF, TOK_BYTES, W_OFF, W_BYTES, FILE_BYTES = struct.unpack_from("<5Q", GOOD, 56)
SEC = GOOD[TOK_OFF:TOK_OFF + TOK_BYTES]
N_TOK, N_MERGES, N_SPECIAL, BLOB = struct.unpack_from("<4I", SEC, 12)
OFFS = list(struct.unpack_from(f"<{N_TOK + 1}I", SEC, 32))
MP = 32 + 4 * (N_TOK + 1)
SP = MP + 12 * N_MERGES
BP = SP + 4 * N_SPECIAL
VOCAB = struct.unpack_from("<I", GOOD, 36)[0]
assert FILE_BYTES == SIZE and TOK_OFF == 256
TOKFILE = write(os.path.join(BUILD, "good.tok"), SEC)

ok = run([MODEL, "-p", "The keeper", "-n", "4", "-t", "0"])
if not h.check("the good checkpoint runs", ok[0] == 0 and ok[1], ok[2]):
    h.done()
GOOD_TEXT = ok[1]

BAD = os.path.join(BUILD, "damaged-model.bin")


def bad_model(what, data, needles=(), code=3, args=("-p", "The keeper", "-n", "4", "-t", "0"),
              path=BAD, stdout=None):
    write(path, data)
    base = re.escape(os.path.basename(path))
    n = [base, *needles] if code == 3 else list(needles)
    return case(what, run([path, *args]), code, n, stdout=stdout)


def put(data, off, fmt, *vals):
    b = bytearray(data)
    struct.pack_into(fmt, b, off, *vals)
    return bytes(b)


# --- 1. truncated checkpoints ------------------------------------------------
cuts = {0, 1, 7, 8, 9, 15, 16, 17, 100, 255, 256, 257}
cuts |= {o for o in range(8, 104, 4)}                     # every header field boundary
cuts |= {o - 1 for o in range(12, 104, 4)}                 # ... and the byte before
sec_marks = [32, MP, SP, BP, BP + BLOB // 2, TOK_BYTES - 1]
cuts |= {TOK_OFF + m for m in sec_marks} | {TOK_OFF + 4, TOK_OFF + 20, TOK_OFF + 100}
cuts |= {TOK_OFF + TOK_BYTES, W_OFF - 1, W_OFF, W_OFF + 1, W_OFF + 4, W_OFF + W_BYTES // 3,
         W_OFF + W_BYTES // 2, SIZE - 64, SIZE - 5, SIZE - 4, SIZE - 1}
for cut in sorted(cuts):
    needle = "short|bytes|truncated" if cut >= 16 or cut == 0 else "short"
    bad_model(f"checkpoint truncated to {cut} bytes", GOOD[:cut], [needle])
# a few of them also in the other modes (the whole file is checked in every mode)
for cut in (0, 200, TOK_OFF + 100, SIZE - 1):
    for mode in (["--tokenize", "-p", "x"], ["--detokenize", "-p", "5"], ["--score", "-p", "a b c"],
                 ["--ids", "-p", "5 6", "-n", "2"]):
        bad_model(f"checkpoint truncated to {cut} bytes ({mode[0]})", GOOD[:cut], args=mode)
bad_model("checkpoint with 1 byte appended", GOOD + b"\0", ["bytes"])
bad_model("checkpoint with 64 bytes appended", GOOD + b"\0" * 64, ["bytes"])

# --- 2. magic and version ----------------------------------------------------
for magic in (b"XXXXXXXX", b"gpt2ckpt", b"GPT2CKP\0", b"\0" * 8, b"\x7fELF\x02\x01\x01\0"):
    bad_model(f"wrong magic {magic!r}", magic + GOOD[8:], ["magic"])
for v in (0, 2, 0xFFFFFFFF, 0x01000000):
    bad_model(f"version {v:#x}", put(GOOD, 8, "<I", v), ["version"])
for v in (0, 255, 257, 512, 0xFFFFFFFF):
    bad_model(f"header_bytes {v}", put(GOOD, 12, "<I", v), ["header"])
# a tokenizer file's magic on a checkpoint: refused as a model for generation
bad_model("a tokenizer's magic on a checkpoint (generation)", b"GPT2TOK_" + GOOD[8:],
          ["tokenizer file"], code=2)
bad_model("a tokenizer's magic on a checkpoint (--tokenize)", b"GPT2TOK_" + GOOD[8:],
          ["tokenizer"], args=("--tokenize", "-p", "x"))

# --- 3. each header field set to 0, -1 (0xff..), huge, and a few near misses ---
# (name, offset, format, {value: expected exit}) ; 0 means the file stays valid
U32 = "<I"
fields = [
    ("n_layer", 16, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 4097: 3, 3: 3, 1: 3}),
    ("n_head", 20, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 3: 3, 64: 3, 8: 0, 1: 0}),
    ("n_embd", 24, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 33: 3, 64: 3}),
    ("n_inner", 28, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 127: 3, 129: 3}),
    ("n_ctx", 32, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 31: 3, 33: 3}),
    ("vocab_size", 36, U32, {0: 3, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, VOCAB - 1: 3, VOCAB + 1: 3}),
    ("activation", 44, U32, {0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 4: 3, 1: 0, 2: 0, 3: 0}),
    ("flags", 48, U32, {0: 0, 0xFFFFFFFF: 3, 0x7FFFFFFF: 3, 8: 3, 1: 3, 6: 0}),
    ("eos_token_id", 52, U32, {0: 0, 0xFFFFFFFF: 0, 0xFFFFFFFE: 3, 0x7FFFFFFF: 3, VOCAB: 3, 0x80000000: 3}),
    ("bos_token_id", 96, U32, {0: 0, 0xFFFFFFFF: 0, 0xFFFFFFFE: 3, 0x7FFFFFFF: 3, VOCAB: 3}),
    ("tokenizer_offset", 56, "<Q", {0: 3, 2**64 - 1: 3, 2**62: 3, 255: 3, 264: 3, SIZE: 3}),
    ("tokenizer_bytes", 64, "<Q", {0: 3, 2**64 - 1: 3, 2**62: 3, TOK_BYTES - 1: 3, TOK_BYTES + 1: 3,
                                   SIZE: 3, 2**64 - 256: 3}),
    ("weights_offset", 72, "<Q", {0: 3, 2**64 - 1: 3, 2**62: 3, W_OFF + 1: 3, W_OFF - 64: 3,
                                  W_OFF + 64: 3, SIZE: 3, SIZE + 64: 3, 2**64 - 64: 3}),
    ("weights_bytes", 80, "<Q", {0: 3, 2**64 - 1: 3, 2**62: 3, W_BYTES - 64: 3, W_BYTES + 64: 3}),
    ("file_bytes", 88, "<Q", {0: 3, 2**64 - 1: 3, 2**62: 3, SIZE - 1: 3, SIZE + 1: 3}),
]
for name, off, fmt, vals in fields:
    for v, code in vals.items():
        shown = v - 2**32 if fmt == U32 and v >= 2**31 else v
        data = put(GOOD, off, fmt, v)
        if code == 3:
            bad_model(f"{name} = {shown}", data)
        else:
            bad_model(f"{name} = {shown} (still a valid file)", data, code=0,
                      stdout=None)
for v, code in ((0.0, 0), (-0.0, 0), (-1e-5, 3), (1.0, 3), (float("inf"), 3), (float("nan"), 3),
                (3.4e38, 3), (1e-12, 0), (0.5, 0)):
    bad_model(f"layer_norm_epsilon = {v}", put(GOOD, 40, "<f", v), code=code,
              needles=["epsilon"] if code else ())
bad_model("layer_norm_epsilon = 0xffffffff", put(GOOD, 40, "<I", 0xFFFFFFFF), ["epsilon"])
# the reserved bytes 100..255 are not part of any check: no crash either way
bad_model("reserved header bytes not zero", GOOD[:100] + b"\xff" * 156 + GOOD[256:], code={0, 3})
# every header byte at 0xff, and the whole header zero
bad_model("header all 0xff after the magic", GOOD[:8] + b"\xff" * 248 + GOOD[256:])
bad_model("header all zero after the magic", GOOD[:8] + b"\0" * 248 + GOOD[256:])

# --- 4. tokenizer-section corruption inside the checkpoint --------------------
T = TOK_OFF


def tok_put(off, fmt, *vals):
    return put(GOOD, T + off, fmt, *vals)


first_multi = next(i for i in range(N_TOK) if OFFS[i + 1] - OFFS[i] > 1 and i > 0)
first_merge = struct.unpack_from("<3I", SEC, MP)
other = next(i for i in range(256, N_TOK) if OFFS[i + 1] - OFFS[i] == OFFS[first_merge[2] + 1] - OFFS[first_merge[2]]
             and i != first_merge[2])
ID_A = next(i for i in range(N_TOK) if SEC[BP + OFFS[i]:BP + OFFS[i + 1]] == b"A")
tok_cases = [
    ("tokenizer magic wrong", tok_put(0, "8s", b"GPT2TOKX"), "magic"),
    ("tokenizer version 99", tok_put(8, "<I", 99), "version"),
    ("tokenizer version 1 read as version 2", tok_put(8, "<I", 2), "tokenizer section"),
    ("tokenizer version 0xffffffff", tok_put(8, "<I", 0xFFFFFFFF), "version"),
    ("tokenizer reserved field not 0", tok_put(28, "<I", 1), "reserved"),
    ("tokenizer n_tokens 0", tok_put(12, "<I", 0), "n_tokens"),
    ("tokenizer n_tokens 255", tok_put(12, "<I", 255), "n_tokens"),
    ("tokenizer n_tokens + 1", tok_put(12, "<I", N_TOK + 1), "size"),
    ("tokenizer n_tokens - 1", tok_put(12, "<I", N_TOK - 1), "size"),
    ("tokenizer n_tokens 0xffffffff", tok_put(12, "<I", 0xFFFFFFFF), "n_tokens"),
    ("tokenizer n_tokens 0x7ffffffe", tok_put(12, "<I", 0x7FFFFFFE), "size"),
    ("tokenizer n_merges + 1", tok_put(16, "<I", N_MERGES + 1), "size"),
    ("tokenizer n_merges 0xffffffff", tok_put(16, "<I", 0xFFFFFFFF), "size"),
    ("tokenizer n_special + 1", tok_put(20, "<I", N_SPECIAL + 1), "size"),
    ("tokenizer n_special 0xffffffff", tok_put(20, "<I", 0xFFFFFFFF), "size"),
    ("tokenizer blob size lies (+1)", tok_put(24, "<I", BLOB + 1), "size"),
    ("tokenizer blob size lies (-1)", tok_put(24, "<I", BLOB - 1), "size"),
    ("tokenizer blob size 0xffffffff", tok_put(24, "<I", 0xFFFFFFFF), "size"),
    ("tokenizer token_offsets[0] = 1", tok_put(32, "<I", 1), "offsets"),
    ("tokenizer offsets non-monotonic",
     tok_put(32 + 4 * first_multi, "<I", OFFS[first_multi + 1] + 1), "decreasing|offsets"),
    ("tokenizer offsets swapped", put(tok_put(32 + 4 * (first_multi + 1), "<I", OFFS[first_multi]),
                                      T + 32 + 4 * first_multi, "<I", OFFS[first_multi + 1]), "offsets|decreasing|merge|byte"),
    ("tokenizer offset past the blob", tok_put(32 + 4 * 300, "<I", BLOB + 5), "past the blob|offsets"),
    ("tokenizer offset 0xffffffff", tok_put(32 + 4 * 300, "<I", 0xFFFFFFFF), "past the blob|offsets"),
    ("tokenizer last offset != blob size", tok_put(32 + 4 * N_TOK, "<I", BLOB - 1), "blob_bytes|offsets"),
    ("tokenizer merge left id = n_tokens", tok_put(MP, "<I", N_TOK), "merge"),
    ("tokenizer merge right id 0xffffffff", tok_put(MP + 4, "<I", 0xFFFFFFFF), "merge"),
    ("tokenizer merge merged id = n_tokens", tok_put(MP + 8, "<I", N_TOK), "merge"),
    ("tokenizer last merge id 0x80000000", tok_put(MP + 12 * (N_MERGES - 1), "<I", 0x80000000), "merge"),
    ("tokenizer merged bytes not the concatenation", tok_put(MP + 8, "<I", other), "concatenation"),
    ("tokenizer merge with left and right swapped",
     tok_put(MP, "<2I", first_merge[1], first_merge[0]) if first_merge[0] != first_merge[1] else tok_put(MP + 8, "<I", 0),
     "concatenation"),
    ("tokenizer special id = n_tokens", tok_put(SP, "<I", N_TOK), "special"),
    ("tokenizer special id 0xffffffff", tok_put(SP, "<I", 0xFFFFFFFF), "special"),
    ("tokenizer single byte missing", put(GOOD, T + BP + OFFS[ID_A], "B", ord("B")), "single byte 0x41"),
    ("tokenizer section all zero", GOOD[:T] + b"\0" * TOK_BYTES + GOOD[T + TOK_BYTES:], "magic"),
    ("tokenizer section all 0xff", GOOD[:T] + b"\xff" * TOK_BYTES + GOOD[T + TOK_BYTES:], "magic"),
]
for what, data, needle in tok_cases:
    bad_model(what, data, [needle])
# a tokenizer with more tokens than the model's vocabulary
small = make_seeds.small_section()
n_small = struct.unpack_from("<I", small, 12)[0]
bad_model("tokenizer has more tokens than the model's vocabulary",
          make_seeds.checkpoint(small, V=n_small - 2, eos=0), ["tokens"])
bad_model("model vocabulary larger than the tokenizer (valid, padded)",
          make_seeds.checkpoint(small, V=n_small + 40, P=16, eos=-1), code=0, stdout=None)

# --- 5. the model path itself ------------------------------------------------
case("a missing model in a missing directory", run([os.path.join(BUILD, "no", "such", "m.bin"), "-p", "x"]),
     3, ["m.bin"])
case("the model is /dev/zero", run(["/dev/zero", "-p", "x"]), 3, ["/dev/zero", "regular"])
link = os.path.join(BUILD, "dir-link.bin")
os.symlink(BUILD, link)
case("a symlink to a directory as the model", run([link, "-p", "x"]), 3, ["dir-link.bin"])
dangling = os.path.join(BUILD, "dangling.bin")
os.symlink(os.path.join(BUILD, "gone"), dangling)
case("a dangling symlink as the model", run([dangling, "-p", "x"]), 3, ["dangling.bin"])
fifo = os.path.join(BUILD, "fifo.bin")
os.mkfifo(fifo)
case("a FIFO as the model", run([fifo, "-p", "x"], timeout=5), 3, ["fifo.bin"])
case("an empty model path", run(["", "-p", "x"]), {2, 3}, [])
bad_model("the model is a 15-byte file", b"GPT2CKPT\x01\0\0\0\0\0\0", ["short"])

# --- 6. standalone tokenizer files (--tokenize / --detokenize) ---------------
TBAD = os.path.join(BUILD, "damaged.tok")
for what, data, needle in [
    ("tokenizer file truncated to 8 bytes", SEC[:8], "short"),
    ("tokenizer file truncated to 31 bytes", SEC[:31], "short"),
    ("tokenizer file truncated to 32 bytes", SEC[:32], "size|short"),
    ("tokenizer file truncated inside the offsets", SEC[:100], "size"),
    ("tokenizer file truncated inside the merges", SEC[:MP + 20], "size"),
    ("tokenizer file truncated inside the blob", SEC[:-1], "size"),
    ("tokenizer file with a byte appended", SEC + b"\0", "size"),
    ("tokenizer file with a non-monotonic offset", put(SEC, 32 + 4 * first_multi, "<I", OFFS[first_multi + 1] + 1), "decreasing|offsets"),
    ("tokenizer file with a merge id out of range", put(SEC, MP + 4, "<I", N_TOK + 7), "merge"),
    ("tokenizer file with a special id out of range", put(SEC, SP, "<I", N_TOK), "special"),
    ("tokenizer file whose blob size lies", put(SEC, 24, "<I", BLOB + 4), "size"),
]:
    for mode in (["--tokenize", "-p", "hello"], ["--detokenize", "-p", "5 6"]):
        write(TBAD, data)
        case(f"{what} ({mode[0]})", run([TBAD, *mode]), 3, ["damaged.tok", needle])
case("a good tokenizer file with --score", run([TOKFILE, "--score", "-p", "a b"]), 2, ["good.tok", "tokenizer"])
case("a good tokenizer file round-trips odd bytes",
     sh(f"{shq(RUN)} {shq(TOKFILE)} --tokenize | {shq(RUN)} {shq(TOKFILE)} --detokenize",
        input=b"\xff\x00<|endoftext|>\xe2\x82 \xf0\x9f\x98\x80"), 0, stdout=b"\xff\x00<|endoftext|>\xe2\x82 \xf0\x9f\x98\x80")

# --- 7. --dump-logits: no file left behind or damaged -------------------------
dump = os.path.join(BUILD, "logits.f32")
write(BAD, GOOD[:SIZE - 1])
case("--dump-logits with a bad model: exit 3", run([BAD, "--score", "-p", "a b c", "--dump-logits", dump]), 3,
     ["damaged-model.bin"])
h.check("--dump-logits with a bad model: no file created", not os.path.exists(dump))
write(dump, b"precious")
run([BAD, "--score", "-p", "a b c", "--dump-logits", dump])
h.check("--dump-logits with a bad model: an existing file is untouched", open(dump, "rb").read() == b"precious")
case("--dump-logits with an unscorable input: exit 4", run([MODEL, "--score", "-p", "", "--dump-logits", dump]), 4)
h.check("--dump-logits with an unscorable input: an existing file is untouched",
        open(dump, "rb").read() == b"precious")
case("--dump-logits into a missing directory", run([MODEL, "--score", "-p", "a b c", "--dump-logits",
                                                   os.path.join(BUILD, "no", "dir", "l.f32")]),
     1, ["l.f32"], stdout=None)
case("--dump-logits to /dev/full", run([MODEL, "--score", "-p", "a b c", "--dump-logits", "/dev/full"]),
     1, ["dump-logits"], stdout=None)

# --- 8. the CLI matrix beyond test_cli.py ---------------------------------------
ODD = b"caf\xc3\xa9 \xff\xfe\x00 nul\x00 \xe2\x82 \xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 end\xf0\x9f"
ids_odd = run([MODEL, "--tokenize"], input=ODD)
case("invalid UTF-8 and NUL on stdin: --tokenize", ids_odd, 0, stdout=ids_odd[1])
h.check("--tokenize of odd bytes prints one line of ids", re.fullmatch(rb"\d+( \d+)*\n", ids_odd[1]), ids_odd[1])
case("invalid UTF-8 and NUL on stdin: --tokenize --special", run([MODEL, "--tokenize", "--special"], input=ODD), 0,
     stdout=ids_odd[1])
case("odd bytes: --tokenize | --detokenize is exact", run([MODEL, "--detokenize"], input=ids_odd[1]), 0, stdout=ODD)
case("invalid UTF-8 on stdin: --detokenize refuses it", run([MODEL, "--detokenize"], input=b"5 \xff 6"), 4, ["token id"])
case("NUL byte on stdin: --detokenize refuses it", run([MODEL, "--detokenize"], input=b"5 6\x00 7"), 4, ["NUL"])
case("invalid UTF-8 on stdin: --ids refuses it", run([MODEL, "--ids", "-n", "2"], input=b"5 \xc3\x28"), 4, ["token id"])
case("NUL byte on stdin: --ids refuses it", run([MODEL, "--ids", "-n", "2"], input=b"5\x006"), 4, ["NUL"])
sc = run([MODEL, "--score"], input=ODD)
n_ids = len(ids_odd[1].split())
case("invalid UTF-8 and NUL on stdin: --score", sc, 0, ["score: tokens=%d " % (n_ids - 1)],
     extra_ok=len(sc[1].splitlines()) == n_ids - 1, extra_detail=f"{len(sc[1].splitlines())} lines")
ge = run([MODEL, "--echo", "-n", "3", "-t", "0"], input=ODD)
case("invalid UTF-8 and NUL on stdin: --echo prints the prompt's exact bytes", ge, 0,
     extra_ok=ge[1].startswith(ODD), extra_detail=f"stdout {ge[1][:60]!r}")
case("invalid UTF-8 and NUL in --special generation", run([MODEL, "--special", "-n", "3", "-t", "0"],
                                                         input=ODD + b"<|endoftext|>"), 0)
case("only NUL bytes on stdin: generation", run([MODEL, "-n", "3", "-t", "0"], input=b"\0" * 20), 0)
case("invalid UTF-8 in --stop", sh(f"{shq(RUN)} {shq(MODEL)} -n 5 -t 0 -p x --stop $'\\xff\\xfe'"), 0)
case("invalid UTF-8 in -p", sh(f"{shq(RUN)} {shq(MODEL)} -n 3 -t 0 -p $'\\xff\\xc3'"), 0)

# ids at and beyond the edges
case("--detokenize: last id", run([MODEL, "--detokenize", "-p", str(N_TOK - 1)]), 0, stdout=None)
for bad_ids, needle in [(str(N_TOK), str(N_TOK)), ("4294967296", "4294967296"),
                        ("99999999999999999999999", "9999"), ("-0", "-0"), ("+5", r"\+5"), ("0x10", "0x10"),
                        ("5.0", r"5\.0"), ("1e3", "1e3"), ("5,6", "5,6"), ("2147483648", "2147483648"),
                        ("x" * 100, "xxxx")]:
    case(f"--detokenize id '{bad_ids[:20]}' refused", run([MODEL, "--detokenize", "-p", "5 " + bad_ids]), 4,
         [needle])
pad_model = os.path.join(BUILD, "padded.bin")
export("padded_vocab_1head_st", pad_model)
pad_v = struct.unpack_from("<I", open(pad_model, "rb").read(), 36)[0]
pad_t = struct.unpack_from("<I", open(pad_model, "rb").read(), 256 + 12)[0]
case("--detokenize: an id in the model's padding but not the tokenizer's", run([pad_model, "--detokenize", "-p", str(pad_t)]),
     4, [str(pad_t)])
case("--ids generation: an id in the model's padding is accepted", run([pad_model, "--ids", "-p", str(pad_v - 1), "-n", "3", "-t", "0"]),
     0, stdout=None)
case("--ids --score: id out of range", run([MODEL, "--ids", "--score", "-p", f"1 2 {VOCAB}"]), 4, [str(VOCAB)])

# empty input in every mode
case("empty prompt: --tokenize prints an empty line", run([MODEL, "--tokenize", "-p", ""]), 0, stdout=b"\n")
case("empty stdin: --tokenize prints an empty line", run([MODEL, "--tokenize"], input=b""), 0, stdout=b"\n")
case("empty prompt: --detokenize prints nothing", run([MODEL, "--detokenize", "-p", ""]), 0, stdout=b"")
case("whitespace only: --detokenize prints nothing", run([MODEL, "--detokenize"], input=b" \n\t "), 0, stdout=b"")
case("empty prompt: --score refuses", run([MODEL, "--score", "-p", ""]), 4, ["at least 2"])
case("empty stdin: --score refuses", run([MODEL, "--score"], input=b""), 4, ["at least 2"])
case("empty prompt: --ids --score refuses", run([MODEL, "--ids", "--score", "-p", "  "]), 4, ["at least 2"])
e = run([MODEL, "--ids", "-p", "", "-n", "4", "-t", "0"])
case("empty prompt: --ids generation starts from <|endoftext|>", e, 0,
     extra_ok=re.fullmatch(rb"(\d+( \d+)*)?\n", e[1]) is not None, extra_detail=repr(e[1]))
case("empty stdin: generation", run([MODEL, "-n", "4", "-t", "0"], input=b""), 0)
case("empty prompt with --echo", run([MODEL, "--echo", "-p", "", "-n", "4", "-t", "0"]), 0)
case("empty prompt file", run([MODEL, "-n", "2", "-t", "0", "-f", write(os.path.join(BUILD, "empty.txt"), b"")]), 0)
case("a directory as the prompt file", run([MODEL, "-n", "2", "-f", BUILD]), 4, ["badinput"])
case("stdin closed, no prompt", run([MODEL, "-n", "2"], redirect="<&-"), 4, ["standard input"])
case("stdin closed, prompt from -p", run([MODEL, "-n", "2", "-t", "0", "-p", "The keeper"], redirect="<&-"), 0,
     stdout=run([MODEL, "-n", "2", "-t", "0", "-p", "The keeper"])[1])

# stdout closed or full, in every mode
modes = [
    ("generation", ["-p", "The keeper", "-n", "5", "-t", "0"]),
    ("--ids generation", ["--ids", "-p", "5 6", "-n", "5", "-t", "0"]),
    ("--echo", ["--echo", "-p", "The keeper", "-n", "0"]),
    ("--tokenize", ["--tokenize", "-p", "The keeper"]),
    ("--tokenize of nothing", ["--tokenize", "-p", ""]),
    ("--detokenize", ["--detokenize", "-p", "5 6 7"]),
    ("--score", ["--score", "-p", "The keeper wrote"]),
]
for name, args in modes:
    case(f"stdout closed: {name}", run([MODEL, *args], redirect=">&-"), 1, ["standard output"])
    if name != "generation":  # test_cli.py checks plain generation on /dev/full
        case(f"stdout full: {name}", run([MODEL, *args], redirect=">/dev/full"), 1, ["standard output"])
case("--detokenize of nothing on /dev/full", run([MODEL, "--detokenize", "-p", ""], redirect=">/dev/full"), 0,
     stdout=b"")
write(dump, b"precious")
r = run([MODEL, "--score", "-p", "The keeper wrote", "--dump-logits", dump], redirect=">&-")
case("--score --dump-logits with stdout closed", r, 1, ["standard output"])

# SIGPIPE: a long generation into | head -c 10 ends quietly and at once
LONG = os.path.join(BUILD, "long-context.bin")
write(LONG, make_seeds.checkpoint(make_seeds.small_section(), L=1, H=1, C=4, F=8, P=20000, eos=-1, seed=3))
for name, args in [("text", ["-n", "20000", "-t", "1", "-s", "1", "-p", "hello"]),
                   ("--ids", ["--ids", "-n", "20000", "-t", "1", "-s", "1", "-p", "5"]),
                   ("--detokenize", ["--detokenize", "-f", "-"])]:
    feed = ""
    if name == "--detokenize":
        feed = "< " + shq(write(os.path.join(BUILD, "many-ids.txt"), b"259 260 32\n" * 200000)) + " "
    threads = "" if name == "--detokenize" else "--threads 1"  # (no threads in --detokenize: an error)
    cmd = (f"set -o pipefail; {shq(RUN)} {shq(LONG)} {' '.join(shq(a) for a in args)} {threads} {feed}"
           f"| head -c 10 | wc -c")
    rc, out, err, secs = sh(cmd, timeout=120)
    case(f"SIGPIPE: {name} | head -c 10 exits 0 quietly", (rc, out, err, secs), 0, stdout=b"10\n",
         extra_ok=err == b"", extra_detail=f"stderr {err[:200]!r}")
# the same generation without head takes much longer: the pipe ended it early
rc, out, err, full_secs = sh(f"{shq(RUN)} {shq(LONG)} -n 3000 -t 1 -s 1 -p hello --threads 1 | wc -c", timeout=300)
rc2, out2, err2, head_secs = sh(f"set -o pipefail; {shq(RUN)} {shq(LONG)} -n 3000 -t 1 -s 1 -p hello --threads 1 "
                                f"| head -c 10 >/dev/null", timeout=300)
h.check("SIGPIPE: | head ends a 3000-token generation early",
        rc == 0 and rc2 == 0 and head_secs < full_secs, f"full {full_secs:.2f}s rc {rc}, with head {head_secs:.2f}s rc {rc2}")
cases += 1

# --- 9. valgrind memcheck: one end-to-end run -----------------------------------
# valgrind cannot decode AVX-512, which -march=native emits on a machine that
# has it: make builds tests/build/run-valgrind for AVX2 at most, and both runs
# below (with and without valgrind) use that binary.
VG_RUN = os.path.join(ROOT, "tests", "build", "run-valgrind")
if not os.path.exists(VG_RUN):
    VG_RUN = RUN
with open(VG_RUN, "rb") as f:
    sanitized = b"__asan_init" in f.read()
if sanitized:
    print("  SKIP valgrind memcheck: ./run is built with AddressSanitizer (SANITIZE=1), which cannot run "
          "under valgrind; not counted")
elif shutil.which("valgrind"):
    for name, args in [("generation", ["-p", "The keeper wrote", "-n", "8", "-t", "0.8", "-s", "5", "--threads", "2"]),
                       ("--score", ["--score", "-p", "The keeper wrote in her log"]),
                       ("--tokenize", ["--tokenize", "-p", "caf\u00e9 <|endoftext|> x"])]:
        log = os.path.join(BUILD, "valgrind.log")
        cmd = ["valgrind", "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
               "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99",
               f"--log-file={log}", VG_RUN, MODEL, *args]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        vlog = open(log).read()
        m = re.search(r"ERROR SUMMARY: (\d+) errors", vlog)
        leaks = re.search(r"definitely lost: ([\d,]+) bytes", vlog)
        clean = p.returncode == 0 and m and m.group(1) == "0"
        cases += 1
        check(f"valgrind memcheck, {name}: no invalid access, no leak", clean,
                f"exit {p.returncode}; {m.group(0) if m else 'no summary'}; "
                f"definitely lost {leaks.group(1) if leaks else '0'}\n"
                + "\n".join(l for l in vlog.splitlines() if "==" in l)[-1500:])
        want = subprocess.run([VG_RUN, MODEL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600).stdout
        h.check(f"valgrind memcheck, {name}: same output as without valgrind", p.stdout == want)
else:
    print("  SKIP valgrind memcheck: valgrind is not installed (apt-get install valgrind); not counted")

print(f"badinput: the matrix tried {cases} bad or edge-case inputs")
h.done()
