"""The main job on embedded defaults: simulate a marketplace -> ingest -> sessionize -> report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

from jobmatch.events import EventLog, IngestError, read_batch
from jobmatch.evaluate.marketplace import marketplace_stats, write_marketplace_report
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.taxonomy import resolve_taxonomy

Say = Callable[[str], None]
ENTITIES = ("companies", "jobs", "members", "projects")


def ingest_market(data: Path, log: EventLog, say: Say) -> dict[str, int]:
    """Load a simulated (or exported) marketplace directory into the event log."""
    for name in ENTITIES:
        log.put_entities(name, pq.read_table(data / f"{name}.parquet"))
    counts = {}
    for kind in ("events", "feedback"):
        say(f"ingest {kind}")
        batch = read_batch(data / f"{kind}.parquet", kind)
        if batch.errors:
            raise IngestError(data / f"{kind}.parquet", batch.errors)
        counts[kind] = log.append(kind, batch.rows, source=str(data / f"{kind}.parquet"))
    return counts


def run_main(out: str | Path, cfg: SimConfig, taxonomy: str = "builtin", say: Say | None = None,
             gap_minutes: float = 30.0) -> Path:
    say = say or (lambda _m: None)
    out = Path(out)
    data = out / "data"
    say("load taxonomy")
    tax = resolve_taxonomy(taxonomy)
    market = simulate(tax, cfg, progress=lambda m: say(f"simulate: {m}"))
    say("write simulation")
    write_market(market, data, cfg, taxonomy)
    db = out / "events.duckdb"
    db.unlink(missing_ok=True)
    with EventLog(db) as log:
        counts = ingest_market(data, log, say)
        say("sessionize")
        log.sessionize(gap_minutes)
        say("report")
        events = log.table("events")
        sessions = log.table("sessions")
        stats = marketplace_stats(events, sessions, log.table("feedback"))
    preface = (f"Simulated with `--members {cfg.members} --days {cfg.days} --seed {cfg.seed} --taxonomy {taxonomy}`; "
               f"ingested {counts['events']:,} events and {counts['feedback']:,} hirer feedback events; "
               f"sessions split at {gap_minutes:g} idle minutes.")
    return write_marketplace_report(stats, sessions, events, out, preface=preface)
