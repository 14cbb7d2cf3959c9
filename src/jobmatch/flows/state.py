"""What the scheduled flows share: a run date's cutoff, a small JSON state file per flow, and the run context."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from jobmatch.engine import Engine
from jobmatch.engine.local import LocalEngine
from jobmatch.events import EventLog, Snapshot
from jobmatch.store import FeatureStore

DAY_US = 86_400_000_000
Say = Callable[[str], None]


def step_reporter(say: Say, stage: str, every: float = 0.05) -> Callable[[int, int, float], None]:
    """A training loop's `progress(step, total, loss)` callback: one line per `every` of the steps, with an ETA."""
    started = time.perf_counter()
    next_at = [every]  # the first steps include warm-up; an ETA from them would mislead

    def report(step: int, total: int, loss: float) -> None:
        if step < total and step < next_at[0] * total:
            return
        next_at[0] = step / total + every
        elapsed = time.perf_counter() - started
        eta = elapsed * (total - step) / step if step else 0.0
        say(f"{stage} step {step:,}/{total:,}, loss {loss:.3f}, {elapsed:.0f}s elapsed, ~{eta:.0f}s left")
    return report


class NotEnoughData(ValueError):
    """The log as of this date cannot support a flow (too few days, no feedback, ...): the flow is skipped."""


def day_end_us(as_of: datetime | date) -> tuple[datetime, int]:
    """(`as_of` in UTC, the first microsecond after its UTC day), naive dates taken as UTC days."""
    if not isinstance(as_of, datetime):
        as_of = datetime(as_of.year, as_of.month, as_of.day)
    as_of = as_of.astimezone(timezone.utc) if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    end = (as_of + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return as_of, int(end.timestamp() * 1_000_000)


def last_complete_day(log: EventLog) -> date | None:
    """The day before the day of the log's newest event: the last UTC day the log can hold completely."""
    span = log.time_range()
    if span is None:
        return None
    return datetime.fromtimestamp(span[1] / 1e6, timezone.utc).date() - timedelta(days=1)


class FlowState:
    """`<home>/state.json`. A run for the day of the last run is a no-op that returns its result again; a run for
    an earlier day is refused (a flow moves forward in time)."""

    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.path = home / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def previous_result(self, day: str) -> dict | None:
        """The result of the run for `day` when it already ran; raises for a day before the last run."""
        last = self.data.get("last_as_of")
        if last and day < last:
            raise ValueError(f"as_of: {day} is before the last run ({last}); flows only move forward")
        if last == day:
            return {**self.data.get("last_result", {}), "status": "already done"}
        return None

    def finish(self, day: str, result: dict) -> dict:
        self.data["last_as_of"] = day
        self.data["last_result"] = result
        self.data.setdefault("runs", []).append({k: v for k, v in result.items() if k != "versions"})
        self.save()
        return result

    def save(self) -> None:
        # write then rename: a run killed while saving leaves the previous state, never a truncated file
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


@dataclass
class FlowContext:
    """One dated run: the log as of the end of `as_of` (UTC), the store to publish to, the flows' home."""

    log: EventLog
    store: FeatureStore
    home: Path
    as_of: datetime
    cutoff_us: int
    store_spec: str  # the store's spec: hirer counts live in the same SQLite file or Redis
    say: Say = field(default=lambda _m: None)
    # where the flows with a distributed path (hiring counts, activity inference) run it; the others run here
    engine: Engine = field(default_factory=LocalEngine)

    @classmethod
    def create(cls, log: EventLog, store: FeatureStore, store_spec: str, home: str | Path, as_of: datetime | date,
               say: Say | None = None, engine: Engine | None = None) -> FlowContext:
        day, cutoff = day_end_us(as_of)
        return cls(log, store, Path(home), day, cutoff, store_spec, say or (lambda _m: None), engine or LocalEngine())

    @property
    def day(self) -> str:
        return self.as_of.date().isoformat()

    def snapshot(self) -> Snapshot:
        return self.log.snapshot(self.cutoff_us)

    def state(self, flow: str) -> FlowState:
        return FlowState(self.home / flow)
