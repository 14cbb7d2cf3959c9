"""Foundation throughput: simulation, ingest, sessionization, feature-store publish / nearline update / batch get.

Each figure is printed next to a naive baseline measured in the same run (per-row pydantic validation, a Python
sessionization loop, one store call per key) and the issue's target.

The data takes the users' path: the simulator writes files; ingest validates and appends them to the event log
(`jobmatch ingest`); everything after that reads the log as of a cutoff (`EventLog.snapshot`). The JSONL batch is
the log's own events exported as a company would send them. The Redis store runs when redis-server is installed.

    python benchmarks/foundation_bench.py [--members 20000] [--keys 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
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

from jobmatch.events import EventLog, TimeBounds, action_codes, read_batch, sessionize
from jobmatch.schema import ACTION_CODES, ActivityEvent
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import FeatureStore, open_store
from jobmatch.taxonomy import builtin_taxonomy

DIM = 128
GROUP, DATASET = "bench", "bench/vectors"
# Loopback Redis on a loaded machine: a generous read timeout, so a slow moment is a figure rather than an error.
REDIS_TIMEOUTS = {"connect_timeout_s": 5.0, "read_timeout_s": 5.0}

rows: list[tuple[str, str, str, str]] = []


def report(name: str, value: str, baseline: str, target: str) -> None:
    rows.append((name, value, baseline, target))
    print(f"{name:<58} {value:>20}   {baseline:<40} {target}", flush=True)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_store(fs: FeatureStore, label: str, target_ms: float, n_keys: int) -> None:
    """Publish a whole dataset as one manifest, patch keys nearline, read 1,000-key batches pinned to the manifest."""
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n_keys, DIM)).astype(np.float32)
    t = time.perf_counter()
    manifest = fs.publish(GROUP, {DATASET: ((str(i), vecs[i]) for i in range(n_keys))}, meta={"dim": DIM})
    push_s = time.perf_counter() - t
    report(f"{label}: publish {n_keys:,} x {DIM}-d", f"{n_keys / push_s:,.0f} keys/s", "", "")

    # nearline: 1,000 keys in one update call vs one call per key (what a per-event updater would do)
    keys = [str(k) for k in rng.choice(n_keys, 1000, replace=False)]
    fresh = rng.normal(size=(len(keys), DIM)).astype(np.float32)
    batch_s = timed(lambda: fs.update(DATASET, dict(zip(keys, fresh))), repeat=3)
    single_s = timed(lambda: [fs.update(DATASET, {k: v}) for k, v in zip(keys[:200], fresh[:200])]) * 5
    report(f"{label}: update 1,000 keys (one call)", f"{batch_s * 1e3:.1f} ms",
           f"single-key calls {single_s * 1e3:.0f} ms/1,000 ({single_s / batch_s:.0f}x)", "")
    vecs[[int(k) for k in keys]] = fresh

    version = fs.manifest(GROUP).datasets[DATASET]
    assert version == manifest.datasets[DATASET]  # update patches the current version; it publishes none
    timings, single = [], []
    for rep in range(30):
        keys = [str(k) for k in rng.choice(n_keys, 1000, replace=False)]
        t = time.perf_counter()
        matrix, found = fs.get_matrix(DATASET, keys, DIM, version)
        timings.append(time.perf_counter() - t)
        assert found.all() and np.array_equal(matrix[0], vecs[int(keys[0])])
        if rep < 3:
            t = time.perf_counter()
            for k in keys:
                fs.get_one(DATASET, k, version)
            single.append(time.perf_counter() - t)
    med, one = np.median(timings) * 1e3, np.median(single) * 1e3
    t = time.perf_counter()
    decoded = fs.get(DATASET, keys, version)
    get_ms = (time.perf_counter() - t) * 1e3
    assert np.array_equal(decoded[0], matrix[0])
    report(f"{label}: batch get 1,000 x {DIM}-d (median)", f"{med:.2f} ms",
           f"1,000 single gets {one:.1f} ms ({one / med:.0f}x)", f"<= {target_ms:g} ms")
    report(f"{label}: get 1,000 decoded values (once)", f"{get_ms:.2f} ms", "", "")


def start_redis() -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:  # wait for the server to accept connections
        try:
            redis.Redis(port=port).ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise
            time.sleep(0.1)


def python_sessions(m_list: list[int], t_list: list[int], a_list: list[int], gap: int) -> list[list[int]]:
    """The kernel's outputs, row by row: per session member, start, end, events, searches, applies, after-search."""
    search_code, apply_code = int(ACTION_CODES["SEARCH"]), int(ACTION_CODES["APPLY"])
    out: list[list[int]] = []
    prev_m, prev_t, first_search = None, 0, None
    for m_, t_, a_ in zip(m_list, t_list, a_list):
        if m_ != prev_m or t_ - prev_t > gap:
            out.append([m_, t_, t_, 0, 0, 0, 0])
            first_search = None
        s = out[-1]
        s[2], s[3] = t_, s[3] + 1
        if a_ == search_code:
            s[4] += 1
            first_search = t_ if first_search is None else first_search
        elif a_ == apply_code:
            s[5] += 1
            s[6] = s[6] or int(first_search is not None and t_ > first_search)
        prev_m, prev_t = m_, t_
    return out


