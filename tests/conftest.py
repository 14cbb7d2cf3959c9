from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.taxonomy import builtin_taxonomy

REPO = Path(__file__).resolve().parents[1]
ONET_PATH = Path(os.environ.get("JOBMATCH_ONET_PATH", REPO.parent / "shared" / "data" / "onet"))


@pytest.fixture(scope="session")
def onet_path() -> Path:
    if not (ONET_PATH / "occupation_data.tsv.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"O*NET tables not found at {ONET_PATH} (set JOBMATCH_ONET_PATH)")
        pytest.skip(f"O*NET tables not found at {ONET_PATH}")
    return ONET_PATH


@pytest.fixture(scope="session")
def tiny_market():
    cfg = SimConfig(members=400, days=14, seed=7)
    return cfg, simulate(builtin_taxonomy(), cfg)


@pytest.fixture(scope="session")
def tiny_market_dir(tmp_path_factory, tiny_market) -> Path:
    cfg, market = tiny_market
    return write_market(market, tmp_path_factory.mktemp("market"), cfg, "builtin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    """A real redis-server on loopback for the session (CI installs it; locally the tests skip without it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it with apt-get)")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def ingest_market_folder(data: Path, db: Path) -> Path:
    """A simulated folder through the same ingest path a user's files take, sessionized."""
    from jobmatch.events import EventLog
    from jobmatch.events.loading import ingest_folder

    with EventLog(db) as log:
        ingest_folder(log, data)
        log.sessionize()
    return db


@pytest.fixture(scope="session")
def tiny_log(tmp_path_factory, tiny_market_dir) -> Path:
    """The tiny market in an event log; open it read-only, or copy it (`writable_copy`) to write."""
    return ingest_market_folder(tiny_market_dir, tmp_path_factory.mktemp("tinylog") / "events.duckdb")


@pytest.fixture(scope="session")
def small_market(tmp_path_factory):
    """A 1,200-member, 21-day market (data folder, truth folder) for flows and evaluations."""
    cfg = SimConfig(members=1200, days=21, seed=8)
    base = tmp_path_factory.mktemp("small")
    data = write_market(simulate(builtin_taxonomy(), cfg), base / "data", cfg, "builtin", truth=base / "truth")
    return cfg, data, base / "truth"


@pytest.fixture(scope="session")
def small_log(tmp_path_factory, small_market) -> Path:
    return ingest_market_folder(small_market[1], tmp_path_factory.mktemp("smalllog") / "events.duckdb")


def writable_copy(db: Path, tmp_path: Path) -> Path:
    target = tmp_path / "events.duckdb"
    shutil.copy(db, target)
    return target
