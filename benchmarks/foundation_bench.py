"""Foundation throughput: simulation, ingest, sessionization, feature-store batch get.

Each figure is printed next to a naive baseline measured in the same run (per-row pydantic validation, a Python
sessionization loop, one store round trip per key) and the issue's target.

    python benchmarks/foundation_bench.py [--members 20000] [--redis]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from jobmatch.events import EventLog, read_batch, sessionize
from jobmatch.events.log import _codes
from jobmatch.schema import ACTION_CODES, ActivityEvent
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import FeatureStore, RedisStore, SQLiteStore
from jobmatch.taxonomy import builtin_taxonomy

rows: list[tuple[str, str, str, str]] = []


def report(name: str, value: str, baseline: str, target: str) -> None:
    rows.append((name, value, baseline, target))
    print(f"{name:<44} {value:>18}   {baseline:<36} {target}", flush=True)


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_store(fs: FeatureStore, label: str, target_ms: float, n_keys: int = 100_000) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n_keys, 128)).astype(np.float32)
    t = time.perf_counter()
    fs.push("bench/vectors", ((str(i), vecs[i]) for i in range(n_keys)))
    push_s = time.perf_counter() - t
    timings, single = [], []
    for rep in range(30):
        keys = [str(k) for k in rng.choice(n_keys, 1000, replace=False)]
        t = time.perf_counter()
        matrix, found = fs.get_matrix("bench/vectors", keys, 128)
        timings.append(time.perf_counter() - t)
        assert found.all() and np.array_equal(matrix[0], vecs[int(keys[0])])
        if rep < 3:
            t = time.perf_counter()
            for k in keys:
                fs.get_one("bench/vectors", k)
            single.append(time.perf_counter() - t)
    med, one = np.median(timings) * 1e3, np.median(single) * 1e3
    report(f"{label}: push 100k x 128-d", f"{n_keys / push_s:,.0f} keys/s", "", "")
    report(f"{label}: batch get 1,000 x 128-d (median)", f"{med:.2f} ms",
           f"1,000 single gets {one:.1f} ms ({one / med:.0f}x)", f"<= {target_ms:g} ms")


def start_redis() -> tuple[subprocess.Popen, str] | None:
    binary = shutil.which("redis-server")
    if not binary:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=20_000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    print(f"{'benchmark':<44} {'measured':>18}   {'baseline (same run)':<36} target")
    work = Path(tempfile.mkdtemp(prefix="jobmatch-bench-"))
    try:
        cfg = SimConfig(members=args.members, days=28, seed=1)
        t = time.perf_counter()
        market = simulate(builtin_taxonomy(), cfg)
        sim_s = time.perf_counter() - t
        n = market.events.num_rows
        write_market(market, work / "sim", cfg, "builtin")
        report("simulate (builtin, 28 days)", f"{n / sim_s:,.0f} events/s", f"{n:,} events in {sim_s:.1f}s", "")

        # Ingest: Parquet and JSONL through validation and one atomic append, vs per-row pydantic validation.
        events = market.events
        jsonl = work / "events.jsonl"
        with jsonl.open("w") as f:
            for r in events.slice(0, 500_000).to_pylist():
                r["ts"] = r["ts"].isoformat().replace("+00:00", "Z")
                f.write(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n")
        n_json = min(n, 500_000)
        sample = events.slice(0, 20_000).to_pylist()
        base_s = timed(lambda: [ActivityEvent.model_validate(r) for r in sample])
        base_rate = len(sample) / base_s
        for label, path, count in (("ingest Parquet (validate + append)", work / "sim" / "events.parquet", n),
                                   ("ingest JSONL (validate + append)", jsonl, n_json)):
            db = work / f"{path.suffix}.duckdb"

            def run() -> None:
                db.unlink(missing_ok=True)
                with EventLog(db) as log:
                    log.append("events", read_batch(path, "events").rows)

            secs = timed(run)
            report(label, f"{count / secs:,.0f} events/s", f"pydantic per row: {base_rate:,.0f}/s "
                   f"({count / secs / base_rate:.0f}x)", ">= 100,000/s")

        # Sessionization: the numpy kernel, vs a Python loop; and the whole incremental step from the log.
        with EventLog(work / ".parquet.duckdb") as log:
            ev = log.table("events")
        member, ts, action = ev["member_id"].to_numpy(), ev["ts"].cast("int64").to_numpy(), _codes(ev["action"])
        gap = 30 * 60_000_000
        kernel_s = timed(lambda: sessionize(member, ts, action, gap), repeat=3)
        m_list, t_list, a_list = member[:200_000].tolist(), ts[:200_000].tolist(), action[:200_000].tolist()
        search_code, apply_code = int(ACTION_CODES["SEARCH"]), int(ACTION_CODES["APPLY"])

        def python_loop() -> list[list[int]]:
            # the same outputs as the kernel: per session member, start, end, events, searches, applies, after-search
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

        loop_rate = len(m_list) / timed(python_loop)
        report("sessionize (numpy kernel)", f"{n / kernel_s:,.0f} events/s",
               f"Python loop: {loop_rate:,.0f}/s ({n / kernel_s / loop_rate:.0f}x)", ">= 1,000,000/s")
        with EventLog(work / ".parquet.duckdb") as log:
            t = time.perf_counter()
            log.sessionize()
            full_s = time.perf_counter() - t
        report("sessionize from the log (read + build + store)", f"{n / full_s:,.0f} events/s", "", "")

        with SQLiteStore(work / "store.sqlite") as fs:
            bench_store(fs, "store sqlite", 5)
        started = start_redis()
        if started:
            proc, url = started
            try:
                with RedisStore(url) as fs:
                    bench_store(fs, "store redis (loopback)", 10)
            finally:
                proc.terminate()
        else:
            report("store redis", "skipped", "redis-server not installed", "<= 10 ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("name", "value", "baseline", "target"), r)) for r in rows],
                                        indent=2))


if __name__ == "__main__":
    main()
