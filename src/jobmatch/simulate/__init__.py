"""Marketplace simulator with ground truth, and its writer.

A simulated marketplace is written as two folders: the data (the eight kinds of `jobmatch.schema.KINDS`, one
Parquet file each, exactly what a real marketplace would export) and, apart from it, the latent truth with
`simulation.json` (config, taxonomy, row counts). Keeping the truth outside the data folder means nothing that
reads the data (ingest, flows, models) can pick it up by accident; evaluations that need it name it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.simulate.config import SimConfig
from jobmatch.simulate.market import SimulatedMarket, simulate

__all__ = ["TABLES", "SimConfig", "SimulatedMarket", "simulate", "truth_dir", "write_market"]

TABLES = ("companies", "jobs", "members", "projects", "events", "feedback", "impressions", "hirer_impressions")


def truth_dir(data: str | Path) -> Path:
    """Where `write_market` puts the truth of the data folder `data` unless told otherwise: `<data>-truth`."""
    data = Path(data)
    return data.parent / f"{data.name}-truth"


def _write(table: pa.Table, path: Path) -> None:
    # Fixed writer settings and no wall-clock metadata: the same seed gives byte-identical files.
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20, write_statistics=True)


def write_market(market: SimulatedMarket, out: str | Path, cfg: SimConfig, taxonomy: str,
                 truth: str | Path | None = None) -> Path:
    """Write the data tables to `out` and the truth to `truth` (default `truth_dir(out)`); return `out`."""
    out = Path(out)
    truth = truth_dir(out) if truth is None else Path(truth)
    a, b = out.resolve(), truth.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ValueError(f"truth: {truth} must lie apart from the data folder {out} (neither inside the other)")
    if (out / "truth").exists():
        raise ValueError(f"out: {out} holds a truth/ folder from an older layout; remove it (the truth now goes "
                         f"to {truth})")
    out.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        _write(getattr(market, name), out / f"{name}.parquet")
    for name, table in market.truth.items():
        _write(table, truth / f"{name}.parquet")
    meta = {"config": json.loads(cfg.model_dump_json()), "taxonomy": taxonomy,
            "rows": {name: getattr(market, name).num_rows for name in TABLES}}
    (truth / "simulation.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
