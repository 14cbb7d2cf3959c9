"""What the scheduled flows share: a run date's cutoff and a small JSON state file per flow."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path


def day_end_us(as_of: datetime) -> tuple[datetime, int]:
    """(`as_of` in UTC, the first microsecond after its UTC day), naive dates taken as UTC days."""
    as_of = as_of.astimezone(timezone.utc) if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)
    end = (as_of + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return as_of, int(end.timestamp() * 1_000_000)


class FlowState:
    """`<home>/state.json`; a run must be for a later day than the last one."""

    def __init__(self, home: Path):
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / "state.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {}

    def check_after(self, as_of: datetime) -> str:
        day = as_of.date().isoformat()
        last = self.data.get("last_as_of")
        if last and day <= last:
            raise ValueError(f"as_of: {day} is not after the last run ({last})")
        return day

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2) + "\n")
