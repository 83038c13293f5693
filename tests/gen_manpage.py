#!/usr/bin/env python3
"""Write a man page (roff, man(7) macros) for a program from its --help and
--version output, to stdout (standard library only). `make install` makes
run.1 with it, so the page says what the installed binary says.

    python3 tests/gen_manpage.py PROGRAM > PROGRAM.1

The help text is read as: a `usage: NAME ARGS` line (SYNOPSIS), a paragraph
whose first sentence names the program (NAME) and which goes whole into
DESCRIPTION, then groups of options under `Title:` lines (OPTIONS, one .SS
per group), option lines indented two spaces with the description in a
column, continuation lines indented to that column, and last paragraphs of
the form `Title: text` (a section each, such as EXIT STATUS).
"""
import collections
import os
import re
import subprocess
import sys


def roff(text):
    """Plain text as roff: backslashes and hyphens escaped, no control line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def option_lines(lines):
    """The column where option descriptions start: the indentation most
    continuation lines share."""
    indents = collections.Counter(len(l) - len(l.lstrip(" ")) for l in lines
                                  if l.startswith("    ") and not l.lstrip().startswith("-"))
    return indents.most_common(1)[0][0] if indents else 0


def split_option(line, column):
    """'  -p, --prompt TEXT      the prompt text' -> ('-p, --prompt TEXT', 'the prompt text')."""
    body = line.strip()
    gap = re.search(r"\S(\s{2,})\S", body)
    if gap:
        return body[:gap.start(1)], body[gap.end(1):]
    if column and len(line) > column and line[column - 1] == " ":  # the option fills its column
        return line[:column].strip(), line[column:].strip()
    return body, ""


def manpage(help_text, version):
    lines = help_text.rstrip("\n").split("\n")
    m = re.match(r"usage: (\S+)\s*(.*)", lines[0])
    if not m:
        sys.exit(f"gen_manpage: the help does not start with 'usage: NAME ...': {lines[0]!r}")
    name, args = m.group(1), m.group(2)
    paragraphs, cur = [], []
    for line in lines[1:] + [""]:
        if line.strip():
            cur.append(line)
        elif cur:
            paragraphs.append(cur)
            cur = []
    if not paragraphs:
        sys.exit("gen_manpage: the help has no description")
    intro, rest = paragraphs[0], paragraphs[1:]
    first = " ".join(l.strip() for l in intro)
    summary = re.split(r"(?<=\.)\s", first, maxsplit=1)[0].rstrip(".")
    summary = summary[:1].lower() + summary[1:]

    out = [f'.TH {name.upper()} 1 "" "{roff(version)}" "User Commands"',
           ".SH NAME", f"{roff(name)} \\- {roff(summary)}",
           ".SH SYNOPSIS", f".B {roff(name)}"]
    if args:
        out.append(roff(args))
    out += [".SH DESCRIPTION", roff(first)]

    column = option_lines(lines)
    sections, in_options = [], False
    for para in rest:
        if not (para[0].startswith("  ") or (para[0].rstrip().endswith(":") and len(para) > 1)):
            sections.append(para)  # `Title: text`, after the options
            continue
        if not in_options:
            out.append(".SH OPTIONS")
            in_options = True
        for line in para:
            if not line.startswith(" ") and line.rstrip().endswith(":"):
                out += [".SS " + roff(line.strip()[:-1])]
            elif column and line.startswith(" " * column):
                out.append(roff(line.strip()))  # continues the description above
            else:
                opt, desc = split_option(line, column)
                out += [".TP", ".B " + roff(opt)]
                if desc:
                    out.append(roff(desc))
    for para in sections:
        text = " ".join(l.strip() for l in para)
        m = re.match(r"([A-Z][A-Za-z ]*):\s*(.*)", text)
        if m:
            out += [".SH " + roff(m.group(1).upper()), roff(m.group(2))]
        else:
            out += [".PP", roff(text)]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: gen_manpage.py PROGRAM  (writes the man page to stdout)")
    prog = sys.argv[1]
    try:
        env = dict(os.environ, COLUMNS="80")  # argparse wraps its help to the terminal
        help_p = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=60, env=env)
        version_p = subprocess.run([prog, "--version"], capture_output=True, text=True, timeout=60, env=env)
    except OSError as e:
        sys.exit(f"gen_manpage: cannot run '{prog}': {e.strerror}")
    if help_p.returncode != 0 or not help_p.stdout:
        sys.exit(f"gen_manpage: '{prog} --help' failed (exit {help_p.returncode}): {help_p.stderr.strip()}")
    version = version_p.stdout.strip() if version_p.returncode == 0 else os.path.basename(prog)
    sys.stdout.write(manpage(help_p.stdout, version))


if __name__ == "__main__":
    main()
