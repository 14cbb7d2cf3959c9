"""Marketplace simulator with ground truth, and its writer."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.simulate.config import SimConfig
from jobmatch.simulate.market import SimulatedMarket, simulate

__all__ = ["SimConfig", "SimulatedMarket", "simulate", "write_market", "TABLES"]

TABLES = ("companies", "jobs", "members", "projects", "events", "feedback", "impressions", "hirer_impressions")


def _write(table: pa.Table, path: Path) -> None:
    # Fixed writer settings and no wall-clock metadata: the same seed gives byte-identical files.
    pq.write_table(table, path, compression="zstd", row_group_size=1 << 20, write_statistics=True)


def write_market(market: SimulatedMarket, out: str | Path, cfg: SimConfig, taxonomy: str) -> Path:
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        _write(getattr(market, name), out / f"{name}.parquet")
    for name, table in market.truth.items():
        _write(table, out / "truth" / f"{name}.parquet")
    meta = {"config": json.loads(cfg.model_dump_json()), "taxonomy": taxonomy,
            "rows": {name: getattr(market, name).num_rows for name in TABLES}}
    (out / "truth" / "simulation.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out
