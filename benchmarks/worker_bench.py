"""Nearline worker drain time: a burst of seeker events published at once, and the time until the queue's lag is
back to 0 (every event appended to the log, its member's activity embeddings recomputed and written, hirer counts
fed, acknowledged). Two setups: the embedded one (SQLite inbox, SQLite store) and Redis (Redis Streams, Redis
store and counts, on a redis-server started here without persistence).

The home is a simulated market split at a day: the log holds the events before it, the activity flow has trained
on them, and the burst is the events after it (the first --events of them). The worker runs as its own process
and is warmed up (models loaded) on a small batch before the burst. Times are wall time on this machine.

    python benchmarks/worker_bench.py [--events 10000] [--members 2000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.config import Settings
from jobmatch.events import EventLog
from jobmatch.events.loading import ingest_folder
from jobmatch.flows.activity import JOB_EMBEDDINGS, run_activity_embeddings
from jobmatch.flows.state import FlowContext, day_end_us
from jobmatch.nearline.queue import open_queue
from jobmatch.schema import ENTITY_KINDS, STREAM_KINDS
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import open_store
from jobmatch.taxonomy import builtin_taxonomy

RUNNER = ("import typer\nfrom jobmatch.nearline.commands import register\napp = typer.Typer()\n"
          "app.callback()(lambda: None)\nregister(app)\napp()\n")


def build_home(root: Path, members: int, days: int, split_day: int, n_events: int) -> tuple[Path, pa.Table]:
    cfg = SimConfig(members=members, days=days, seed=3)
    data = write_market(simulate(builtin_taxonomy(), cfg), root / "market", cfg, "builtin")
    with EventLog(root / "all.duckdb") as src:
        ingest_folder(src, data)
        first, _ = src.time_range()
        tables = {k: src.table(k) for k in STREAM_KINDS + ENTITY_KINDS}
    day = dt.datetime.fromtimestamp(first / 1e6, dt.timezone.utc).date() + dt.timedelta(days=split_day)
    _, split = day_end_us(day)
    home = root / "home"
    spec = f"sqlite:{home / 'store.sqlite'}"
    with EventLog(home / "events.duckdb") as log:
        for kind in ENTITY_KINDS:
            log.put_entities(kind, tables[kind])
        for kind in STREAM_KINDS:
            log.append(kind, tables[kind].filter(pc.less(tables[kind]["ts"].cast(pa.int64()), split)))
        with open_store(spec, create=True) as store:
            run_activity_embeddings(FlowContext.create(log, store, spec, home / "flows", day), epochs=1)
    events = tables["events"]
    later = events.filter(pc.greater_equal(events["ts"].cast(pa.int64()), split)).sort_by("ts")
    if later.num_rows < n_events + 100:
        raise SystemExit(f"--events: only {later.num_rows} events after the split; raise --members")
    return home, later.slice(0, n_events + 100)


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    client.close()
    return proc, f"redis://127.0.0.1:{port}/0"


def wait_lag_zero(queue, timeout_s: float = 600) -> float:
    start = time.perf_counter()
    while queue.lag() > 0:
        if time.perf_counter() - start > timeout_s:
            raise SystemExit(f"lag still {queue.lag()} after {timeout_s} s")
        time.sleep(0.01)
    return time.perf_counter() - start


def measure(name: str, base: Path, root: Path, burst: pa.Table, stream: str, store: str, batch: int) -> dict:
    home = root / name
    shutil.copytree(base, home)
    if store:
        with open_store(store, create=True) as s:
            s.push(JOB_EMBEDDINGS, {"0": np.zeros(4, np.float32)})
    settings = Settings(home=home, stream=stream, store=store)
    env = {**os.environ, "JOBMATCH_HOME": str(home), "JOBMATCH_STREAM": stream, "JOBMATCH_STORE": store}
    with (root / f"{name}.log").open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, "worker", "--batch", str(batch), "--block-ms", "100"],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        with open_queue(settings.home, settings.stream) as q:
            q.publish("events", burst.slice(0, 100))  # warm-up: the worker loads its models on its first batch
            wait_lag_zero(q)
            events = burst.slice(100)
            t0 = time.perf_counter()
            q.publish("events", events)
            publish_s = time.perf_counter() - t0
            drain_s = publish_s + wait_lag_zero(q)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {"setup": name, "events": events.num_rows, "publish_s": publish_s, "lag0_s": drain_s,
            "events_per_s": events.num_rows / drain_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--members", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--split-day", type=int, default=7)
    ap.add_argument("--batch", type=int, default=5000)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="worker_bench_"))
    try:
        print(f"building the home ({args.members} members, {args.days} days) ...", file=sys.stderr)
        base, burst = build_home(root / "base", args.members, args.days, args.split_day, args.events)
        rows = [measure("sqlite", base, root, burst, "", "", args.batch)]
        redis_proc, url = start_redis(root)
        try:
            rows.append(measure("redis", base, root, burst, url, url, args.batch))
        finally:
            redis_proc.terminate()
            redis_proc.wait(timeout=30)
        print(f"{'setup':8} {'events':>7} {'publish s':>10} {'lag->0 s':>9} {'events/s':>9}")
        for r in rows:
            print(f"{r['setup']:8} {r['events']:7d} {r['publish_s']:10.2f} {r['lag0_s']:9.2f} "
                  f"{r['events_per_s']:9.0f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
