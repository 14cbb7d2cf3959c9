"""Member activity embeddings: encoder throughput, learned-encoder training time, real-time update latency.

Baseline (same run): the mean embedding computed member by member in Python, as a naive job would.

The data takes the users' path: a simulated marketplace (`--sim-members`) is written as files, ingested into the
event log and read back as of a cutoff; the models learn from the events before 80% of the period, as the
scheduled flow's first run does. Encoder throughput runs on the members' real sequences as of the end of the
period, repeated up to `--members` rows.

    python benchmarks/activity_bench.py [--members 100000] [--sim-members 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from jobmatch.embed.aggregators import LearnedAggregator
from jobmatch.embed.sequences import APPLY, DISMISS, SAVE, Sequences, action_log, member_sequences, proxy_examples
from jobmatch.events import EventLog, TimeBounds
from jobmatch.events.loading import ingest_folder
from jobmatch.flows.activity import EVENT_COLUMNS, WINDOW_DAYS, EmbeddingModels, RealtimeActivity
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import open_store
from jobmatch.taxonomy import builtin_taxonomy


def load_market(log: EventLog, work: Path, cfg: SimConfig) -> None:
    """Simulate, write the files, ingest them through validation into the event log, sessionize."""
    data = write_market(simulate(builtin_taxonomy(), cfg), work / "data", cfg, "builtin")
    end = cfg.start + timedelta(days=cfg.days)
    # the simulated period may lie after today: its events are plausible up to its own end
    ingest_folder(log, data, TimeBounds(now=max(datetime.now(timezone.utc), end)))
    log.sessionize()


def naive_mean(seqs: Sequences, job_emb: np.ndarray, limit: int) -> float:
    limit = min(limit, len(seqs))
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
    ap.add_argument("--members", type=int, default=100_000, help="member sequences embedded by each encoder")
    ap.add_argument("--sim-members", type=int, default=20_000, help="members of the simulated marketplace")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the learned aggregators")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EventLog(Path(tmp) / "events.duckdb") as log:
        load_market(log, Path(tmp), SimConfig(members=args.sim_members, days=28, seed=1))
        lo, hi = log.snapshot().time_range()
        cutoff = int(lo + 0.8 * (hi - lo))
        past = log.snapshot(cutoff)
        past_events = past.events(EVENT_COLUMNS)
        started = time.perf_counter()
        models = EmbeddingModels.train(past.entities("jobs"), past.entities("companies"), past_events,
                                       args.epochs, seed=0)
        print(f"train job encoder + learned aggregators ({args.sim_members:,} members, {args.epochs} epochs): "
              f"{time.perf_counter() - started:.1f} s")
        examples = proxy_examples(action_log(past_events, models.job_row), np.random.default_rng(0))
        for name, trained in models.aggregators.items():
            if not isinstance(trained, LearnedAggregator):
                continue
            agg = LearnedAggregator(**trained.params())
            start = time.perf_counter()
            agg.fit(examples, models.job_emb)
            print(f"  {name}: {time.perf_counter() - start:.1f} s for {examples.label.size:,} proxy examples x "
                  f"{agg.epochs} epochs")

        # every job as of the end of the period, embedded from content (the flow's later runs do the same)
        now_snap = log.snapshot()
        models = models.with_jobs(now_snap.entities("jobs"), now_snap.entities("companies"))
        events = now_snap.events(EVENT_COLUMNS)
        now = hi + 1
        real = member_sequences(action_log(events, models.job_row), now, WINDOW_DAYS)
        seqs = real.take(np.resize(np.arange(len(real)), args.members))
        base = naive_mean(seqs, models.job_emb, 5000)
        print(f"\n{len(real):,} members with actions in the last {WINDOW_DAYS} days, repeated to {args.members:,}")
        print(f"{'encoder':<22} {'members/s':>12} {'time for ' + format(args.members, ','):>18}   vs naive Python mean")
        for name, agg in models.aggregators.items():
            start = time.perf_counter()
            agg.transform(seqs, models.job_emb)
            secs = time.perf_counter() - start
            note = " (target <= 60 s for 100,000)" if name.startswith("learned") else ""
            print(f"{name:<22} {args.members / secs:>12,.0f} {secs:>16.2f} s   {args.members / secs / base:>6.1f}x"
                  f"{note}")
        print(f"{'naive Python mean':<22} {base:>12,.0f}")

        rng = np.random.default_rng(0)
        with open_store(f"sqlite:{Path(tmp) / 'store.sqlite'}", create=True) as store:
            live = RealtimeActivity(models, store).load(events)
            members = rng.choice(real.member_id, min(300, len(real)), replace=False)
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
            print(f"{'all 4 encoders + 4 store writes':<30} {np.median(lat_ms):>6.2f}ms "
                  f"{np.percentile(lat_ms, 99):>6.2f}ms")


if __name__ == "__main__":
    main()
