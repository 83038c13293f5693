"""Chat templates for the tests of run's chat forms (run.c IV.2): one model
directory per form, built with transformers, and the conversation the tests
write.  Used by tests/gen_chat_fixtures.py (which commits the directories and
apply_chat_template's ids as tests/fixtures_chat/) and by
tests/hf_chat_templates.py (live, in make test-hf).  Importing this module
needs only the standard library; build() needs transformers.

The templates are written here, in the shape of each family's published
template (the same markers, whitespace and default-system rule), so that
apply_chat_template, not run, says what a conversation becomes.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TOKDIR = os.path.join(HERE, "fixtures", "f32_st_basic", "hf")  # GPT-2-style BPE, 385 ids

CHATML = ("{% for message in messages %}"
          "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# ChatML with a system message of its own when the conversation has none
# (SmolLM2-Instruct and Qwen2.5-Instruct do this)
CHATML_SYSTEM = ("{% for message in messages %}"
                 "{% if loop.first and messages[0]['role'] != 'system' %}"
                 "{{ '<|im_start|>system\\nYou are a small test model, made to check chat forms.<|im_end|>\\n' }}"
                 "{% endif %}"
                 "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
                 "{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# Zephyr (TinyLlama-Chat): the role markers are plain text, EOS ends a turn
ZEPHYR = ("{% for message in messages %}\n"
          "{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
          "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
          "{% endif %}\n"
          "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
          "{% endfor %}")

LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}"
          "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
          "+ message['content'] | trim + '<|eot_id|>' %}"
          "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
          "{{ content }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

# name: (template, special tokens to add, eos token, bos token, header code)
FORMS = {
    "chatml": (CHATML, ["<|im_start|>", "<|im_end|>"], None, None, 1),
    "chatml_system": (CHATML_SYSTEM, ["<|im_start|>", "<|im_end|>"], None, None, 1),
    "zephyr": (ZEPHYR, ["</s>"], "</s>", None, 2),
    "llama3": (LLAMA3, ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
               "<|eot_id|>", "<|begin_of_text|>", 3),
}

# (name, messages): a three-turn conversation with a system message, the
# same without one, and one user line alone
CONVERSATIONS = [
    ("three turns, system", [
        {"role": "system", "content": "You are terse.  Answer in one line."},
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": "Hi. How can I help?"},
        {"role": "user", "content": "Tell me a story\nabout a cat, in two lines."},
        {"role": "assistant", "content": "A cat sat.\nThen it slept. "},
        {"role": "user", "content": "  我喜欢学习 - and you? "},
    ]),
    ("three turns, no system", [
        {"role": "user", "content": "Hello there!"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Why is the sky blue?"},
        {"role": "assistant", "content": "Scattering."},
        {"role": "user", "content": "ok"},
    ]),
    ("one line", [{"role": "user", "content": "Once upon a time"}]),
]


def as_lines(messages):
    """The conversation as `run --tokenize --chat` reads it: 'role: text'
    lines, a message's later lines following its first."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages)


def build(name, out_dir):
    """A tiny random GPT-2 with the form's tokenizer and template in out_dir
    (save_pretrained, as a user's directory would be)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    template, specials, eos, bos, _code = FORMS[name]
    tok = GPT2TokenizerFast.from_pretrained(TOKDIR)
    tok.add_special_tokens({"additional_special_tokens": specials})
    if eos:
        tok.eos_token = eos
    if bos:
        tok.bos_token = bos
    tok.chat_template = template
    torch.manual_seed(sum(map(ord, name)))
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=8, n_positions=160, vocab_size=len(tok),
                     eos_token_id=tok.convert_tokens_to_ids(eos) if eos else None,
                     bos_token_id=tok.convert_tokens_to_ids(bos) if bos else None)
    model = GPT2LMHeadModel(cfg).eval()
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return tok


# `run -i --system SYSTEM -n 0` with these lines typed: each reply is empty,
# so after line k the context holds the first k turns of INTERACTIVE with
# empty assistant messages, as apply_chat_template writes them
INTERACTIVE_SYSTEM = "Be nice."
INTERACTIVE_LINES = ["Hello", "More please"]


def template_ids(tok, messages, add_generation_prompt):
    ids = tok.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    if hasattr(ids, "keys"):  # a BatchEncoding in some versions
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def expected(tok, name):
    """apply_chat_template's ids for every conversation, with the model's
    turn started (add_generation_prompt=True), and the context lengths of
    the interactive session."""
    out = {"conversations": [], "interactive": []}
    for cname, messages in CONVERSATIONS:
        out["conversations"].append({
            "conversation": cname, "lines": as_lines(messages),
            "ids": template_ids(tok, messages, True),
            "text": tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)})
    # the form with its own system message is run without --system
    messages = [] if name == "chatml_system" else [{"role": "system", "content": INTERACTIVE_SYSTEM}]
    for line in INTERACTIVE_LINES:
        messages += [{"role": "user", "content": line}, {"role": "assistant", "content": ""}]
        out["interactive"].append(len(template_ids(tok, messages, False)))
    return out
