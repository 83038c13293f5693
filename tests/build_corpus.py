#!/usr/bin/env python3
"""Assemble the tokenizer parity corpus: a list of (name, text, special) cases.

Sources (all deterministic: sorted file lists, fixed seeds):
  * Debian fortunes in several languages (fortunes, fortunes-zh, -de, -es, -it,
    -ru, -br, -cs, -bg), one case per fortune, under /usr/share/games/fortunes;
  * the King James Bible (bible-kjv-text, read with the `bible` program of
    bible-kjv), one case per chapter;
  * source code: C headers from /usr/include and Python standard-library files;
  * designed edge cases (edge_cases() below): contractions in every letter case,
    whitespace runs, tabs, CR LF, Unicode spaces, NBSP, emoji with ZWJ and skin
    tones, flags, combining marks, many scripts, Lm/Lo letters, Nd/Nl/No numbers,
    astral characters, 10,000-character words, <|endoftext|> with and without
    special-token recognition, random mixes, and sweeps over every code point.

Used by tests/hf_tokenizer_parity.py, tests/gen_tokenizer_cases.py and
tests/bench_tokenizer.py. Standard library only. Run directly to print a summary:

    python3 tests/build_corpus.py
"""
import glob
import os
import random
import shutil
import subprocess
import sys
import sysconfig

FORTUNES = "/usr/share/games/fortunes"
EOT = "<|endoftext|>"
# Files of other languages in the top fortunes directory.
ROOT_LANG = {"chinese": "zh", "tang300": "zh", "song100": "zh", "brasil": "pt",
             "definizioni": "it", "formiche": "it", "italia": "it", "itatrek": "it",
             "leggi": "it", "luttazzi": "it", "paolotedeschi": "it", "zuse": "it"}


def _read_text(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # legacy 8-bit files: their .u8 twin is used instead


def fortune_files():
    """(language, path) of every fortune text file, sorted."""
    out = []
    if not os.path.isdir(FORTUNES):
        return out
    for root, dirs, files in os.walk(FORTUNES):
        dirs.sort()
        lang = os.path.relpath(root, FORTUNES)
        if lang == ".":
            lang = "en"
        elif lang == "cz":  # the same files as cs/
            continue
        for fn in sorted(files):
            if fn.endswith(".dat") or fn.endswith("-pre"):
                continue
            p = os.path.join(root, fn)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            out.append((ROOT_LANG.get(fn, lang) if lang == "en" else lang, p))
    return out


def fortunes(max_per_file=None):
    """Cases, one per fortune; files that are not UTF-8 are skipped."""
    cases = []
    seen = set()
    for lang, p in fortune_files():
        text = _read_text(p)
        if text is None:
            continue
        items = [x.strip("\n") for x in text.split("\n%\n")]
        items = [x for x in items if x.strip()]
        if max_per_file:
            items = items[:max_per_file]
        for i, x in enumerate(items):
            x = x + "\n"
            if x in seen:
                continue
            seen.add(x)
            cases.append((f"fortune:{lang}/{os.path.basename(p)}#{i}", x, False))
    return cases


def bible(max_chapters=None):
    """One case per chapter of the KJV (needs /usr/bin/bible); [] when missing."""
    exe = shutil.which("bible")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=120).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return []
    chapters = {}
    order = []
    for line in out.split("\n"):
        if not line.strip():
            continue
        ref = line.split(" ", 1)[0]
        key = ref.split(":", 1)[0]
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(line)
    if max_chapters:
        order = order[:max_chapters]
    return [(f"bible:{k}", "\n".join(chapters[k]) + "\n", False) for k in order]


def source_code(max_files=300, max_bytes=1_500_000):
    """C headers and Python stdlib files, up to max_files / max_bytes in all."""
    paths = sorted(glob.glob("/usr/include/*.h"))[:150]
    stdlib = sysconfig.get_paths().get("stdlib", "")
    if stdlib:
        paths += sorted(glob.glob(os.path.join(stdlib, "*.py")))[:150]
    cases, total = [], 0
    for p in paths[:max_files]:
        text = _read_text(p)
        if not text:
            continue
        if total + len(text) > max_bytes:
            break
        total += len(text.encode())
        cases.append((f"source:{p}", text, False))
    return cases


