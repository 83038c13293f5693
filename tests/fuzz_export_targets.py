#!/usr/bin/env python3
"""The fuzz targets for export.py's parsers (standard library only).

One entry point per parser, each taking the fuzzer's bytes and handing them
to export.py the way an export meets them: written into a model directory
under the file name export.py looks for, then read with the function
export_model / export_tokenizer_only calls.  Shared by the atheris harness
(tests/fuzz_export.py) and the replay test (tests/test_fuzz_export.py).

The contract each target checks: export.py either succeeds or refuses with
an ExportError whose message is one line naming a file of the directory.
Anything else (any other exception, a MemoryError, a hang) escapes the
target and is a bug in export.py.

Targets (the directory tests/fuzz/export/<name>/ holds each one's corpus):

  safetensors       model.safetensors.  First byte odd: the rest is the
                    JSON header alone (length prefix and the data area its
                    data_offsets reach, up to 1 MB, added here); even: the
                    rest is the whole file.
  torch_zip         pytorch_model.bin as it is (zip archive).
  torch_pickle      the data.pkl of a torch.save archive; the archive is
                    built here around it, with each storage the pickle
                    declares (first byte: bit 0 deflate the members, bit 1
                    byteorder "big", bit 2 no byteorder member).
  shard_index       model.safetensors.index.json beside the seven shards of
                    tests/fixtures/sharded_bf16_st.
  config_json       config.json (read_config).
  tokenizer_json    tokenizer.json alone (load_tokenizer, then the section).
  vocab_merges      vocab.json NUL merges.txt.
  tokenizer_config  tokenizer_config.json NUL special_tokens_map.json NUL
                    added_tokens.json (each present when its part is), over
                    tests/fixtures/hub_like_bin's vocab.json + merges.txt
                    (first byte even) or its tokenizer.json (odd).

The weights targets load every tensor of at most MAX_LOAD_NUMEL elements
(export.py loads only tensors whose shapes config.json implies, which it
checks first) and match the tensors against a small GPT-2's config.json
(tests/contract/head1_relu; shard_index: the sharded fixture's).
"""
import contextlib
import io
import json
import os
import pickle
import shutil
import struct
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
import export  # noqa: E402

CORPUS = os.path.join(HERE, "fuzz", "export")
FIXTURES = os.path.join(HERE, "fixtures")
SHARDED = os.path.join(FIXTURES, "sharded_bf16_st", "hf")
HUB_TOK = os.path.join(FIXTURES, "hub_like_bin", "hf")
SMALL_MODEL = os.path.join(HERE, "contract", "head1_relu", "hf")

MAX_LOAD_NUMEL = 1 << 20          # tensors loaded by the weights targets
MAX_STORAGE_BYTES = 1 << 20       # storages the torch_pickle target writes
TIMEOUT = 10                      # seconds an input may take
MEMORY_LIMIT = 3 << 30            # address space (RLIMIT_AS) of a fuzzing process


class ContractError(AssertionError):
    """export.py refused, but not the way the project's rules say."""


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Workdir:
    """One model directory reused for every input: the fixed files stay, the
    fuzzed ones are rewritten each time."""

    def __init__(self, fixed=()):
        self.root = tempfile.mkdtemp(prefix="fuzz_export_")
        self.dir = os.path.join(self.root, "hf")
        os.makedirs(self.dir)
        self.fixed = set()
        for src, name in fixed:
            shutil.copyfile(src, os.path.join(self.dir, name))
            self.fixed.add(name)

    def write(self, files):
        for name in os.listdir(self.dir):
            if name not in self.fixed:
                os.unlink(os.path.join(self.dir, name))
        for name, data in files.items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(data)
        return self.dir

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


_workdirs = {}
_configs = {}


def workdir(name, fixed=()):
    if name not in _workdirs:
        _workdirs[name] = Workdir(fixed)
    return _workdirs[name]


def cleanup():
    for w in _workdirs.values():
        w.cleanup()
    _workdirs.clear()


def config(hf_dir):
    """A committed model's config.json, as export.py reads it."""
    if hf_dir not in _configs:
        with contextlib.redirect_stderr(io.StringIO()):
            _configs[hf_dir] = export.read_config(hf_dir)
    return _configs[hf_dir]


