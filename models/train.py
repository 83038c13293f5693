#!/usr/bin/env python3
"""Train the default model (a small GPT-2) from scratch on the CPU.

Run models/prepare.py first (it writes the training text, models/valid.txt and
the tokenizer). Then:

    nohup python3 models/train.py > /work/train/train.log 2>&1 &

Every --eval-every steps the validation loss is measured exactly the way
`run --score` measures it (see score_ids) and the best model so far is saved
as a Hugging Face directory in --out (default /work/train/hf). At the end the
best checkpoint is reloaded, scored on the whole of models/valid.txt, and the
result is written to models/valid_ppl.json. `--eval-only` redoes that last
step for an existing --out directory.

The learning rate follows a cosine schedule over a wall-clock budget
(--minutes) rather than a fixed step count, because the machine is shared and
its speed varies; the step count reached is recorded in the log and in
valid_ppl.json.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
EOT = "<|endoftext|>"


def load_tokenizer(tok_dir):
    from tokenizers import ByteLevelBPETokenizer
    return ByteLevelBPETokenizer(os.path.join(tok_dir, "vocab.json"),
                                 os.path.join(tok_dir, "merges.txt"),
                                 add_prefix_space=False)


def encode_train(tok, path):
    """Training text: documents separated by lines holding only <|endoftext|>;
    each separator becomes the single special token."""
    text = open(path, encoding="utf-8").read()
    eot = tok.token_to_id(EOT)
    ids = []
    for i, doc in enumerate(text.split("\n" + EOT + "\n")):
        if i:
            ids.append(eot)
        ids.extend(tok.encode(doc).ids)
    return ids


def chunks(ids, n_ctx):
    """Consecutive, independent chunks of n_ctx tokens (last may be shorter)."""
    return [ids[i:i + n_ctx] for i in range(0, len(ids), n_ctx)]


@torch.no_grad()
def score_ids(model, ids, n_ctx, every=1):
    """The `run --score` procedure: split ids into consecutive chunks of n_ctx
    tokens, each chunk predicts its tokens 1..len-1; returns (sum of NLL,
    number of predicted tokens). `every` > 1 scores only every N-th chunk."""
    model.eval()
    total, count = 0.0, 0
    for k, c in enumerate(chunks(ids, n_ctx)):
        if k % every or len(c) < 2:
            continue
        x = torch.tensor([c])
        logits = model(input_ids=x).logits[0].float()
        logp = torch.log_softmax(logits[:-1], dim=-1)
        nll = -logp.gather(1, x[0, 1:, None])[:, 0]
        total += nll.double().sum().item()
        count += len(c) - 1
    return total, count


def save_hf(model, out, tok_dir):
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(tok_dir, name), os.path.join(tmp, name))
    try:
        from transformers import GPT2TokenizerFast
        t = GPT2TokenizerFast(vocab_file=os.path.join(tok_dir, "vocab.json"),
                              merges_file=os.path.join(tok_dir, "merges.txt"),
                              add_prefix_space=False, unk_token=EOT,
                              bos_token=EOT, eos_token=EOT)
        t.model_max_length = model.config.n_positions
        t.save_pretrained(tmp)
    except Exception as e:  # the two files above are what export.py needs
        print("note: tokenizer save_pretrained failed: %r" % e, flush=True)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)


def final_eval(args, tok):
    from transformers import GPT2LMHeadModel
    model = GPT2LMHeadModel.from_pretrained(args.out, torch_dtype=torch.float32)
    n_ctx = model.config.n_positions
    valid_text = open(args.valid, encoding="utf-8").read()
    valid_ids = tok.encode(valid_text).ids
    t0 = time.time()
    vs, vn = score_ids(model, valid_ids, n_ctx)
    train_ids = encode_train(tok, args.train)
    ts, tn = score_ids(model, train_ids, n_ctx, every=10)
    state = {}
    sp = os.path.join(args.out, "train_state.json")
    if os.path.exists(sp):
        state = json.load(open(sp))
    res = {
        "valid_file": "models/valid.txt",
        "valid_bytes": len(valid_text.encode("utf-8")),
        "valid_tokens": len(valid_ids),
        "n_ctx": n_ctx,
        "chunks": len(chunks(valid_ids, n_ctx)),
        "tokens": vn,
        "mean_nll": vs / vn,
        "perplexity": math.exp(vs / vn),
        "train_sample_tokens": tn,
        "train_mean_nll": ts / tn,
        "train_perplexity": math.exp(ts / tn),
        "params": sum(p.numel() for p in model.parameters()),
        "training": state,
    }
    with open(args.ppl_json, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print("final: valid tokens=%d mean_nll=%.6f perplexity=%.4f | train(1/10 of chunks) "
          "mean_nll=%.6f perplexity=%.4f (%.0fs)" % (vn, vs / vn, math.exp(vs / vn),
          ts / tn, math.exp(ts / tn), time.time() - t0), flush=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="/work/train/train.txt")
    ap.add_argument("--valid", default=os.path.join(HERE, "valid.txt"))
    ap.add_argument("--tok-dir", default=HERE)
    ap.add_argument("--out", default="/work/train/hf")
    ap.add_argument("--ppl-json", default=os.path.join(HERE, "valid_ppl.json"))
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-only", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    tok = load_tokenizer(args.tok_dir)
    if args.eval_only:
        final_eval(args, tok)
        return 0

    from transformers import GPT2Config, GPT2LMHeadModel
    eot = tok.token_to_id(EOT)
    train_ids = encode_train(tok, args.train)
    valid_ids = tok.encode(open(args.valid, encoding="utf-8").read()).ids
    print("train tokens %d, valid tokens %d, vocab %d" % (len(train_ids), len(valid_ids),
          tok.get_vocab_size()), flush=True)
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=args.n_ctx,
                     n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
                     activation_function="gelu_new", resid_pdrop=args.dropout,
                     embd_pdrop=args.dropout, attn_pdrop=args.dropout,
                     tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot)
    model = GPT2LMHeadModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print("params %d (%.2f MB as float32)" % (n_params, n_params * 4 / 1e6), flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    data = torch.tensor(train_ids, dtype=torch.long)
    T = args.n_ctx
    budget = args.minutes * 60.0
    t_start = time.time()
    best = float("inf")
    ema = None
    step = 0
    history = []

    def lr_at(step, elapsed):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = min(1.0, max(elapsed / budget, step / args.max_steps))
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))

    def evaluate():
        nonlocal best
        vs, vn = score_ids(model, valid_ids, T)
        ts, tn = score_ids(model, train_ids, T, every=50)
        v, t = vs / vn, ts / tn
        el = time.time() - t_start
        history.append({"step": step, "minutes": round(el / 60, 2),
                        "train_loss": round(t, 4), "valid_loss": round(v, 4)})
        mark = ""
        if v < best:
            best = v
            model.config.update({})
            save_hf(model, args.out, args.tok_dir)
            with open(os.path.join(args.out, "train_state.json"), "w") as f:
                json.dump({"step": step, "tokens_seen": step * args.batch * T,
                           "minutes": round(el / 60, 2), "args": vars(args),
                           "history": history}, f, indent=1)
            mark = " (saved)"
        print("eval step %d  %.1f min  train_loss %.4f  valid_loss %.4f  valid_ppl %.2f%s"
              % (step, el / 60, t, v, math.exp(v), mark), flush=True)
        model.train()

    model.train()
    while True:
        elapsed = time.time() - t_start
        if elapsed >= budget or step >= args.max_steps:
            break
        lr = lr_at(step, elapsed)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(data) - T - 1, (args.batch,))
        x = torch.stack([data[s:s + T] for s in starts])
        logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)),
                               x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 25 == 0:
            el = time.time() - t_start
            print("step %d  %.1f min  lr %.2e  loss %.4f  ema %.4f  %.0f tok/s"
                  % (step, el / 60, lr, loss.item(), ema, step * args.batch * T / el),
                  flush=True)
        if step % args.eval_every == 0:
            evaluate()
    evaluate()
    print("training done: %d steps, %.1f min, %d tokens seen (%.2f epochs)"
          % (step, (time.time() - t_start) / 60, step * args.batch * T,
             step * args.batch * T / len(train_ids)), flush=True)
    final_eval(args, tok)
    return 0


if __name__ == "__main__":
    sys.exit(main())
