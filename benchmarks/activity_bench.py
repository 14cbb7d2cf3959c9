"""Member activity embeddings: encoder throughput, learned-encoder training time, real-time update latency.

Baseline (same run): the mean embedding computed member by member in Python, as a naive job would.

    python benchmarks/activity_bench.py [--members 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.embed.sequences import APPLY, DISMISS, PAD, SAVE, SEQ_LEN, Sequences, action_log, add_random_negatives
from jobmatch.embed.sequences import proxy_examples
from jobmatch.flows.activity import EmbeddingModels, RealtimeActivity
from jobmatch.simulate import SimConfig, simulate
from jobmatch.store import SQLiteStore
from jobmatch.taxonomy import builtin_taxonomy


def synthetic_sequences(n: int, n_jobs: int, rng: np.random.Generator) -> Sequences:
    """Heavy-tailed history lengths (most members short, some at the 32 cap), as in the simulator."""
    lengths = np.minimum(1 + rng.negative_binomial(1, 0.08, n), SEQ_LEN)
    slot = np.arange(SEQ_LEN)[None, :] >= SEQ_LEN - lengths[:, None]
    action = np.where(slot, rng.choice([APPLY, SAVE, DISMISS], (n, SEQ_LEN), p=[0.5, 0.35, 0.15]), PAD).astype(np.int8)
    job = np.where(slot, rng.integers(n_jobs, size=(n, SEQ_LEN)), -1)
    return Sequences(np.arange(n), job, action, np.cumsum(slot, axis=1).astype(np.int64))


def naive_mean(seqs: Sequences, job_emb: np.ndarray, limit: int) -> float:
    start = time.perf_counter()
    for i in range(limit):
        out = []
        for a in (APPLY, SAVE, DISMISS):
            rows = [job_emb[j] for j, c in zip(seqs.job[i], seqs.action[i]) if c == a]
            out.append(np.mean(rows, axis=0) if rows else np.zeros(job_emb.shape[1]))
        np.concatenate(out)
    return limit / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=100_000)
    args = ap.parse_args()
    market = simulate(builtin_taxonomy(), SimConfig(members=20_000, days=28, seed=1))
    tables = {"events": market.events, "jobs": market.jobs, "companies": market.companies}
    ts = market.events["ts"].cast(pa.int64()).to_numpy()
    cutoff = int(ts.min() + 0.8 * (ts.max() - ts.min()))
    started = time.perf_counter()
    models = EmbeddingModels.train(tables, cutoff)
    print(f"train job encoder + learned aggregators (20k members, 3 epochs): {time.perf_counter() - started:.1f} s")
    past = market.events.filter(pc.less(market.events["ts"].cast(pa.int64()), cutoff))
    examples = proxy_examples(add_random_negatives(action_log(past, models.job_row), np.random.default_rng(0)))
    for name in ("learned-cnn", "learned-transformer"):
        agg = type(models.aggregators[name])(**models.aggregators[name].params())
        start = time.perf_counter()
        agg.fit(examples, models.job_emb)
        print(f"  {name}: {time.perf_counter() - start:.1f} s for {examples.label.size:,} proxy examples x 3 epochs")

    rng = np.random.default_rng(0)
    seqs = synthetic_sequences(args.members, models.job_emb.shape[0], rng)
    base = naive_mean(seqs, models.job_emb, 5000)
    print(f"\n{'encoder':<22} {'members/s':>12} {'time for ' + format(args.members, ','):>18}   vs naive Python mean")
    for name, agg in models.aggregators.items():
        start = time.perf_counter()
        agg.transform(seqs, models.job_emb)
        secs = time.perf_counter() - start
        note = " (target <= 60 s)" if name.startswith("learned") else ""
        print(f"{name:<22} {args.members / secs:>12,.0f} {secs:>16.2f} s   {args.members / secs / base:>6.1f}x{note}")
    print(f"{'naive Python mean':<22} {base:>12,.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "store.sqlite")
        live = RealtimeActivity(models, store).load(market.events)
        members = rng.choice(market.members["member_id"].to_numpy(), 300, replace=False)
        now = int(ts.max()) + 1
        print(f"\n{'update_member latency':<30} {'p50':>8} {'p99':>8}")
        for name, agg in models.aggregators.items():
            lat = []
            for m in members:
                seq = live.sequence(int(m), now)
                start = time.perf_counter()
                agg.transform(seq, models.job_emb)
                lat.append(time.perf_counter() - start)
            lat_ms = np.array(lat) * 1e3
            target = 20 if name.startswith("learned") else 5
            print(f"{name + ' (compute)':<30} {np.median(lat_ms):>6.2f}ms {np.percentile(lat_ms, 99):>6.2f}ms"
                  f"   target <= {target} ms")
        lat = []
        for i, m in enumerate(members):
            event = {"action": "APPLY", "job_id": int(models.job_ids[i]), "ts": now + i}
            start = time.perf_counter()
            live.update_member(int(m), event)
            lat.append(time.perf_counter() - start)
        lat_ms = np.array(lat) * 1e3
        print(f"{'all 4 encoders + 4 store writes':<30} {np.median(lat_ms):>6.2f}ms {np.percentile(lat_ms, 99):>6.2f}ms")
        store.close()


if __name__ == "__main__":
    main()
