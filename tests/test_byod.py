"""Bring your own data: a small hand-written marketplace (examples/byod, JSONL, not from the simulator) goes
through ingest and `run daily`, and the readers return what the flows published."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BYOD = Path(__file__).resolve().parents[1] / "examples" / "byod"
KINDS = ("events", "feedback", "impressions", "hirer_impressions")


def jobmatch(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobmatch.cli", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "JOBMATCH_STORE": ""})


def _load(home: Path, folder: Path, kinds=KINDS) -> None:
    assert jobmatch(home, "load-entities", str(folder)).returncode == 0
    for kind in kinds:
        r = jobmatch(home, "ingest", str(folder / f"{kind}.jsonl"))
        assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def daily(tmp_path_factory):
    home = tmp_path_factory.mktemp("byod")
    _load(home, BYOD)
    run = jobmatch(home, "run", "daily", "--size", "quick")  # as of the last complete day in the log
    assert run.returncode == 0, run.stderr
    return home, json.loads(run.stdout)


def test_every_flow_runs_on_a_hand_written_marketplace(daily):
    home, results = daily
    assert {k: v["status"] for k, v in results.items()} == {"hiring": "ok", "qa": "ok", "activity": "ok",
                                                            "intent": "ok", "audience": "ok",
                                                            "search_ranking": "ok"}, results
    assert all(v["as_of"] == "2026-03-21" for v in results.values())
    again = jobmatch(home, "run", "daily", "--as-of", "2026-03-21", "--size", "quick")
    assert {v["status"] for v in json.loads(again.stdout).values()} == {"already done"}


def test_the_readers_return_what_was_published(daily):
    home, _ = daily
    coef = jobmatch(home, "store", "get", "qa/coefficients", "global")
    assert coef.returncode == 0 and len(json.loads(coef.stdout.split("\t")[1])) > 5
    mean = jobmatch(home, "store", "get", "activity_embedding/mean-v1", "7")
    assert mean.returncode == 0 and len(json.loads(mean.stdout.split("\t")[1])) == 3 * 64
    suggestions = jobmatch(home, "suggest", "6").stdout.splitlines()  # member 6 is a line cook
    assert len(suggestions) == 10 and any("cook" in s or "grill" in s for s in suggestions[:3])
    docs = jobmatch(home, "documents", "6").stdout
    assert docs.startswith("# member 6") and "JOB_SEARCH" in docs
    missing = jobmatch(home, "store", "get", "qa/coefficients", "m:123456789")
    assert missing.returncode == 2 and "m:123456789" in missing.stderr


def test_data_that_cannot_support_a_flow_says_why_in_one_line(tmp_path):
    """Without hirer feedback the hiring ranker and the QA model cannot learn: they are skipped with one line
    each, and the flows that can run do."""
    folder = tmp_path / "nofeedback"
    shutil.copytree(BYOD, folder)
    home = tmp_path / "home"
    _load(home, folder, kinds=("events", "impressions"))
    run = jobmatch(home, "run", "daily", "--only", "hiring,qa,activity")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    results = json.loads(run.stdout)
    assert results["hiring"]["status"] == results["qa"]["status"] == "skipped"
    assert results["activity"]["status"] == "ok"
    # the progress line says "hiring: skipped"; the summary line after the run says why
    skipped = [line for line in run.stderr.splitlines() if "skipped:" in line]
    assert len(skipped) == 2 and any("positive rating" in s for s in skipped) and any("qa:" in s for s in skipped)
    empty = jobmatch(tmp_path / "empty", "run", "daily")
    assert empty.returncode == 2 and "no event log" in empty.stderr and "Traceback" not in empty.stderr