# A pool of characters of many kinds, for random mixes.
POOL = (list("abcXYZ019 '\"!?.,;:-_()[]{}<>|@#$%^&*/\\~`+=")
        + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re"]
        + [" ", "  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680",
           "\u2000", "\u2009", "\u200a", "\u200b", "\u2028", "\u2029", "\u202f", "\u205f",
           "\u3000", "\ufeff", "\u180e", "\x1c", "\x1f"]
        + list("éÉßñçøåæœ") + ["e\u0301", "a\u0308", "\u0301", "\u20dd"]
        + list("漢字日本語中文한국어ひらがなカタカナー々〆")
        + list("العربيةעבריתहिन्दीไทยภาษาΕλληνικάРусский")
        + list("٠١٢३४५١٢３４⁰²³½¼①⑩ⅫⅣ〇〡𝟘𝟙𐌰𐍈𝐀𝐚")
        + ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "🇫🇷", "1️⃣", "❤️", "🏳️‍🌈", "\U0001F9D1\u200d\U0001F4BB"]
        + ["ʰ", "ˈ", "ª", "º", "ǅ", "ᾈ", "ǈ", "ℵ", "\U00010D40", "\U00010D4A", "\u1c89",
           "\U0001CCF0", "\U000105C0", "\U00016D40", "\U00011380"]
        + [EOT, "<|", "|>", "endoftext"])