def write_jsonl(events: pa.Table, path: Path) -> None:
    with path.open("w") as f:
        for r in events.to_pylist():
            r["ts"] = r["ts"].isoformat().replace("+00:00", "Z")
            f.write(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--keys", type=int, default=100_000, help="vectors published to each feature store")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    print(f"{'benchmark':<58} {'measured':>20}   {'baseline (same run)':<40} target")
    work = Path(tempfile.mkdtemp(prefix="jobmatch-bench-"))
    try:
        cfg = SimConfig(members=args.members, days=28, seed=1)
        t = time.perf_counter()
        market = simulate(builtin_taxonomy(), cfg)
        sim_s = time.perf_counter() - t
        n = market.events.num_rows
        data = write_market(market, work / "sim", cfg, "builtin")
        del market  # from here on, data is read the users' way: ingested files, then the log
        report("simulate (builtin, 28 days)", f"{n / sim_s:,.0f} events/s", f"{n:,} events in {sim_s:.1f}s", "")
        # the simulated period may lie after today: its events are plausible up to its own end
        bounds = TimeBounds(now=max(datetime.now(timezone.utc), cfg.start + timedelta(days=cfg.days)))

        def ingest(path: Path, db: Path) -> None:  # what `jobmatch ingest FILE` does: validate, one atomic append
            db.unlink(missing_ok=True)
            with EventLog(db) as log:
                batch = read_batch(path, "events", bounds)
                assert not batch.errors, batch.errors[:3]
                log.append("events", batch.rows, source=str(path))

        # Ingest: Parquet, then the log's events exported as JSONL, vs per-row pydantic validation.
        main_db = work / "parquet.duckdb"
        parquet_s = timed(lambda: ingest(data / "events.parquet", main_db))
        with EventLog(main_db) as log:
            events = log.snapshot().events()
        n_json = min(n, 500_000)
        jsonl = work / "events.jsonl"
        write_jsonl(events.slice(0, n_json), jsonl)
        sample = events.slice(0, 20_000).to_pylist()
        base_rate = len(sample) / timed(lambda: [ActivityEvent.model_validate(r) for r in sample])
        json_s = timed(lambda: ingest(jsonl, work / "jsonl.duckdb"))
        for label, count, secs in (("ingest Parquet (validate + append)", n, parquet_s),
                                   ("ingest JSONL (validate + append)", n_json, json_s)):
            report(label, f"{count / secs:,.0f} events/s", f"pydantic per row: {base_rate:,.0f}/s "
                   f"({count / secs / base_rate:.0f}x)", ">= 100,000/s")

        # Sessionization: the numpy kernel on the log's events, vs a Python loop; and the whole step on the log.
        member, ts = events["member_id"].to_numpy(), events["ts"].cast(pa.int64()).to_numpy()
        action = action_codes(events["action"])
        gap = 30 * 60_000_000
        kernel_s = timed(lambda: sessionize(member, ts, action, gap), repeat=3)
        m = min(n, 200_000)
        lists = member[:m].tolist(), ts[:m].tolist(), action[:m].tolist()
        loop_rate = m / timed(lambda: python_sessions(*lists, gap))
        report("sessionize (numpy kernel)", f"{n / kernel_s:,.0f} events/s",
               f"Python loop: {loop_rate:,.0f}/s ({n / kernel_s / loop_rate:.0f}x)", ">= 1,000,000/s")
        with EventLog(main_db) as log:
            t = time.perf_counter()
            log.sessionize()
            full_s = time.perf_counter() - t
        report("sessionize from the log (read + build + store)", f"{n / full_s:,.0f} events/s", "", "")

        with open_store(f"sqlite:{work / 'store.sqlite'}", create=True) as fs:
            bench_store(fs, "store sqlite", 5, args.keys)
        started = start_redis()
        if started:
            proc, url = started
            try:
                with open_store(url, create=True, **REDIS_TIMEOUTS) as fs:
                    bench_store(fs, "store redis (loopback)", 10, args.keys)
            finally:
                proc.terminate()
                proc.wait()
        else:
            report("store redis", "skipped", "redis-server not installed", "<= 10 ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("name", "value", "baseline", "target"), r)) for r in rows],
                                        indent=2))


if __name__ == "__main__":
    main()
