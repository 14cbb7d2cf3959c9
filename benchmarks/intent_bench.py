"""Slice prediction time as the label count grows (it should grow sub-linearly, thanks to the HNSW shortlist),
against brute-force scoring of every label in the same run; and BERT pre-training throughput (tokens/s).

    python benchmarks/intent_bench.py [--labels 1000 10000 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jobmatch.intent.bert import BertSize, PretrainParams, build_model, pretrain
from jobmatch.intent.masking import session_pairs
from jobmatch.intent.tokenizer import ActivityTokenizer
from jobmatch.xmc.slice import Slice, SliceParams, _unit


def slice_scaling(label_counts: list[int], dim: int = 64, n_query: int = 2000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    print(f"{'labels':>8} {'slice ms/query':>15} {'brute force ms/query':>21} {'speed-up':>9}")
    for L in label_counts:
        model = Slice(SliceParams(shortlist=100, ef_search=200, M=32, seed=seed))
        # a fitted model's state, built directly: prediction time does not depend on how the weights were learned
        model.n_labels_, model.n_features_in_ = L, dim
        model.label_vectors_ = _unit(rng.normal(size=(L, dim)))
        model.W_ = (rng.normal(size=(L, dim)) * 0.1).astype(np.float32)
        model.b_ = np.zeros(L, np.float32)
        model.index_ = model._hnsw(model.label_vectors_)
        model.selection_ = {"C": 1.0, "classifier_weight": 0.8, "predict_shortlist": 100}
        X = rng.normal(size=(n_query, dim)).astype(np.float32)
        start = time.perf_counter()
        model.predict(X, 10)
        t_slice = (time.perf_counter() - start) / n_query * 1e3
        start = time.perf_counter()
        for s in range(0, n_query, 256):
            scores = _unit(X[s:s + 256]) @ model.W_.T + model.b_
            np.argpartition(-scores, 10, axis=1)[:, :10]
        t_brute = (time.perf_counter() - start) / n_query * 1e3
        print(f"{L:>8,} {t_slice:>15.3f} {t_brute:>21.3f} {t_brute / t_slice:>8.1f}x")


def bert_throughput(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)] + ["VIEW", "APPLY", "JOB_SEARCH"]
    corpus = [" ".join(rng.choice(words, 40)) for _ in range(3000)]
    tok = ActivityTokenizer.train(corpus, vocab_size=600)
    for size in (BertSize(), BertSize.paper()):
        instances = session_pairs(tok, corpus[:1200], size.max_len)
        model = build_model(tok.vocab_size, size, seed)
        tokens = sum(len(i.ids) for i in instances)
        start = time.perf_counter()
        pretrain(model, tok, instances, PretrainParams(epochs=1, dupe_factor=1, batch_size=32))
        secs = time.perf_counter() - start
        print(f"BERT {size.layers}x{size.hidden} pre-training on CPU: {tokens / secs:,.0f} tokens/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, nargs="+", default=[1000, 10000, 100000])
    args = ap.parse_args()
    slice_scaling(args.labels)
    bert_throughput()


if __name__ == "__main__":
    main()