def edge_cases():
    cases = []

    def add(name, text, special=None):
        if special is None:
            cases.append((name, text, False))
            if EOT in text or "<|" in text:
                cases.append((name + " [special]", text, True))
        else:
            cases.append((name, text, special))

    # Contractions: every suffix in every letter case, in several contexts.
    sufs = ["s", "t", "re", "ve", "m", "ll", "d"]
    for suf in sufs:
        variants = set()
        for mask in range(1 << len(suf)):
            variants.add("".join(ch.upper() if mask >> i & 1 else ch for i, ch in enumerate(suf)))
        for v in sorted(variants):
            add(f"contraction '{v}", f"it'{v} they'{v} '{v} x'{v}y ''{v} ' {v} 1'{v} !'{v} '{v}'{v}")
            add(f"contraction '{v} at end", f"word'{v}")
            add(f"contraction '{v} start", f"'{v}tart")
    add("contraction chain", "you'll've'd y'all'd'n't don't DON'T Don'T won’t it’s")
    add("apostrophes", "' '' ''' 's' 'x '5 ' 9 a' b'")
    # Whitespace.
    for n in range(1, 7):
        for ws in (" ", "\t", "\n", "\r\n", "\u3000", "\xa0", " \t", "\t "):
            add(f"ws run {ws!r}*{n} before word", "a" + ws * n + "word")
            add(f"ws run {ws!r}*{n} at end", "word" + ws * n)
            add(f"ws run {ws!r}*{n} alone", ws * n)
            add(f"ws run {ws!r}*{n} before digit/punct", "x" + ws * n + "1" + ws * n + "!")
    add("CR LF text", "line one\r\nline two\r\n\r\n  indented\r\n\tTab\r\n")
    add("tabs", "\tdef f(x):\n\t\treturn x\t# comment\t\n\t\t\n")
    add("mixed ws", " \n \n\n  \t \r\n x \u00a0 y\u2009z \u3000 w  ")
    for c in [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
              0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x200B, 0x180E, 0xFEFF, 0x1C, 0x1D, 0x1E,
              0x1F]:
        s = chr(c)
        add(f"space U+{c:04X}", f"a{s}b {s}c{s}{s}d{s} {s}e {s}{s}1{s}")
        add(f"space U+{c:04X} at end", f"end{s}")
    add("NBSP", "100\u00a0km, M.\u00a0Dupont\u00a0: « oui\u00a0»")
    # Emoji and symbols.
    add("emoji ZWJ", "family 👨‍👩‍👧‍👦 and 👩🏽‍💻 and 🏳️‍🌈 and 🧑‍🤝‍🧑")
    add("emoji skin tones", "👍👍🏻👍🏼👍🏽👍🏾👍🏿 👋🏿!")
    add("flags", "🇺🇸🇫🇷🇩🇪🇯🇵 🇬🇧 🏴󠁧󠁢󠁳󠁣󠁴󠁿 flags")
    add("keycaps", "1️⃣2️⃣#️⃣ *️⃣ ©️ ®️ ™️")
    add("emoji runs", "😀😃😄😁😆😅😂🤣 😀 x😀 1😀")
    # Combining marks.
    add("combining", "e\u0301 e\u0301e\u0301 a\u0300\u0301\u0302\u0303 \u0301 \u0301x x\u0301\u0302")
    add("zalgo", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319a\u0308\u0338lgo")
    add("nfd vs nfc", "Cafe\u0301 Café ﬁ ﬂ Å Å")
    # Scripts.
    add("CJK", "漢字テキスト，中文文本。日本語の文章です。한국어 텍스트입니다.")
    add("CJK long", "我们是中国人，我们爱和平。" * 20)
    add("Arabic", "اللغة العربية لغة جميلة. الأرقام: ٠١٢٣٤٥٦٧٨٩ و 0123")
    add("Arabic harakat", "بِسْمِ ٱللَّٰهِ ٱلرَّحْمَٰنِ ٱلرَّحِيمِ")
    add("Hebrew", "שָׁלוֹם עוֹלָם! עברית")
    add("Devanagari", "हिन्दी भाषा में लिखा गया पाठ। संख्या: १२३४५ ॐ")
    add("Thai", "ภาษาไทยเป็นภาษาที่ไม่มีช่องว่างระหว่างคำ ๑๒๓")
    add("Greek", "Η ελληνική γλώσσα είναι όμορφη. ΑΒΓΔ αβγδ ἀρχή")
    add("Cyrillic", "Съешь же ещё этих мягких французских булок, да выпей чаю.")
    add("Korean jamo", "ᄀᄁᄂ 한글 ㄱㄴㄷ")
    add("Ethiopic", "ሰላም ዓለም ፩፪፫")
    add("Tamil", "தமிழ் மொழி ௧௨௩")
    add("Georgian", "ქართული ენა Ა")
    add("Armenian", "Հայերեն լեզու")
    add("Mongolian", "ᠮᠣᠩᠭᠣᠯ ᠬᠡᠯᠡ\u180e ᠑᠒")
    add("Tibetan", "བོད་ཡིག ༡༢༣")
    add("mixed scripts", "abcабвαβγ漢字123١٢٣ mix")
    # Letters of categories Lm / Lo / Lt.
    add("Lm", "ʰʱʲ ˈstress ーー カー 々 ゝゞ ꜝ ᵃᵇᶜ ⁿ ˀ x̱ʼ")
    add("Lo", "ª º ƻ ǀǁǂǃ א ℵ ℶ ㄅㄆ ᐁᐂ")
    add("Lt", "ǅ ǈ ǋ ǲ ᾈᾉ")
    # Numbers Nd / Nl / No.
    add("Nd", "0123 ٠١٢ ۰۱۲ ०१२ ০১২ ๐๑๒ ０１２ 𝟎𝟏𝟐 𝟘𝟙 ߀߁")
    add("Nl", "ⅠⅡⅢⅣ ⅻ ↀↁ 〇〡〢 ᛮᛯ 𐍁 𒐀")
    add("No", "² ³ ¹ ½ ¼ ¾ ⅓ ① ⑳ ⑴ ⒈ ❶ ➀ ༳ 𐄇 ⁰ ₀₁")
    add("numbers with space", " 1 12 123 1234 12345 123456 1,234.56 1e10 0x1F -3 +4 3.14159")
    add("numbers mixed", "a1 1a 1½ ½1 ²2 2² ①1 Ⅻ12")
    # Astral plane.
    add("astral letters", "𝐀𝐁𝐂 𝑎𝑏𝑐 𝔄𝔅 𠀀𠀁 𓀀𓀁 𐌰𐌱 𐐀𐐨 𞤀𞤢")
    add("astral symbols", "𝄞 🀄 🃏 🜀 𝌆 🯰🯱")
    # Unicode 15/16 additions (the class table must be of the same version).
    add("Unicode 16 letters", "\u1c89\u1c8a \ua7cb\ua7cc\ua7cd \ua7da\ua7db\ua7dc \U000105c0\U000105c1 "
        "\U00010d50\U00010d51 \U00011bc0\U00011bc1 \U00016d40\U00016d41 \U00011380\U00011381")
    add("Unicode 16 digits", "\U00010d40\U00010d41 \U00011bf0\U00011bf1 \U00016d70\U00016d71 "
        "\U0001ccf0\U0001ccf1 \U000116d0\U000116d1")
    add("Unicode 15 letters", "\U00011f04\U00011f05 \U0001e4d0\U0001e4d1 \U00031350\U00031351")
    add("unassigned and private use", "\U0003fffe \U000e0001 \ue000\uf8ff \U000f0000 \U0010fffd x")
    add("noncharacters", "\ufdd0\ufffe\uffff a\ufffe")
    add("controls", "\x00\x01\x07\x1b[0m\x7f \x00a\x00 \x80\x9f")
    add("replacement char", "\ufffd\ufffd x\ufffd")
    # Long words (10,000 characters).
    rng = random.Random(1234)
    add("10k a", "a" * 10000)
    add("10k ab", "ab" * 5000)
    add("10k random letters", "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10000)))
    add("10k random Latin letters", " " + "".join(rng.choice("aeiouéèàçñßøœæ") for _ in range(10000)))
    add("10k digits", "".join(rng.choice("0123456789") for _ in range(10000)))
    add("10k punctuation", "".join(rng.choice("!?.,;:-_()[]{}<>|@#$%^&*") for _ in range(10000)))
    add("10k spaces", " " * 10000)
    add("10k spaces then word", " " * 10000 + "word")
    add("10k newlines", "\n" * 10000)
    add("10k CJK", "".join(rng.choice("的一是不了人我在有他这中大来上国个到说们") for _ in range(10000)))
    add("10k emoji", "😀" * 10000)
    add("10k Cyrillic", "".join(rng.choice("абвгдеёжзийклмнопрстуфхцчшщъыьэюя") for _ in range(10000)))
    add("long url", "https://example.com/" + "/".join("seg%d" % i for i in range(500)) + "?q=1&r=2")
    # Special tokens in text.
    for t in [EOT, f"Hello{EOT}World", f"{EOT}{EOT}", f" {EOT} ", f"a {EOT}b", f"{EOT}'s",
              f"text\n\n{EOT}\n\nmore text", "<|endoftext", "endoftext|>", "<|endoftext|",
              f"<|{EOT}|>", f"x<|endoftext|>y<|endoftext|>z", f"   {EOT}   ",
              f"{EOT}\u00a0{EOT}", f"漢{EOT}字"]:
        add(f"special {t!r}", t, False)
        add(f"special {t!r} [special]", t, True)
    # Random mixes from the pool.
    rng = random.Random(20240611)
    for i in range(600):
        n = rng.randint(1, 40)
        text = "".join(rng.choice(POOL) for _ in range(n))
        add(f"random mix {i}", text, bool(i % 2))
    # Random ASCII with lots of spaces and punctuation.
    for i in range(200):
        n = rng.randint(1, 80)
        text = "".join(rng.choice("ab  \t\n'sdl1.!") for _ in range(n))
        add(f"random ascii {i}", text)
    return cases


def codepoint_sweeps():
    """Every assigned-or-not code point of planes 0-3 and 14 (not surrogates),
    256 at a time, in a few contexts."""
    cases = []
    for base in list(range(0, 0x40000, 256)) + list(range(0xE0000, 0xE0200, 256)):
        cps = [c for c in range(base, base + 256) if not 0xD800 <= c < 0xE000]
        if not cps:
            continue
        chars = [chr(c) for c in cps]
        text = "".join(chars) + " " + " ".join(chars) + "\n" + "".join("a" + ch + "1" + ch for ch in chars)
        cases.append((f"sweep U+{base:05X}", text, False))
    return cases


def write_cases(path, cases):
    """Write cases for `test_tokenizer cases`: "<special> <nbytes>\\n" + UTF-8 text each."""
    with open(path, "wb") as f:
        for _name, text, special in cases:
            b = text.encode("utf-8") if isinstance(text, str) else text
            f.write(b"%d %d\n" % (1 if special else 0, len(b)))
            f.write(b)


def run_cases(driver, tok, cases, path, split=False):
    """Run the C driver over cases; returns one list of ints per case."""
    write_cases(path, cases)
    args = [driver, "cases", tok, path] + (["--split"] if split else [])
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[:500]}")
    lines = proc.stdout.decode().split("\n")
    return [[int(x) for x in line.split()] for line in lines[:len(cases)]]


def corpus():
    """The full parity corpus."""
    return (fortunes(max_per_file=60) + bible(max_chapters=250) + source_code(max_bytes=800_000)
            + edge_cases() + codepoint_sweeps())


def summary(cases):
    n_bytes = sum(len(t.encode("utf-8")) for _, t, _ in cases)
    kinds = {}
    for name, t, _ in cases:
        k = name.split(":", 1)[0] if ":" in name.split(" ", 1)[0] else "edge/sweep"
        kinds.setdefault(k, [0, 0])
        kinds[k][0] += 1
        kinds[k][1] += len(t.encode("utf-8"))
    return n_bytes, kinds


if __name__ == "__main__":
    cs = corpus()
    n_bytes, kinds = summary(cs)
    for k, (n, b) in sorted(kinds.items()):
        print(f"{k:12s} {n:7d} cases {b:10d} bytes")
    print(f"total        {len(cs):7d} cases {n_bytes:10d} bytes")
    sys.exit(0)
