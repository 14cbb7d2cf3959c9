"""One settings object: paths and backends by short name, overridable with JOBMATCH_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobmatch.events.ingest import TimeBounds
from jobmatch.events.sessions import DEFAULT_GAP_MINUTES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JOBMATCH_", extra="forbid")

    home: Path = Path("runs/main")  # the log, the store, the flows' models and the reports
    # `sqlite:PATH` (embedded) or `redis://host:port/db`; empty means `sqlite:<home>/store.sqlite`.
    store: str = ""
    onet_path: Path | None = None  # directory of the O*NET tables, for --taxonomy onet
    session_gap_minutes: float = Field(DEFAULT_GAP_MINUTES, gt=0)
    # plausible event times: no older than this, no later than this after now (catches unit and zone mistakes)
    time_past_years: float = Field(10.0, gt=0)
    time_future_days: float = Field(1.0, ge=0)
    lock_timeout_s: float = Field(10.0, ge=0)  # how long a second writer waits for the event log
    # the nearline queue: `redis://host:port/db` for Redis Streams; empty means the embedded inbox
    # `<home>/inbox.sqlite` (jobmatch.nearline.queue)
    stream: str = ""
    # `jobmatch serve`: request bodies larger than this are refused (413); the API keys' file (default
    # HOME/keys.sqlite); how often the server checks for newly published models and a changed event log
    max_body_bytes: int = Field(16 * 2**20, gt=0)
    keys_path: Path | None = None
    reload_interval_s: float = Field(10.0, gt=0)

    @property
    def event_log_path(self) -> Path:
        return self.home / "events.duckdb"

    @property
    def store_spec(self) -> str:
        return self.store or f"sqlite:{self.home / 'store.sqlite'}"

    def time_bounds(self) -> TimeBounds:
        return TimeBounds(past_years=self.time_past_years, future_days=self.time_future_days)
