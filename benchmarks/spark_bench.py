"""GAME on Spark against the local engine, measured in the same run, with the per-stage breakdown.

1M training rows (default), 100k members x 5k jobs (3 global / 2 per-member / 2 per-job features, `known_mixed_model`),
2 passes, float32: the local engine (`GameModel.fit` in this process), then `SparkGame` on local[1] and local[2].
Spark's session start is not counted (a cluster's is paid once per job, not per fit); reading the Parquet file is.
The report gives each engine's seconds, its ratio to the local engine, the stages (`SparkGame.timings`), how far the
coefficients are from the local engine's, and per-partition throughput: the rows a core takes through one
fixed-effect Newton pass and through one random-effect fit per second, and the cost of one Spark job on the
smallest data (the fixed overhead every step pays). The paper estimate for a cluster is made from those.

    nice -n 10 python benchmarks/spark_bench.py [--rows 1000000] [--members 100000] [--jobs 5000] [--out DIR]

Timings are wall-clock on whatever else the machine is doing; the report says how busy it was (load average).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.engine import open_engine
from jobmatch.game.model import Coordinate, GameModel
from jobmatch.game.spark import SparkGame
from jobmatch.game.synthetic import known_mixed_model


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def coordinates() -> list[Coordinate]:
    return [Coordinate("global", "fixed", ("g1", "g2", "g3")),
            Coordinate("per_member", "random", ("j1", "j2"), entity="member_id"),
            Coordinate("per_job", "random", ("m1", "m2"), entity="job_id")]


def model(passes: int) -> GameModel:
    return GameModel(coordinates(), passes=passes, threads=1)


def distance(a: GameModel, b: GameModel) -> float:
    """The largest coefficient difference relative to the largest coefficient, over coordinates."""
    out = 0.0
    for name, m in a.coordinates_.items():
        other = b.coordinates_[name]
        assert np.array_equal(m.entity_ids, other.entity_ids), name
        out = max(out, float(np.abs(m.coef - other.coef).max() / np.abs(m.coef).max()))
    return out


def job_overhead(engine, repeat: int = 5) -> float:
    """Seconds of one Spark job that sums a vector over a tiny DataFrame: the floor under every step."""
    df = engine.session.range(engine.parallelism * 4).repartition(engine.parallelism)
    engine.partition_sum(df, lambda t: np.ones(1), size=1)  # the Python workers start on the first job
    start = time.perf_counter()
    for _ in range(repeat):
        engine.partition_sum(df, lambda t: np.ones(1), size=1)
    return (time.perf_counter() - start) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=5_000)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--out", type=Path, default=None, help="where report.md and metrics.json go")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="spark_bench_"))
    cols, _ = known_mixed_model(n_members=args.members, n_jobs=args.jobs, rows=args.rows, seed=0)
    path = tmp / "train.parquet"
    pq.write_table(pa.table(cols), path)
    print(f"{args.rows:,} rows, {np.unique(cols['member_id']).size:,} members, {args.jobs:,} jobs; {load()}",
          flush=True)

    start = time.perf_counter()
    local = model(args.passes).fit(cols)
    results = {"local": {"seconds": time.perf_counter() - start, "stages": {}, "distance": 0.0}}
    print(f"local engine: {results['local']['seconds']:.1f}s; {load()}", flush=True)

    for master in args.masters.split(","):
        parallelism = int(master.strip("local[]")) if master.startswith("local[") else None
        engine = open_engine("spark", master, shuffle_partitions=2 * (parallelism or 2), driver_memory="4g")
        try:
            overhead = job_overhead(engine)
            trainer = SparkGame(model(args.passes), engine)
            start = time.perf_counter()
            fitted = trainer.fit(path)
            seconds = time.perf_counter() - start
        finally:
            engine.close()
        random_fits = sum(1 for s in fitted.steps_ if s.coordinate != "global")
        results[master] = {"seconds": seconds, "stages": trainer.timings, "distance": distance(local, fitted),
                           "job_overhead_s": overhead, "fixed_passes": trainer.fixed_passes,
                           "cores": parallelism, "random_fits": random_fits}
        print(f"{master}: {seconds:.1f}s, stages {json.dumps({k: round(v, 1) for k, v in trainer.timings.items()})}; "
              f"{trainer.fixed_passes} fixed-effect passes; job overhead {overhead:.2f}s; {load()}", flush=True)

    base = results["local"]["seconds"]
    stages = sorted({k for r in results.values() for k in r["stages"]})
    lines = [f"# GAME on Spark: {args.rows:,} rows, {args.members:,} members x {args.jobs:,} jobs, {args.passes} "
             f"passes", "", f"{load()} at the end (2 cores shared with other work).", "",
             "| engine | seconds | x local | max rel. coef. diff | " + " | ".join(stages) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(stages)]
    for name, r in results.items():
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['seconds'] / base:.1f} | {r['distance']:.1e} | "
                     + " | ".join(f"{r['stages'].get(s, 0.0):.1f}" for s in stages) + " |")
    one = results.get("local[1]")
    if one is not None:
        # per core: rows through one fixed-effect Newton pass, and through one random-effect fit, per second; the
        # job overhead is taken out of both (each fixed pass is one job; a random fit is a cogroup and a checkpoint)
        fixed_rate = args.rows * one["fixed_passes"] / max(one["stages"].get("fixed effect fits", 0.0)
                                                          - one["fixed_passes"] * one["job_overhead_s"], 1e-9)
        random_rate = args.rows * one["random_fits"] / max(one["stages"].get("random effect fits", 0.0)
                                                          - 2 * one["random_fits"] * one["job_overhead_s"], 1e-9)
        other = one["seconds"] - one["stages"].get("fixed effect fits", 0.0) - one["stages"].get(
            "random effect fits", 0.0) - one["stages"].get("load", 0.0) - one["stages"].get("collect", 0.0)
        lines += ["", f"Per core (local[1]): a fixed-effect Newton pass {fixed_rate:,.0f} rows/s, a random-effect fit "
                      f"{random_rate:,.0f} rows/s; one Spark job {one['job_overhead_s']:.2f}s; scoring joins and "
                      f"objectives {other / args.rows * 1e6:.2f} s per million rows."]
        results["per_core"] = {"fixed_rows_per_s": fixed_rate, "random_rows_per_s": random_rate,
                               "other_s_per_row": other / args.rows}
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.md").write_text(report)
        (args.out / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
