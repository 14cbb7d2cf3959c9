"""What a study is (`Study`), and the one path every study point takes from a simulator config to an event log.

A study sweeps one knob of the simulator's generative story over a grid, several seeds per point. A grid value is
either a plain value (a number or a name) or a `(series, value)` pair: a study that sweeps several related knobs
(hiring: preference strength, feedback volume, market size) names each sweep a series, and the report draws one
panel per series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.events.ingest import TimeBounds
from jobmatch.events.loading import ingest_folder
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.taxonomy import resolve_taxonomy

Say = Callable[[str], None]


@dataclass(frozen=True)
class Study:
    name: str                      # "hiring", "qa", "activity", ...
    knob: str                      # the swept parameter, as documented in the README
    grid: tuple                    # default grid (whole study <= 30 min on 2 cores)
    quick_grid: tuple              # --quick grid (whole study <= 3 min; used by a test)
    seeds: tuple[int, ...]         # seeds per point at the default grid
    quick_seeds: tuple[int, ...]
    # (knob value, seed, a private work folder for this point, quick, say) -> metrics for that point
    run_point: Callable[[object, int, Path, bool, Say], dict[str, float]]
    metrics: tuple[str, ...]       # the metrics to tabulate/plot (each with a confidence band over seeds)
    # rows (one per point x seed: "value", "seed" and the metrics; a `same_as` point's rows are copies that carry
    # "same_as") -> one paragraph
    conclude: Callable[[list[dict]], str]
    title: str = ""
    # grid values that are the same experiment as another grid value (e.g. a sweep's default point, shared by every
    # series): run once, reported under both
    same_as: tuple[tuple[object, object], ...] = ()
    # the plot's panels as (title, metrics drawn together); empty: one panel per metric
    panels: tuple[tuple[str, tuple[str, ...]], ...] = ()


def series_of(value: object) -> tuple[str, object]:
    """(series, x) of a grid value: a (name, x) pair is a point of the series `name`; anything else is one series."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str):
        return value[0], value[1]
    return "", value


def tupled(value: object) -> object:
    """A grid value as the study wrote it: JSON turns tuples into lists; this turns them back."""
    return tuple(map(tupled, value)) if isinstance(value, list) else value


def seed_mean(rows: list[dict], value: object, metric: str) -> float:
    """The mean over seeds of `metric` at grid value `value` (NaN values skipped; NaN when none)."""
    vals = [r[metric] for r in rows if tupled(r["value"]) == tupled(value) and r[metric] == r[metric]]
    return float(np.mean(vals)) if vals else float("nan")


@contextmanager
def simulated_log(cfg: SimConfig, work: Path, say: Say, sessionize: bool = False,
                  taxonomy: str = "builtin") -> Iterator[tuple[EventLog, Truth]]:
    """Simulate `cfg` into `work/data` (truth in `work/data-truth`), ingest it through validated ingest into
    `work/events.duckdb` and yield (the log, the truth): the path a user's files take, so a study measures the
    system a user runs, not a shortcut around it."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    say(f"simulate {cfg.members:,} members, {cfg.days} days, seed {cfg.seed}")
    market = simulate(resolve_taxonomy(taxonomy), cfg)
    data = write_market(market, work / "data", cfg, taxonomy)
    del market
    (work / "events.duckdb").unlink(missing_ok=True)
    # a simulated period may end after today: its events are plausible up to its own end
    last_day = cfg.start + timedelta(days=cfg.days)
    bounds = TimeBounds(now=max(datetime.now(timezone.utc), last_day))
    with EventLog(work / "events.duckdb") as log:
        say("ingest")
        ingest_folder(log, data, bounds)
        if sessionize:
            say("sessionize")
            log.sessionize()
        yield log, Truth(work / "data-truth")
