"""GAME per-entity training: the batched Newton solver vs a loop of per-entity scipy L-BFGS fits (GDMix's method),
on identical data in one run; and Qualified Applicant scoring latency with a warm cache.

    python benchmarks/game_bench.py [--entities 100000] [--skip-scoring]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jobmatch.game.solvers import fit_batched, fit_each_scipy, objective


def total_objective(coef, entity, X, y, w, o, lam, mu) -> float:
    order = np.argsort(entity, kind="stable")
    bounds = np.searchsorted(entity[order], np.arange(coef.shape[0] + 1))
    return sum(objective(coef[e], X[order[bounds[e]:bounds[e + 1]]], y[order[bounds[e]:bounds[e + 1]]],
                         w[order[bounds[e]:bounds[e + 1]]], o[order[bounds[e]:bounds[e + 1]]], lam[e], mu[e])
               for e in range(coef.shape[0]))


def solver_bench(n_entities: int, d: int = 6, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    counts = np.minimum(1 + rng.negative_binomial(2, 0.2, n_entities), 200)  # heavy-tailed rows per entity
    entity = np.repeat(np.arange(n_entities), counts)
    n = entity.size
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    truth = rng.normal(0, 0.8, size=(n_entities, d))
    o = rng.normal(0, 0.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(o + (X * truth[entity]).sum(1))))).astype(float)
    w = np.ones(n)
    lam, mu = np.full((n_entities, d), 1.0), np.zeros((n_entities, d))
    print(f"{n_entities:,} entities, {n:,} rows, {d} coefficients each")
    t = time.perf_counter()
    b_fast, _ = fit_batched(entity, n_entities, X, y, w, o, lam, mu)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    b_ref, _ = fit_each_scipy(entity, n_entities, X, y, w, o, lam, mu)
    ref = time.perf_counter() - t
    f_fast = total_objective(b_fast, entity, X, y, w, o, lam, mu)
    f_ref = total_objective(b_ref, entity, X, y, w, o, lam, mu)
    rel = (f_fast - f_ref) / abs(f_ref)
    print(f"batched Newton       {fast:8.2f} s   objective {f_fast:.6f}")
    print(f"scipy L-BFGS loop    {ref:8.2f} s   objective {f_ref:.6f}")
    print(f"speed-up             {ref / fast:8.1f}x   (target >= 20x); objective difference {rel:+.2e} relative "
          f"(target |.| <= 1e-6); max |coef diff| {np.abs(b_fast - b_ref).max():.1e}")


def scoring_bench() -> None:
    from jobmatch.flows.qa import run_qa
    from jobmatch.game.serving import QAScorer
    from jobmatch.qa import QAFeaturizer
    from jobmatch.simulate import SimConfig, simulate, write_market
    from jobmatch.store import SQLiteStore
    from jobmatch.taxonomy import builtin_taxonomy

    work = Path(tempfile.mkdtemp(prefix="jobmatch-game-bench-"))
    cfg = SimConfig(members=20_000, days=28, seed=1)
    data = write_market(simulate(builtin_taxonomy(), cfg), work / "data", cfg, "builtin")
    store = SQLiteStore(work / "store.sqlite")
    run_qa(data, work, store, datetime(2026, 1, 25))
    t = {n: pq.read_table(data / f"{n}.parquet") for n in ("jobs", "members", "projects")}
    f = QAFeaturizer(t["jobs"], t["members"], t["projects"])
    scorer = QAScorer(store, f.features, f.project_of_job)
    jobs = t["jobs"]["job_id"].to_numpy()[:1000]
    rng = np.random.default_rng(0)
    members = rng.choice(t["members"]["member_id"].to_numpy(), 50, replace=False)
    cold = []
    for m in members:  # first request per member: one batch get of its and the jobs' coefficients
        s = time.perf_counter()
        scorer.score_member(int(m), jobs)
        cold.append(time.perf_counter() - s)
    warm = []
    for _ in range(5):
        for m in members:
            s = time.perf_counter()
            scorer.score_member(int(m), jobs)
            warm.append(time.perf_counter() - s)
    warm_ms = np.array(warm) * 1e3
    print(f"score 1 member x 1,000 jobs, cold cache: median {np.median(cold) * 1e3:.2f} ms")
    print(f"score 1 member x 1,000 jobs, warm cache: median {np.median(warm_ms):.2f} ms, p99 "
          f"{np.percentile(warm_ms, 99):.2f} ms (target <= 2 ms; cold/warm {np.median(cold) * 1e3 / np.median(warm_ms):.1f}x)")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--skip-scoring", action="store_true")
    args = ap.parse_args()
    solver_bench(args.entities)
    if not args.skip_scoring:
        scoring_bench()


if __name__ == "__main__":
    main()