def use_tensors(source, tensors, config_dir=SMALL_MODEL):
    """What export_model does with the tensors it opened: match them against
    config.json (config_dir's), read each (here: each small enough), convert
    to float32."""
    for name, t in tensors.items():
        n = export.prod(t.shape)
        if n <= MAX_LOAD_NUMEL:
            a = t.load()
            if len(a) != n:   # export_model's own check
                raise export.ExportError(f"{t.path}: tensor {name}: read {len(a)} values, expected {n}")
    export.match_tensors(config(config_dir), tensors, source)


def split(data, n):
    """data's NUL-separated parts, at most n."""
    return data.split(b"\x00", n - 1)


def st_data_size(header):
    """The data area a safetensors header's data_offsets reach (256 bytes when
    they do not say, at most 1 MB)."""
    try:
        h = json.loads(header)
        ends = [v["data_offsets"][1] for k, v in h.items() if k != "__metadata__"]
        n = max(e for e in ends if type(e) is int)
    except Exception:
        return 256
    return min(max(n, 0), 1 << 20)


def t_safetensors(data):
    if not data:
        return None
    if data[0] & 1:
        header = data[1:]
        n = st_data_size(header)
        body = struct.pack("<Q", len(header)) + header + bytes((i * 7 + 3) & 0x3f for i in range(n))
    else:
        body = data[1:]
    d = workdir("safetensors").write({"model.safetensors": body})
    use_tensors(*export.open_weights(d))
    return d


def t_torch_zip(data):
    d = workdir("torch_zip").write({"pytorch_model.bin": data})
    use_tensors(*export.open_weights(d))
    return d


def declared_storages(pkl):
    """{key: bytes} for the storages a data.pkl declares, as export.py's own
    unpickler records them; {} when it does not unpickle."""
    up = export.RestrictedUnpickler(io.BytesIO(pkl), "data.pkl")
    try:
        export.check_pickle_memo(pkl)
        up.load()
    except Exception:
        pass
    out, total = {}, 0
    for key, ref in up.storages.items():
        n = ref.numel * ref.stype.itemsize
        total += n
        if total > MAX_STORAGE_BYTES:
            break
        out[key] = bytes((i * 7 + 3) & 0x3f for i in range(n))   # small finite floats in any dtype
    return out


def torch_archive(pkl, flags=0):
    """A torch.save-style zip around data.pkl, with the storages it declares."""
    comp = zipfile.ZIP_DEFLATED if flags & 1 else zipfile.ZIP_STORED
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", comp) as z:
        z.writestr("archive/data.pkl", pkl)
        if not flags & 4:
            z.writestr("archive/byteorder", b"big" if flags & 2 else b"little")
        for key, raw in declared_storages(pkl).items():
            try:
                z.writestr("archive/data/" + key, raw)
            except (ValueError, UnicodeError):
                pass   # a name zipfile cannot write: the archive lacks it
    return buf.getvalue()


def t_torch_pickle(data):
    if not data:
        return None
    d = workdir("torch_pickle").write({"pytorch_model.bin": torch_archive(data[1:], data[0])})
    use_tensors(*export.open_weights(d))
    return d


def shard_files():
    return [(os.path.join(SHARDED, n), n) for n in sorted(os.listdir(SHARDED))
            if n.endswith(".safetensors") and n.startswith("model-")]


def t_shard_index(data):
    d = workdir("shard_index", shard_files()).write({"model.safetensors.index.json": data})
    use_tensors(*export.open_weights(d), config_dir=SHARDED)
    return d


def t_config_json(data):
    d = workdir("config_json").write({"config.json": data})
    export.read_config(d)
    return d


def tokenizer(d):
    """What export_tokenizer_only does with a directory: the files, then the section."""
    export.tokenizer_section(*export.load_tokenizer(d))


def t_tokenizer_json(data):
    d = workdir("tokenizer_json").write({"tokenizer.json": data})
    tokenizer(d)
    return d


def t_vocab_merges(data):
    parts = split(data, 2)
    files = {"vocab.json": parts[0], "merges.txt": parts[1] if len(parts) > 1 else b""}
    d = workdir("vocab_merges").write(files)
    tokenizer(d)
    return d


TOK_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")


def t_tokenizer_config(data):
    if not data:
        return None
    if data[0] & 1:
        w = workdir("tokenizer_config_json", [(os.path.join(HUB_TOK, "tokenizer.json"), "tokenizer.json")])
    else:
        w = workdir("tokenizer_config_bpe", [(os.path.join(HUB_TOK, n), n) for n in ("vocab.json", "merges.txt")])
    d = w.write(dict(zip(TOK_CONFIG_FILES, split(data[1:], 3))))
    tokenizer(d)
    return d


