#!/usr/bin/env python3
"""Add-k smoothed token-bigram baseline for the default model.

Counts bigrams over the training split (tokenized exactly as models/train.py
does, novels separated by <|endoftext|>) and scores the tokens of
models/valid.txt that `run --score` scores: the whole file tokenized as one
string, split into consecutive chunks of n_ctx tokens, each chunk predicting
its tokens 1..len-1 (so every predicted token has its predecessor in the same
chunk).

k is chosen from a small grid on a development slice of the training split
(counts from the first 95% of the training tokens, evaluated on the last 5%),
then the counts are redone on the whole training split with that k.

    python3 models/bigram.py [--n-ctx 256]
"""
import argparse
import math
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import HERE, chunks, encode_train, load_tokenizer  # noqa: E402


def fit(ids):
    return Counter(zip(ids, ids[1:])), Counter(ids[:-1])


def nll(model, pairs, k, V):
    big, uni = model
    tot = 0.0
    for a, b in pairs:
        tot -= math.log((big.get((a, b), 0) + k) / (uni.get(a, 0) + k * V))
    return tot / len(pairs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default="/work/train/train.txt")
    ap.add_argument("--valid", default=os.path.join(HERE, "valid.txt"))
    ap.add_argument("--n-ctx", type=int, default=256)
    args = ap.parse_args()
    tok = load_tokenizer(HERE)
    V = tok.get_vocab_size()
    train = encode_train(tok, args.train)
    valid = tok.encode(open(args.valid, encoding="utf-8").read()).ids
    cut = int(len(train) * 0.95)
    dev_model = fit(train[:cut])
    dev_pairs = list(zip(train[cut:], train[cut + 1:]))
    grid = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
    scores = {k: nll(dev_model, dev_pairs, k, V) for k in grid}
    k = min(scores, key=scores.get)
    print("dev slice: " + ", ".join("k=%g nll=%.4f" % (g, scores[g]) for g in grid))
    model = fit(train)
    pairs = [(c[i - 1], c[i]) for c in chunks(valid, args.n_ctx) for i in range(1, len(c))]
    v = nll(model, pairs, k, V)
    # unigram (add-1) for reference
    uni = Counter(train)
    u = -sum(math.log((uni.get(b, 0) + 1) / (len(train) + V)) for _, b in pairs) / len(pairs)
    print("bigram add-k (k=%g): valid tokens=%d mean_nll=%.6f perplexity=%.4f"
          % (k, len(pairs), v, math.exp(v)))
    print("unigram add-1:        valid tokens=%d mean_nll=%.6f perplexity=%.4f"
          % (len(pairs), u, math.exp(u)))


if __name__ == "__main__":
    sys.exit(main())
