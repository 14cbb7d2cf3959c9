"""A small served home shared by the serving tests: a simulated market through validated ingest into the event log,
then `run_daily` (hiring, QA, activity embeddings) publishing to the SQLite store, as `jobmatch run main` does.

The intent flow (BERT pre-training) is the expensive one, so it does not run here; its published form — one
manifest of group `intent` with `intent/user_vector` and `intent/suggestions` — is written directly for a few
members (random vectors, placeholder queries), in exactly the layout `jobmatch.flows.intent.run_intent` publishes
(tests/test_byod.py runs the real flow). The audience flow then runs for real on those vectors, so the served
audiences exercise the API, not the quality of the vectors.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import httpx
import numpy as np
import typer
from typer.testing import CliRunner

from jobmatch.ann import AnnParams
from jobmatch.events import EventLog, TimeBounds
from jobmatch.events.loading import ingest_folder
from jobmatch.flows.audience import AudienceFlowConfig, run_audience
from jobmatch.flows.daily import DailyConfig, run_daily
from jobmatch.flows.intent import GROUP as INTENT_GROUP
from jobmatch.flows.intent import SUGGESTIONS, VECTORS
from jobmatch.flows.state import FlowContext
from jobmatch.serve.commands import register
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import open_store
from jobmatch.taxonomy import builtin_taxonomy

SIM = SimConfig(members=600, days=21, seed=11)
INTENT_MEMBERS = 50


def build_served_home(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    data = write_market(simulate(builtin_taxonomy(), SIM), home / "data", SIM, "builtin", truth=home / "truth")
    last_day = SIM.start + timedelta(days=SIM.days - 1)
    bounds = TimeBounds(now=max(datetime.now(timezone.utc), last_day + timedelta(days=1)))
    spec = f"sqlite:{home / 'store.sqlite'}"
    with EventLog(home / "events.duckdb") as log:
        ingest_folder(log, data, bounds)
        log.sessionize()
        with open_store(spec, create=True) as store:
            ctx = FlowContext.create(log, store, spec, home / "flows", last_day)
            results = run_daily(ctx, DailyConfig(flows=("hiring", "qa", "activity"), activity_epochs=1))
            bad = {k: v for k, v in results.items() if v["status"] != "ok"}
            assert not bad, bad
            members = log.snapshot().members_with_events()[:INTENT_MEMBERS].tolist()
            rng = np.random.default_rng(0)
            store.publish(INTENT_GROUP, {
                VECTORS: {str(m): rng.normal(size=16).astype(np.float32) for m in members},
                SUGGESTIONS: {str(m): [{"query": f"query {i}", "score": round(1.0 - i / 10, 4)} for i in range(10)]
                              for m in members}}, meta={"as_of": last_day.date().isoformat(), "labels": 10})
            # the audience flow indexes those user vectors (the real flow, on the stand-in vectors)
            audience = run_audience(ctx, AudienceFlowConfig(ann=AnnParams(shards=2, threads=1)))
            assert audience["status"] == "ok", audience
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`jobmatch serve` as a real uvicorn process on loopback (started through the app factory it runs: the API with
    the explorer pages mounted)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, workers: int = 1):
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"serve-{self.port}.log"
        full_env = {**os.environ, "JOBMATCH_HOME": str(home), "JOBMATCH_STORE": "", **(env or {})}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory", "jobmatch.web.app:app_from_env", "--host",
                 "127.0.0.1", "--port", str(self.port), "--workers", str(workers), "--log-level", "warning"],
                env=full_env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer within 120 s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def served_home_at(base: Path) -> Path:
    """The served home under the session's temporary folder, built once even when several test modules ask."""
    home = base / "served_home"
    if not (home / ".ready").exists():
        build_served_home(home)
        (home / ".ready").touch()
    return home


def copy_store(source: Path, target_spec: str, groups: tuple[str, ...] | None = None) -> None:
    """Republish the current manifests of `groups` (default all) of a SQLite store into another store, unchanged:
    the same datasets, items and meta. Reads the SQLite file's rows directly because the store interface reads
    keys, not whole datasets."""
    import sqlite3

    from jobmatch.store import decode

    src = open_store(f"sqlite:{source}")
    db = sqlite3.connect(source)
    try:
        with open_store(target_spec, create=True) as dst:
            for group in groups or src.groups():
                manifest = src.manifest(group)
                datasets = {name: {k: decode(v) for k, v in db.execute(
                    "SELECT key, value FROM kv WHERE name = ? AND version = ?", (name, version))}
                    for name, version in manifest.datasets.items()}
                dst.publish(group, datasets, meta=manifest.meta)
    finally:
        db.close()
        src.close()


def copy_home(home: Path, target: Path, groups: tuple[str, ...] | None = None) -> Path:
    """A home with the same event log and flow models, and a store holding only `groups` (default all)."""
    import shutil

    target.mkdir(parents=True)
    shutil.copy(home / "events.duckdb", target / "events.duckdb")
    shutil.copytree(home / "flows", target / "flows")
    copy_store(home / "store.sqlite", f"sqlite:{target / 'store.sqlite'}", groups)
    if groups is None or "hiring" in groups:
        from jobmatch.hiring.state import SQLiteProjectCounts

        SQLiteProjectCounts(target / "store.sqlite").close()  # the counts tables the hiring flow creates
    return target


def cli(home: Path, *args: str):
    """`jobmatch keys …` through `register` on a small typer app with the CLI's global --home (the lead wires
    `register` into jobmatch.cli the same way)."""
    app = typer.Typer()

    @app.callback()
    def _root(home: Optional[Path] = typer.Option(None)) -> None:  # noqa: B008 - typer's declaration style
        pass

    register(app)
    return CliRunner().invoke(app, ["--home", str(home), *args])


def make_key(home: Path, scope: str, company: int | None = None) -> str:
    result = cli(home, "keys", "create", "--scope", scope, *(["--company", str(company)] if company is not None
                                                              else []))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