TARGETS = {
    "safetensors": t_safetensors,
    "torch_zip": t_torch_zip,
    "torch_pickle": t_torch_pickle,
    "shard_index": t_shard_index,
    "config_json": t_config_json,
    "tokenizer_json": t_tokenizer_json,
    "vocab_merges": t_vocab_merges,
    "tokenizer_config": t_tokenizer_config,
}


def run_target(name, data):
    """Run one input through target `name`: "ok" when export.py accepts it,
    "refused: <message>" when it refuses cleanly.  A refusal that does not
    name a file of the directory, or takes more than one line, raises
    ContractError; any other exception escapes as it is (the bug)."""
    target = TARGETS[name]
    sink = io.StringIO()   # export.py's warnings
    try:
        with contextlib.redirect_stderr(sink):
            target(data)
        return "ok"
    except export.ExportError as e:
        msg = export.one_line(str(e))   # the line main() writes to stderr
        where = _workdirs.get(_workdir_of(name, data))
        if where is not None and where.dir not in msg:
            raise ContractError(f"refusal names no file of the model directory: {msg!r}") from e
        if "\n" in msg or "\r" in msg:
            raise ContractError(f"refusal is more than one line: {msg!r}") from e
        return "refused: " + msg


def _workdir_of(name, data):
    if name == "tokenizer_config":
        return "tokenizer_config_json" if data and data[0] & 1 else "tokenizer_config_bpe"
    return name


