"""One settings object: paths and backends by short name, overridable with JOBMATCH_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from jobmatch.events.sessions import DEFAULT_GAP_MINUTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBMATCH_", extra="forbid")

    home: Path = Path("runs/default")
    # `sqlite:PATH` (embedded) or `redis://host:port/db`; empty means `sqlite:<home>/store.sqlite`.
    store: str = ""
    onet_path: Path | None = None  # directory of the O*NET tables, for --taxonomy onet
    session_gap_minutes: float = DEFAULT_GAP_MINUTES

    @property
    def event_log_path(self) -> Path:
        return self.home / "events.duckdb"

    @property
    def store_spec(self) -> str:
        return self.store or f"sqlite:{self.home / 'store.sqlite'}"
