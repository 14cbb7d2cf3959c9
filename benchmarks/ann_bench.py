"""The sharded HNSW user-vector index (002 §4.3, §5.4) against exact search measured in the same run: recall@k and
per-query latency for each shard count, build time, and the audience-expansion query (k = 500).

Vectors are clustered like user vectors (seekers of one occupation lie together), 256-d like the cpu BERT_FT
vector (4 x 64). Latencies are wall time on this machine: on a shared box they are noisy, the ratios less so.

    python benchmarks/ann_bench.py [--members 100000] [--shards 1 4 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from jobmatch.ann import AnnParams, ShardedIndex


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, dim))).astype(np.float32)


def per_query_ms(fn, queries: np.ndarray, k: int) -> float:
    start = time.perf_counter()
    for i in range(queries.shape[0]):
        fn(queries[i:i + 1], k)
    return (time.perf_counter() - start) / queries.shape[0] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X = clustered(args.members, args.dim, max(10, args.members // 400), args.seed)
    keys = np.arange(args.members)
    rng = np.random.default_rng(args.seed + 1)
    print(f"{args.members:,} vectors x {args.dim}-d, {args.queries} queries, {args.threads} threads")
    print(f"{'shards':>6} {'build s':>8} {'k':>4} {'recall@k':>9} {'ANN ms/query':>13} {'exact ms/query':>15} "
          f"{'speed-up':>9}")
    for shards in args.shards:
        params = AnnParams(shards=shards, M=16, ef_construction=100, ef_search=200, threads=args.threads,
                           seed=args.seed)
        start = time.perf_counter()
        index = ShardedIndex(params).fit(keys, X)
        build = time.perf_counter() - start
        Q = index.transform(X[rng.permutation(args.members)[:args.queries]])
        for k in (10, 100, 500):
            ann, _ = index.search(Q, k)
            exact, _ = index.exact_search(Q, k)
            recall = float(np.mean([np.intersect1d(a, e).size / k for a, e in zip(ann, exact)]))
            t_ann = per_query_ms(index.search, Q[:100], k)
            t_exact = per_query_ms(index.exact_search, Q[:100], k)
            print(f"{shards:>6} {build:>8.1f} {k:>4} {recall:>9.4f} {t_ann:>13.3f} {t_exact:>15.3f} "
                  f"{t_exact / t_ann:>8.1f}x")


if __name__ == "__main__":
    main()
