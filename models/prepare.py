#!/usr/bin/env python3
"""Build the corpus, the validation split and the BPE vocabulary of the default model.

Corpus: Jane Austen's six finished novels as shipped by the Debian package
r-cran-janeaustenr (Project Gutenberg texts; the novels are in the public
domain, the package is MIT-licensed). The package stores the novels as R
character vectors (one element per printed line) in an R lazy-load database
(data/Rdata.rdx + data/Rdata.rdb); this script reads that database directly,
so R itself is not needed.

Usage:
    python3 models/prepare.py [--data-dir DIR] [--out-train PATH] [--out-valid PATH]
                              [--tok-dir DIR] [--vocab-size N]

DIR defaults to /usr/lib/R/site-library/janeaustenr/data (after
`apt-get install r-cran-janeaustenr`); when that is absent the .deb is fetched
with `apt-get download` and unpacked with `dpkg-deb -x` into a temporary
directory (no R installation needed).

Outputs (defaults): /work/train/train.txt (training text, not committed),
models/valid.txt (held-out text, committed), models/vocab.json and
models/merges.txt (the tokenizer, committed).
"""
import argparse
import glob
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = "/usr/lib/R/site-library/janeaustenr/data"
# Order in which the novels are concatenated (publication order).
NOVELS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma",
          "northangerabbey", "persuasion"]
VALID_FRACTION = 0.04  # the last 4% (by characters) of every novel is held out
EOT = "<|endoftext|>"


# ---------------------------------------------------------------- R unserialize
class _RReader:
    """Just enough of R's XDR serialization format for character vectors,
    integer vectors, lists and their attributes."""

    def __init__(self, buf):
        self.b, self.i, self.refs = buf, 0, []

    def int(self):
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def header(self):
        if self.b[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.i = 2
        version = self.int()
        self.int(), self.int()  # writer version, minimal reader version
        if version == 3:
            n = self.int()
            self.i += n  # native encoding name
        return self.item()

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t == 254:  # NILVALUE_SXP
            return None
        if t == 255:  # REFSXP
            idx = flags >> 8
            return self.refs[(idx or self.int()) - 1]
        if t == 1:  # SYMSXP
            s = self.item()
            self.refs.append(s)
            return s
        if t == 2:  # LISTSXP (pairlist): returns dict tag -> value
            out = {}
            while True:
                if has_attr:
                    self.item()
                tag = self.item() if has_tag else None
                out[tag] = self.item()
                flags = self.int()
                if (flags & 0xFF) == 254:
                    return out
                if (flags & 0xFF) != 2:
                    raise ValueError("unsupported pairlist tail")
                has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None
            s = self.b[self.i:self.i + n].decode("utf-8", errors="replace")
            self.i += n
            return s
        if t in (10, 13, 16, 19):  # LGLSXP, INTSXP, STRSXP, VECSXP
            n = self.int()
            if t in (10, 13):
                v = list(struct.unpack_from(">%di" % n, self.b, self.i))
                self.i += 4 * n
            else:
                v = [self.item() for _ in range(n)]
            attrs = self.item() if has_attr else None
            return (v, attrs) if attrs else v
        raise ValueError("unsupported R SEXP type %d" % t)


def read_novels(data_dir):
    """Return {name: [line, ...]} from janeaustenr's lazy-load database."""
    with open(os.path.join(data_dir, "Rdata.rdx"), "rb") as f:
        index = _RReader(gzip.decompress(f.read())).header()
    # index is a list [variables, references, compressed] with names attr
    (parts, attrs) = index
    variables = parts[0]
    offsets, names = variables[0], variables[1]["names"]
    with open(os.path.join(data_dir, "Rdata.rdb"), "rb") as f:
        rdb = f.read()
    out = {}
    for name, (off, length) in zip(names, offsets):
        blk = rdb[off:off + length]
        raw = zlib.decompress(blk[4:])
        assert len(raw) == struct.unpack(">I", blk[:4])[0]
        obj = _RReader(raw).header()
        out[name] = obj[0] if isinstance(obj, tuple) else obj
    return out


def find_data_dir(arg):
    if arg:
        return arg
    if os.path.exists(os.path.join(DEFAULT_DATA, "Rdata.rdb")):
        return DEFAULT_DATA
    tmp = tempfile.mkdtemp(prefix="janeaustenr-")
    subprocess.run(["apt-get", "download", "r-cran-janeaustenr"], cwd=tmp, check=True)
    deb = glob.glob(os.path.join(tmp, "r-cran-janeaustenr_*.deb"))[0]
    subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
    return os.path.join(tmp, "x", DEFAULT_DATA.lstrip("/"))


# ---------------------------------------------------------------- preprocessing
def paragraphs(lines):
    """Unwrap the printed lines into paragraphs: a run of non-blank lines
    becomes one paragraph, its lines joined by single spaces; blank lines
    separate paragraphs. Underscores (Gutenberg's italics markup) are
    dropped, runs of spaces collapsed, and a few typographic characters
    mapped to ASCII."""
    paras, cur = [], []
    for line in lines + [""]:
        line = (line or "").strip()
        if line:
            cur.append(line)
        elif cur:
            p = " ".join(cur)
            p = p.replace("_", "")
            p = p.translate({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"',
                             0x2014: "--", 0x00A0: " "})
            p = re.sub(r"\s+", " ", p).strip()
            if p:
                paras.append(p)
            cur = []
    return paras


def split_novel(paras, frac):
    """Hold out the last `frac` of the novel's characters, cut at a paragraph
    boundary. Returns (train_paragraphs, valid_paragraphs)."""
    total = sum(len(p) + 2 for p in paras)
    acc, cut = 0, len(paras)
    for i in range(len(paras) - 1, -1, -1):
        acc += len(paras[i]) + 2
        if acc >= frac * total:
            cut = i
            break
    return paras[:cut], paras[cut:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--out-train", default="/work/train/train.txt")
    ap.add_argument("--out-valid", default=os.path.join(HERE, "valid.txt"))
    ap.add_argument("--tok-dir", default=HERE)
    ap.add_argument("--vocab-size", type=int, default=4096)
    args = ap.parse_args()

    novels = read_novels(find_data_dir(args.data_dir))
    train_docs, valid_docs = [], []
    for name in NOVELS:
        tr, va = split_novel(paragraphs(novels[name]), VALID_FRACTION)
        train_docs.append("\n\n".join(tr) + "\n")
        valid_docs.append("\n\n".join(va) + "\n")
    # Training text: novels separated by <|endoftext|> lines (train.py turns
    # each separator into the special token). Validation: plain text, the six
    # held-out novel endings separated by blank lines, no special tokens.
    os.makedirs(os.path.dirname(os.path.abspath(args.out_train)), exist_ok=True)
    with open(args.out_train, "w", encoding="utf-8", newline="\n") as f:
        f.write(("\n" + EOT + "\n").join(train_docs))
    with open(args.out_valid, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(valid_docs))
    ntr = sum(len(d.encode()) for d in train_docs)
    nva = os.path.getsize(args.out_valid)
    print("train: %d bytes, valid: %d bytes (%.1f%%)" % (ntr, nva, 100.0 * nva / (ntr + nva)))

    from tokenizers import ByteLevelBPETokenizer
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(train_docs, vocab_size=args.vocab_size, min_frequency=2,
                            special_tokens=[EOT], show_progress=False)
    tok.save_model(args.tok_dir)
    print("vocab: %d tokens -> %s/vocab.json, merges.txt" % (tok.get_vocab_size(), args.tok_dir))


if __name__ == "__main__":
    sys.exit(main())
