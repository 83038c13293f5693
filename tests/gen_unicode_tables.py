#!/usr/bin/env python3
"""Regenerate the Unicode tables inside tokenizer.c (character classes and NFC).

GPT-2's pre-tokenizer pattern only needs to know, for every code point, which
of four classes it is in:

    L  \\p{L}   general category Lu, Ll, Lt, Lm, Lo
    N  \\p{N}   general category Nd, Nl, No
    S  \\s      the White_Space property (PropList.txt)
    O  anything else (marks, punctuation, symbols, controls, unassigned, ...)

The reference tokenizers (tiktoken's Rust regex and Hugging Face tokenizers'
Oniguruma) both use Unicode 16.0 tables (checked code point by code point by
tests/hf_tokenizer_parity.py), so the table is generated from Unicode 16.0.0.
Python 3.11's own `unicodedata` is Unicode 14, so this script reads the
`unicodedata2` package pinned to the matching version:

    python3 -m pip install unicodedata2==16.0.0
    python3 tests/gen_unicode_tables.py          # rewrites tokenizer.c in place
    python3 tests/gen_unicode_tables.py --check  # exit 1 if tokenizer.c is stale

The table is written between the BEGIN/END GENERATED markers of tokenizer.c as
a sorted list of ranges: each entry is (first_code_point << 2) | class, and a
range runs up to the next entry's first code point. Code points at or above
UCLASS_LIMIT are all class O. tokenizer.c expands it at load time into a
packed lookup table (2 bits per code point).

The NFC tables (for tokenizers whose normalizer is NFC, e.g. GPT-NeoX's) go
between the BEGIN/END GENERATED NFC markers. Hugging Face tokenizers'
normalizers use the Unicode 9.0 database (its unicode-normalization-alignments
crate; tests/hf_tokenizer_families.py checks every code point against it), so
the tables hold the Unicode 16.0 data of the code points that Unicode 9.0
already has (normalization data of an assigned character never changes); a
newer character is left as it is, as tokenizers does. Which code points 9.0
has comes from Perl's Unicode::UCD (prop_invlist("In=9.0")); the list is also
written to tests/tokenizer/unicode9.txt for `make test`.

  nfc_ccc_ranges   sorted (first_code_point << 8) | canonical_combining_class;
                   a range runs up to the next entry (class 0 where not listed)
  nfc_decomp       triples (code_point | excluded << 24, first, second): the
                   one-level canonical decomposition of every code point that has
                   one (second = 0 for a singleton), sorted by code point;
                   `excluded` marks the pairs that never compose again
                   (Full_Composition_Exclusion). Hangul syllables are left out:
                   tokenizer.c decomposes and composes them arithmetically.
"""
import argparse
import os
import sys

UNICODE_VERSION = "16.0.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "tokenizer.c")
BEGIN = "/* BEGIN GENERATED UNICODE TABLE (tests/gen_unicode_tables.py) */"
END = "/* END GENERATED UNICODE TABLE */"
NFC_BEGIN = "/* BEGIN GENERATED NFC TABLES (tests/gen_unicode_tables.py) */"
NFC_END = "/* END GENERATED NFC TABLES */"
NFC_UNICODE_VERSION = "9.0.0"
PRESENT_FILE = os.path.join(ROOT, "tests", "tokenizer", "unicode9.txt")
HANGUL_FIRST, HANGUL_COUNT = 0xAC00, 11172

