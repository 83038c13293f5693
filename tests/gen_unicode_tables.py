#!/usr/bin/env python3
"""Regenerate the Unicode character-class table inside tokenizer.c.

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
"""
import argparse
import os
import sys

UNICODE_VERSION = "16.0.0"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "tokenizer.c")
BEGIN = "/* BEGIN GENERATED UNICODE TABLE (tests/gen_unicode_tables.py) */"
END = "/* END GENERATED UNICODE TABLE */"

# White_Space from PropList.txt; unchanged since Unicode 6.3 (U+180E removed).
# unicodedata does not expose this property, hence the list.
WHITE_SPACE = ([*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                0x2028, 0x2029, 0x202F, 0x205F, 0x3000])

CLASS_CODE = {"O": 0, "L": 1, "N": 2, "S": 3}


def classes():
    try:
        import unicodedata2 as ud
    except ImportError:
        sys.exit("gen_unicode_tables.py: needs `python3 -m pip install unicodedata2==%s`"
                 % UNICODE_VERSION)
    if ud.unidata_version != UNICODE_VERSION:
        sys.exit("gen_unicode_tables.py: unicodedata2 has Unicode %s, want %s"
                 % (ud.unidata_version, UNICODE_VERSION))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check tokenizer.c is up to date")
    ap.add_argument("--stdout", action="store_true", help="print the table instead")
    args = ap.parse_args()
    block = render(classes())
    if args.stdout:
        print(block)
        return 0
    with open(TARGET, encoding="utf-8") as f:
        src = f.read()
    a, b = src.find(BEGIN), src.find(END)
    if a < 0 or b < a:
        sys.exit("gen_unicode_tables.py: markers not found in tokenizer.c")
    new = src[:a] + block + src[b + len(END):]
    if args.check:
        if new != src:
            print("tokenizer.c: Unicode table is out of date")
            return 1
        print("tokenizer.c: Unicode table is up to date")
        return 0
    if new != src:
        with open(TARGET, "w", encoding="utf-8") as f:
            f.write(new)
        print("tokenizer.c: Unicode table rewritten")
    else:
        print("tokenizer.c: Unicode table unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
