"""The layout holds: layers import only downward, and nothing but ingest (and evaluations handed the truth
folder) reads the simulator's files."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "jobmatch"


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=SRC.parents[1], timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the package where a flow imports an evaluation is refused."""
    import shutil

    root = tmp_path / "src"
    shutil.copytree(SRC, root / "jobmatch", ignore=shutil.ignore_patterns("__pycache__"))
    flow = root / "jobmatch" / "flows" / "qa.py"
    flow.write_text(flow.read_text() + "\nfrom jobmatch.evaluate import fmt  # an upward import\n")
    shutil.copy(SRC.parents[1] / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout


def test_only_ingest_and_the_simulator_read_files_of_tables():
    """No `read_table(data / ...)` of simulator files outside ingest, the simulator and the truth reader."""
    allowed = {SRC / "events" / "ingest.py", SRC / "evaluate" / "truth.py",
               SRC / "game" / "job.py",  # the user's own Parquet, named in game.toml
               SRC / "engine" / "local.py"}  # the Parquet paths a flow hands the engine (the log's export)
    offenders = []
    for path in SRC.rglob("*.py"):
        if path in allowed or (SRC / "simulate") in path.parents:
            continue
        text = path.read_text()
        if re.search(r"\bread_table\(|pq\.read_|\.parquet\"\)", text):
            offenders.append(str(path.relative_to(SRC)))
    assert not offenders, offenders


class _OpenWatch:
    """Linux inotify on a folder: records every file opened in it, by any code (Python, Arrow's C++, DuckDB)."""

    IN_ACCESS, IN_OPEN = 0x1, 0x20

    def __init__(self, folder: Path):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0:
            pytest.skip("inotify is not available")
        for d in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
            libc.inotify_add_watch(self.fd, str(d).encode(), self.IN_OPEN | self.IN_ACCESS)

    def opened(self) -> list[str]:
        names = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            i = 0
            while i < len(data):
                _, _, _, length = struct.unpack_from("iIII", data, i)
                names.append(data[i + 16:i + 16 + length].rstrip(b"\0").decode())
                i += 16 + length

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux-only")
def test_flows_never_open_the_truth(small_market, small_log, tmp_path):
    from conftest import writable_copy

    from jobmatch.events import EventLog
    from jobmatch.flows.daily import DailyConfig, run_daily
    from jobmatch.flows.state import FlowContext
    from jobmatch.intent.config import IntentConfig
    from jobmatch.store import open_store

    cfg, _data, truth = small_market
    watch = _OpenWatch(truth)
    try:
        (truth / "members.parquet").read_bytes()
        assert "members.parquet" in watch.opened()  # the watch sees opens
        spec = f"sqlite:{tmp_path / 'store.sqlite'}"
        with EventLog(writable_copy(small_log, tmp_path)) as log, open_store(spec, create=True) as store:
            ctx = FlowContext.create(log, store, spec, tmp_path / "flows", cfg.start.date().replace(day=19))
            results = run_daily(ctx, DailyConfig(intent=IntentConfig.quick(), activity_epochs=1))
        assert {r["status"] for r in results.values()} == {"ok"}, results
        assert watch.opened() == []
    finally:
        watch.close()