# White_Space from PropList.txt; unchanged since Unicode 6.3 (U+180E removed).
# unicodedata does not expose this property, hence the list.
WHITE_SPACE = ([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

CLASS_CODE = {"O": 0, "L": 1, "N": 2, "S": 3}


def unicode_data():
    try:
        import unicodedata2 as ud
    except ImportError:
        sys.exit("gen_unicode_tables.py: needs `python3 -m pip install unicodedata2==%s`"
                 % UNICODE_VERSION)
    if ud.unidata_version != UNICODE_VERSION:
        sys.exit("gen_unicode_tables.py: unicodedata2 has Unicode %s, want %s"
                 % (ud.unidata_version, UNICODE_VERSION))
    return ud


def classes():
    ud = unicode_data()
    ws = set(WHITE_SPACE)
    for c in ws:  # sanity: White_Space code points are separators or controls
        assert ud.category(chr(c)) in ("Zs", "Zl", "Zp", "Cc"), hex(c)
    out = []
    for c in range(0x110000):
        cat = ud.category(chr(c))
        if c in ws:
            k = "S"
        elif cat[0] == "L":
            k = "L"
        elif cat[0] == "N":
            k = "N"
        else:
            k = "O"
        out.append(k)
    return out


def render(cls):
    ranges = []
    for c, k in enumerate(cls):
        if not ranges or ranges[-1][1] != k:
            ranges.append((c, k))
    limit = max(c for c, k in enumerate(cls) if k != "O") + 1
    ranges = [r for r in ranges if r[0] < limit]
    counts = {k: cls.count(k) for k in "LNSO"}
    lines = [BEGIN,
             "/* Unicode %s: L=%d N=%d S=%d code points; %d ranges. Do not edit by hand. */"
             % (UNICODE_VERSION, counts["L"], counts["N"], counts["S"], len(ranges)),
             "#define UCLASS_UNICODE_VERSION \"%s\"" % UNICODE_VERSION,
             "#define UCLASS_LIMIT 0x%X" % limit,
             "static const uint32_t uclass_ranges[%d] = {" % len(ranges)]
    vals = ["0x%X" % ((c << 2) | CLASS_CODE[k]) for c, k in ranges]
    line = " "
    for v in vals:
        if len(line) + len(v) + 2 > 100:
            lines.append(line.rstrip())
            line = " "
        line += " " + v + ","
    lines.append(line.rstrip())
    lines.append("};")
    lines.append(END)
    return "\n".join(lines)


def wrap(vals, indent="  ", width=100):
    lines, line = [], indent.rstrip()
    for v in vals:
        if len(line) + len(v) + 2 > width:
            lines.append(line.rstrip())
            line = indent.rstrip()
        line += " " + v + ","
    lines.append(line.rstrip())
    return lines


def present_ranges(version=NFC_UNICODE_VERSION):
    """[(first, last)] of the code points assigned (or reserved) in Unicode `version`."""
    import subprocess
    short = ".".join(version.split(".")[:2])
    out = subprocess.run(["perl", "-MUnicode::UCD=prop_invlist", "-e",
                          'print join(" ", prop_invlist("In=%s")), "\\n"' % short],
                         stdout=subprocess.PIPE, check=True).stdout.decode().split()
    inv = [int(x) for x in out] + ([0x110000] if len(out) % 2 else [])
    return [(inv[i], inv[i + 1] - 1) for i in range(0, len(inv), 2)]


def nfc_tables():
    """(ccc ranges, decomposition triples) from the Unicode 16.0 database, for
    the code points Unicode 9.0 has."""
    ud = unicode_data()
    present = bytearray(0x110000)
    for a, b in present_ranges():
        present[a:b + 1] = b"\x01" * (b + 1 - a)
    ccc = [ud.combining(chr(c)) if present[c] else 0 for c in range(0x110000)]
    ranges = []
    for c, k in enumerate(ccc):
        if (ranges[-1][1] if ranges else 0) != k:
            ranges.append((c, k))
    decomp = []
    for c in range(0x110000):
        if HANGUL_FIRST <= c < HANGUL_FIRST + HANGUL_COUNT or not present[c]:
            continue
        d = ud.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, hex(c)
        # A pair composes back unless it is excluded; a singleton never does.
        excluded = len(parts) == 2 and ud.normalize("NFC", chr(c)) != chr(c)
        decomp.append((c, parts[0], parts[1] if len(parts) == 2 else 0, excluded))
    return ranges, decomp


def render_nfc(ranges, decomp):
    n_excl = sum(1 for d in decomp if d[3])
    lines = [NFC_BEGIN,
             "/* Unicode %s data of the code points of Unicode %s (the version of tokenizers'"
             % (UNICODE_VERSION, NFC_UNICODE_VERSION),
             "   normalizers): %d ranges of canonical combining classes, %d canonical decompositions"
             % (len(ranges), len(decomp)),
             "   (%d excluded from composition). Do not edit by hand. */" % n_excl,
             "#define NFC_UNICODE_VERSION \"%s\"" % NFC_UNICODE_VERSION,
             "static const uint32_t nfc_ccc_ranges[%d] = {" % len(ranges)]
    lines += wrap(["%d" % (c << 8 | k) for c, k in ranges])
    lines.append("};")
    lines.append("static const uint32_t nfc_decomp[%d][3] = {" % len(decomp))
    lines += wrap(["{%d,%d,%d}" % (c | (1 << 24 if x else 0), a, b) for c, a, b, x in decomp])
    lines.append("};")
    lines.append(NFC_END)
    return "\n".join(lines)


def replace_block(src, begin, end, block):
    a, b = src.find(begin), src.find(end)
    if a < 0 or b < a:
        sys.exit("gen_unicode_tables.py: markers %s not found in tokenizer.c" % begin)
    return src[:a] + block + src[b + len(end):]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check tokenizer.c is up to date")
    ap.add_argument("--stdout", action="store_true", help="print the table instead")
    args = ap.parse_args()
    block = render(classes())
    nfc_block = render_nfc(*nfc_tables())
    if args.stdout:
        print(block)
        print(nfc_block)
        return 0
    with open(TARGET, encoding="utf-8") as f:
        src = f.read()
    new = replace_block(src, BEGIN, END, block)
    new = replace_block(new, NFC_BEGIN, NFC_END, nfc_block)
    present = ("# Code points Unicode %s has (assigned or reserved), first and last, hexadecimal;\n"
               "# tokenizers' NFC knows these. Generated by tests/gen_unicode_tables.py.\n"
               % NFC_UNICODE_VERSION + "".join("%X %X\n" % r for r in present_ranges()))
    old_present = open(PRESENT_FILE).read() if os.path.exists(PRESENT_FILE) else None
    if args.check:
        if old_present != present:
            print("tests/tokenizer/unicode9.txt is out of date")
            return 1
    elif old_present != present:
        with open(PRESENT_FILE, "w") as f:
            f.write(present)
        print("tests/tokenizer/unicode9.txt rewritten")
    if args.check:
        if new != src:
            print("tokenizer.c: Unicode tables are out of date")
            return 1
        print("tokenizer.c: Unicode tables are up to date")
        return 0
    if new != src:
        with open(TARGET, "w", encoding="utf-8") as f:
            f.write(new)
        print("tokenizer.c: Unicode tables rewritten")
    else:
        print("tokenizer.c: Unicode tables unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
