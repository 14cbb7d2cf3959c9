"""Hirer-preference online learning: feedback ingestion rate and real-time re-ranking latency.

Baselines (same run): for ingestion, recounting the same feedback offline with the vectorized batch computation;
for ranking, recomputing a project's term weights from its whole feedback history on every ranking request,
which is what a system without online counts would do.

The data takes the users' path: simulated, written as files, ingested into the event log, read back as of the end
of the period.

    python benchmarks/hiring_bench.py [--members 20000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import redis

from jobmatch.evaluate.hiring import evaluate_hiring
from jobmatch.events import EventLog, Snapshot, TimeBounds
from jobmatch.events.loading import ingest_folder
from jobmatch.hiring.dataset import Shown, candidate_impressions, personalization_features, shown_streams
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.service import CandidateRankingService
from jobmatch.hiring.state import MemoryProjectCounts, RedisProjectCounts
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.taxonomy import builtin_taxonomy

# Loopback Redis on a loaded machine: a generous read timeout, so the figure is a rate rather than an error.
REDIS_TIMEOUTS = {"connect_timeout_s": 5.0, "read_timeout_s": 5.0}


def line(name: str, value: str, note: str = "") -> None:
    print(f"{name:<56} {value:>16}   {note}", flush=True)


def load_market(log: EventLog, work: Path, cfg: SimConfig) -> None:
    """Simulate, write the files, ingest them through validation into the event log, sessionize."""
    data = write_market(simulate(builtin_taxonomy(), cfg), work / "data", cfg, "builtin")
    end = cfg.start + timedelta(days=cfg.days)
    # the simulated period may lie after today: its events are plausible up to its own end
    ingest_folder(log, data, TimeBounds(now=max(datetime.now(timezone.utc), end)))
    log.sessionize()


def ingest_rate(prefs: HirerPreferences, fb: pa.Table, batch: int = 0) -> float:
    rows = list(zip(fb["project_id"].to_pylist(), fb["member_id"].to_pylist(), fb["channel"].to_pylist(),
                    fb["feedback"].to_pylist()))
    t = time.perf_counter()
    if batch:
        for i in range(0, len(rows), batch):
            prefs.observe_feedback_batch(rows[i:i + batch])
    else:
        for p, m, s, r in rows:
            prefs.observe_feedback(p, m, s, r)
    return len(rows) / (time.perf_counter() - t)


def only_project(shown: Shown, p: int) -> Shown:
    i, f = shown.imp_p == p, shown.fb_p == p
    return Shown(shown.imp_p[i], shown.imp_m[i], shown.imp_s[i], shown.imp_ts[i],
                 shown.fb_p[f], shown.fb_m[f], shown.fb_s[f], shown.fb_r[f], shown.fb_ts[f])


def redis_ingest(terms: ProfileTerms, projects: list[int], sample: pa.Table) -> None:
    server = shutil.which("redis-server")
    if not server:
        line("feedback ingestion, Redis", "skipped", "redis-server not installed")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 30
        while True:  # wait for the server to accept connections
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        counts = RedisProjectCounts(url, **REDIS_TIMEOUTS)
        rate = ingest_rate(HirerPreferences(terms, counts, projects), sample)
        line("feedback ingestion, Redis (event by event)", f"{rate:,.0f} events/s",
             f"{sample.num_rows:,} events; one script call each")
        # Start the batched run from an empty server (the events are deduplicated, so a second pass over the same
        # counts would count nothing); a counts object refuses a store whose generation changed, so open a new one.
        counts.close()
        redis.Redis(port=port).flushdb()
        counts = RedisProjectCounts(url, **REDIS_TIMEOUTS)
        rate = ingest_rate(HirerPreferences(terms, counts, projects), sample, batch=1000)
        line("feedback ingestion, Redis (pipelined batches of 1,000)", f"{rate:,.0f} events/s",
             f"{sample.num_rows:,} events")
        counts.close()
    finally:
        proc.terminate()
        proc.wait()


def ranking_latency(snap: Snapshot, work: Path, fb: pa.Table, terms: ProfileTerms, shown: Shown,
                    requests: int) -> None:
    as_of = snap.time_range()[1] + 1
    service = CandidateRankingService.from_snapshot(snap, work / "eval" / "ranker")
    ingest_rate(service.prefs, fb)  # the state as of the end of the period
    busiest = fb.group_by("project_id").aggregate([("member_id", "count")]).sort_by(
        [("member_id_count", "descending")])["project_id"].to_pylist()[:20]
    member_ids = snap.entities("members")["member_id"].to_numpy()
    rng = np.random.default_rng(0)
    warmup = requests // 20
    for n in (100, 500):
        lat, online = [], []
        for i in range(requests):
            p = busiest[i % len(busiest)]
            cands = rng.choice(member_ids, n, replace=False).tolist()
            t = time.perf_counter()
            service.rank_candidates(p, cands, at_us=as_of)
            lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            service.prefs.features(p, cands)  # the online term weights alone: the part the baseline replaces
            online.append(time.perf_counter() - t)
        lat_ms, online_ms = np.array(lat[warmup:]) * 1e3, np.median(online[warmup:]) * 1e3
        # baseline: the same term-weight features recomputed from the project's history for this one request
        base = []
        for i in range(10):
            p = busiest[i % len(busiest)]
            cands = rng.choice(member_ids, n, replace=False)
            t = time.perf_counter()
            personalization_features(terms, only_project(shown, p), np.full(n, p), cands, np.full(n, as_of))
            base.append(time.perf_counter() - t)
        base_ms = np.median(base) * 1e3
        line(f"rank_candidates, {n} candidates (p50 / p99)",
             f"{np.percentile(lat_ms, 50):.2f} / {np.percentile(lat_ms, 99):.2f} ms",
             f"{len(lat_ms)} requests on the 20 busiest projects; target p99 <= 10 ms")
        line("  of which online term weights (p50)", f"{online_ms:.2f} ms",
             f"recompute-from-history baseline p50 {base_ms:.2f} ms ({base_ms / online_ms:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=400, help="ranking requests per candidate-list size")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jobmatch-hiring-bench-"))
    try:
        with EventLog(work / "events.duckdb") as log:
            load_market(log, work, SimConfig(members=args.members, days=28, seed=1))
            snap = log.snapshot()
            members, projects_t = snap.entities("members"), snap.entities("projects")
            fb = snap.feedback()
            terms = ProfileTerms.from_members(members)
            projects = projects_t["project_id"].to_pylist()
            print(f"{'benchmark':<56} {'measured':>16}   note")
            rate = ingest_rate(HirerPreferences(terms, MemoryProjectCounts(), projects), fb)
            line("feedback ingestion, in-process", f"{rate:,.0f} events/s", f"{fb.num_rows:,} events; target >= "
                 "20,000/s")
            sample = fb.slice(0, 20_000)
            no_impressions = pa.table({"project_id": pa.array([], pa.int64()), "member_id": pa.array([], pa.int64()),
                                       "channel": pa.array([], pa.string()), "ts": sample["ts"].slice(0, 0)})
            t = time.perf_counter()
            personalization_features(terms, shown_streams(no_impressions, sample), sample["project_id"].to_numpy(),
                                     sample["member_id"].to_numpy(), sample["ts"].cast(pa.int64()).to_numpy())
            line("  baseline: offline recount of the same events",
                 f"{sample.num_rows / (time.perf_counter() - t):,.0f} events/s", "vectorized batch recomputation")
            redis_ingest(terms, projects, sample)

            evaluate_hiring(log, work / "eval")  # trains the ranker the service loads
            shown = shown_streams(candidate_impressions(snap.events(), projects_t, snap.hirer_impressions()), fb)
            ranking_latency(snap, work, fb, terms, shown, args.requests)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