def limit_memory(limit=MEMORY_LIMIT):
    """Cap this process's address space, so that a huge allocation is a
    MemoryError (a finding) rather than the machine swapping."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


# ----------------------------------------------------------------------------
# Seeds: pieces of the committed fixtures (python3 tests/fuzz_export_targets.py --seeds)
# ----------------------------------------------------------------------------

def _fixture_dirs():
    out = []
    for top in ("fixtures", "fixtures_families", "contract"):
        base = os.path.join(HERE, top)
        for name in sorted(os.listdir(base)):
            hf = os.path.join(base, name, "hf")
            if os.path.isdir(hf):
                out.append((f"{top}-{name}", hf))
    return out


def _st_header(path):
    raw = _read(path)
    (n,) = struct.unpack_from("<Q", raw)
    return raw[8:8 + n]


def _tiny_pickle(entries, proto=2):
    """A torch-style state dict pickle written by hand: entries
    [(name, storage type, key, numel, offset, size, stride)]."""
    out = bytearray()
    out += b"\x80" + bytes([proto])
    out += b"ccollections\nOrderedDict\n)R"
    for name, stype, key, numel, offset, size, stride in entries:
        out += b"X" + struct.pack("<I", len(name.encode())) + name.encode()
        out += b"ctorch._utils\n_rebuild_tensor_v2\n("
        out += b"(X" + struct.pack("<I", 7) + b"storage"
        out += b"ctorch\n" + stype.encode() + b"\n"
        out += b"X" + struct.pack("<I", len(key)) + key.encode()
        out += b"X\x03\x00\x00\x00cpu" + b"J" + struct.pack("<i", numel) + b"tQ"
        out += b"J" + struct.pack("<i", offset)
        for tup in (size, stride):
            out += b"(" + b"".join(b"J" + struct.pack("<i", v) for v in tup) + b"t"
        out += b"\x89ccollections\nOrderedDict\n)RtRs"   # requires_grad False, hooks OrderedDict()
    out += b"."
    return bytes(out)


TINY_PICKLES = {
    "f32_matrix": [("wte.weight", "FloatStorage", "0", 12, 0, (3, 4), (4, 1))],
    "views": [("a", "HalfStorage", "0", 16, 2, (2, 3), (1, 2)),
              ("b", "BFloat16Storage", "1", 8, 0, (8,), (1,)),
              ("c", "DoubleStorage", "2", 4, 1, (3,), (1,)),
              ("d", "HalfStorage", "0", 16, 0, (4, 4), (0, 1))],
    "int_storage": [("e", "LongStorage", "0", 2, 0, (2,), (1,))],
}


def make_seeds():
    """Write tests/fuzz/export/<target>/seed-* (deterministic)."""
    seeds = {name: {} for name in TARGETS}
    dirs = _fixture_dirs()

    def add(target, name, data):
        if data not in seeds[target].values():
            seeds[target][name] = data

    for label, hf in dirs:
        for fname in sorted(os.listdir(hf)):
            p = os.path.join(hf, fname)
            if fname == "config.json":
                add("config_json", label, _read(p))
            elif fname.endswith(".safetensors") and not fname.startswith("model-"):
                add("safetensors", label + "-header", b"\x01" + _st_header(p))
            elif fname == "pytorch_model.bin":
                with zipfile.ZipFile(p) as z:
                    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
                    add("torch_pickle", label, b"\x00" + z.read(pkl))
            elif fname == "tokenizer.json":
                add("tokenizer_json", label, _read(p))
            elif fname == "tokenizer_config.json":
                add("tokenizer_config", label + "-bpe", b"\x00" + _read(p))
                add("tokenizer_config", label + "-json", b"\x01" + _read(p))
            elif fname == "model.safetensors.index.json":
                add("shard_index", label, _read(p))
        if os.path.isfile(os.path.join(hf, "vocab.json")):
            add("vocab_merges", label, _read(os.path.join(hf, "vocab.json")) + b"\x00"
                + _read(os.path.join(hf, "merges.txt")))
    # two whole files: the smallest safetensors and torch.save archive
    add("safetensors", "contract-head1_relu-file",
        b"\x00" + _read(os.path.join(HERE, "contract", "head1_relu", "hf", "model.safetensors")))
    small = [(n, t.shape) for n, t in export.open_safetensors(os.path.join(SMALL_MODEL, "model.safetensors")).items()]
    small_pkl = _tiny_pickle([(n, "FloatStorage", str(i), export.prod(shape), 0, shape,
                               tuple(export.prod(shape[k + 1:]) for k in range(len(shape))))
                              for i, (n, shape) in enumerate(small)])
    add("torch_zip", "contract-head1_relu-as-torch", torch_archive(small_pkl, 0))
    add("torch_pickle", "contract-head1_relu-as-torch", b"\x00" + small_pkl)
    add("torch_zip", "fixtures-fp16_untied_eps_bin",
        _read(os.path.join(FIXTURES, "fp16_untied_eps_bin", "hf", "pytorch_model.bin")))
    add("safetensors", "small-header", b"\x01" + (
        b'{"__metadata__":{"format":"pt"},"wte.weight":{"dtype":"F32","shape":[4,8],"data_offsets":[0,128]},'
        b'"b":{"dtype":"F16","shape":[2,3],"data_offsets":[128,140]},'
        b'"c":{"dtype":"BF16","shape":[],"data_offsets":[140,142]},'
        b'"d":{"dtype":"F64","shape":[2],"data_offsets":[144,160]},'
        b'"e":{"dtype":"I64","shape":[0],"data_offsets":[160,160]}}'))
    for name, entries in TINY_PICKLES.items():
        pkl = _tiny_pickle(entries)
        for flags in (0, 1, 2):
            add("torch_pickle", f"tiny-{name}-flags{flags}", bytes([flags]) + pkl)
        add("torch_zip", f"tiny-{name}", torch_archive(pkl, 0))
        add("torch_zip", f"tiny-{name}-deflate", torch_archive(pkl, 1))
    idx = _read(os.path.join(SHARDED, "model.safetensors.index.json"))
    add("shard_index", "truncated", idx[:len(idx) // 2])
    small_cfgs = {
        "opt-bos": b'{"add_bos_token": true, "tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>"}',
        "decoder": b'{"added_tokens_decoder": {"384": {"content": "<|endoftext|>", "special": true, '
                   b'"lstrip": false, "rstrip": false, "single_word": false, "normalized": false}}}'
                   b'\x00{"bos_token": {"content": "<|endoftext|>"}, "additional_special_tokens": ["<|endoftext|>"]}'
                   b'\x00{"<|endoftext|>": 384}',
        "neox": b'{"tokenizer_class": "GPTNeoXTokenizer", "add_eos_token": false, "add_prefix_space": false}',
    }
    for name, cfg in small_cfgs.items():
        add("tokenizer_config", name + "-bpe", b"\x00" + cfg)
        add("tokenizer_config", name + "-json", b"\x01" + cfg)
    for target, files in seeds.items():
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            if old.startswith("seed-"):
                os.unlink(os.path.join(d, old))
        for name, data in files.items():
            with open(os.path.join(d, "seed-" + name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(files)} seeds")


if __name__ == "__main__":
    if sys.argv[1:] == ["--seeds"]:
        make_seeds()
    else:
        sys.exit("usage: fuzz_export_targets.py --seeds   (writes tests/fuzz/export/*/seed-*)")
