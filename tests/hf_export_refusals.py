#!/usr/bin/env python3
"""What export.py refuses and accepts in tokenizer files, checked against
Hugging Face tokenizers / transformers (make test-hf).

The variants are tests/test_export_tokenizer.py's (one list).  For each one
export.py refuses, this checks the effect that list claims: `ids` (some text of
PROBES gets other ids than with GPT-2's form), `decode` (GPT-2's ids decode to
other text), `load` (the library cannot load it) or `none` (the same ids:
refused only because export.py does not know it to be equivalent).  Each
accepted form must give GPT-2's ids on every probe, and `run` on the exported
section must give those ids too.  Each form of ACCEPTED_V2 (NFC, non-special
added tokens, add_bos_token), and of ACCEPTED_V3 (the pre-tokenizers of
Llama-3, Qwen2 and SmolLM2, ignore_merges, a BOS template), must give with `run` the ids HF gives, with and
without --special (transformers' AutoTokenizer too where there is a
tokenizer_config.json).
"""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
os.environ["RUST_BACKTRACE"] = "0"  # a panic is an expected outcome here
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from harness import Harness, RUN, run_cmd  # noqa: E402
import test_export_tokenizer as T  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer, GPT2Tokenizer  # noqa: E402


def load(kind, d):
    """(encode(text) -> ids, decode(ids) -> text) as HF loads the directory d."""
    if kind == "json":
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            t = Tokenizer.from_str(f.read())
        return (lambda s: t.encode(s).ids), (lambda ids: t.decode(ids, skip_special_tokens=False))
    if os.path.exists(os.path.join(d, "tokenizer_config.json")):
        t = AutoTokenizer.from_pretrained(d)
    else:   # no tokenizer_class to go by: GPT-2's files
        t = GPT2Tokenizer.from_pretrained(d)
    return (lambda s: t.encode(s)), (lambda ids: t.decode(ids, skip_special_tokens=False))


def try_load(kind, d):
    try:
        return load(kind, d), None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:   # tokenizers' PanicException is a BaseException
        return None, f"{type(e).__name__}: {str(e)[:200]}"


V2_PROBES = T.PROBES + ["IT'S 12345 x'ſ (abc) abc\r\n  \n\n a", " abc abcabc 7 abc7", "a     b", "  \u00c5  A\u030a  x", "e\u0301<|padding|>   y", "\u212b  <|endoftext|>",
                        "\u1100\u1161\u11a8 \uac00\u11a8", "plain  plain", "     ", "", "caf\u0065\u0301 "]


def hf_encoders(kind, d):
    """{label: encode(text, special) -> ids} for the ways HF loads directory d."""
    out = {}
    if kind in ("json", "spm"):   # (not spm_llama: transformers 5 rebuilds a LlamaTokenizer)
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            t = Tokenizer.from_str(f.read())

        def enc_tok(text, special, t=t):
            t.encode_special_tokens = not special
            return t.encode(text).ids
        out["tokenizers"] = enc_tok
    if os.path.exists(os.path.join(d, "tokenizer_config.json")):
        a = AutoTokenizer.from_pretrained(d)
        out["AutoTokenizer"] = lambda text, special: a.encode(text, split_special_tokens=not special)
    return out


SPM_PROBES = T.SPM_PROBES + ["   x", "x   ", "\n\n", "<unk> x<unk>", "</s></s>", " <s> a", "\u2581\u2581 \u2581",
                             "e\u0301 \U0001F1EB\U0001F1F7 \u0aaa", "tab\tcode(x) {\n    return 1;\n}"]


def check_v2(h, tmp):
    for n, (name, kind, edit, _fields) in enumerate(T.ACCEPTED_V2 + T.ACCEPTED_V3 + T.ACCEPTED_V4):
        probes = SPM_PROBES if kind.startswith("spm") else V2_PROBES
        d = T.write_dir(tmp, f"v2_{n}", T.variant_files(kind, edit))
        out = os.path.join(tmp, f"v2_{n}.tok")
        r = T.export_tok(d, out)
        if not h.check(f"accepted (v2): {name}: exports", r.returncode == 0, r.stderr.decode(errors="replace")):
            continue
        for special in (False, True):
            flag = ["--special"] if special else []
            got = [[int(x) for x in run_cmd([RUN, out, "--tokenize"] + flag, input=p.encode()).stdout.split()]
                   for p in probes]
            for label, enc in hf_encoders(kind, d).items():
                want = [enc(p, special) for p in probes]
                h.check(f"accepted (v2): {name}: run{' --special' if special else ''} == {label} on "
                        f"{len(probes)} probes", got == want,
                        [(p, g, w) for p, g, w in zip(probes, got, want) if g != w][:3])


def main():
    h = Harness("hf_export_refusals")
    tmp = tempfile.mkdtemp(prefix="hf_export_refusals_")
    try:
        base = {}
        for kind in ("json", "slow", "spm", "spm_llama"):
            d = T.write_dir(tmp, f"base_{kind}", T.base_files(kind))
            enc, dec = load(kind, d)
            base[kind] = (enc, dec, [enc(p) for p in T.probes(kind)])
            out = os.path.join(tmp, f"base_{kind}.tok")
            r = T.export_tok(d, out)
            if not h.check(f"base ({kind}) exports", r.returncode == 0, r.stderr.decode(errors="replace")):
                continue
            got = [run_cmd([RUN, out, "--tokenize", "--special"], input=p.encode()).stdout.decode().split()
                   for p in T.probes(kind)]
            want = [[str(i) for i in ids] for ids in base[kind][2]]
            h.check(f"run --special on the exported base ({kind}) gives HF's ids on every probe", got == want,
                    [(p, g, w) for p, g, w in zip(T.probes(kind), got, want) if g != w][:3])
        h.check("both base forms give the same ids in HF", base["json"][2] == base["slow"][2])

        for n, (name, kind, edit) in enumerate(T.ACCEPTED):
            d = T.write_dir(tmp, f"ok{n}", T.variant_files(kind, edit))
            loaded, err = try_load(kind, d)
            ids = [loaded[0](p) for p in T.PROBES] if loaded else None
            h.check(f"accepted: {name}: HF gives GPT-2's ids", ids == base[kind][2],
                    err or [(p, a, b) for p, a, b in zip(T.PROBES, ids, base[kind][2]) if a != b][:3])

        for n, (name, kind, edit, _needles, effect) in enumerate(T.VARIANTS):
            d = T.write_dir(tmp, f"bad{n}", T.variant_files(kind, edit))
            loaded, err = try_load(kind, d)
            if effect == "load":
                h.check(f"refused: {name}: HF cannot load it", loaded is None, "it loads")
                continue
            if not h.check(f"refused: {name}: HF loads it", loaded is not None, err):
                continue
            enc, dec = loaded
            ids = [enc(p) for p in T.probes(kind)]
            same_ids = ids == base[kind][2]
            if effect == "ids":
                h.check(f"refused: {name}: HF gives other ids", not same_ids)
            elif effect == "decode":
                ref = [base[kind][1](i) for i in base[kind][2]]
                h.check(f"refused: {name}: HF gives GPT-2's ids but decodes them to other text",
                        same_ids and [dec(i) for i in base[kind][2]] != ref)
            else:
                h.check(f"refused: {name}: HF gives the same ids (refused as not known to be equivalent)",
                        same_ids, [(p, a, b) for p, a, b in zip(T.probes(kind), ids, base[kind][2]) if a != b][:3])
        check_v2(h, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.done()


if __name__ == "__main__":
    main()
