import json
import os
import subprocess
import sys

import pytest


def jobmatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "jobmatch.cli", *args], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result


def test_main_job_writes_the_report(tmp_path):
    out = tmp_path / "run"
    jobmatch("run", "main", "--out", str(out), "--members", "600", "--days", "21", "--seed", "4")
    report = (out / "report.md").read_text()
    for heading in ("Seeds' regime", "Action and channel shares", "Sessions by length", "002 Figure 3",
                    "hiring/report.md", "qa/report.md", "activity/report.md"):
        assert heading in report
    from jobmatch.store import open_store

    with open_store(f"sqlite:{out / 'store.sqlite'}") as fs:
        assert {"qa/coefficients", "activity_embedding/mean-v1", "activity_embedding/learned-cnn-v1"} <= set(
            fs.datasets())
    assert (out / "sessions_by_length.png").stat().st_size > 10_000
    stats = json.loads((out / "marketplace.json").read_text())
    assert stats["events"] > 0 and abs(sum(stats["action_share"].values()) - 1) < 1e-9
    assert sum(r["sessions"] for r in stats["by_session_length"]) == stats["sessions"]
    docs = jobmatch("documents", "0", "1", "--db", str(out / "events.duckdb")).stdout
    assert docs.startswith("# member 0")
    short = subprocess.run([sys.executable, "-m", "jobmatch.cli", "run", "main", "--out", str(tmp_path / "s"),
                            "--days", "7"], capture_output=True, text=True)
    assert short.returncode == 2 and "days" in short.stderr


@pytest.mark.parametrize("taxonomy", ["builtin", "onet"])
def test_simulate_command_with_both_taxonomies(tmp_path, taxonomy, request):
    spec = "builtin" if taxonomy == "builtin" else f"onet:{request.getfixturevalue('onet_path')}"
    jobmatch("simulate", "--members", "300", "--days", "7", "--seed", "1", "--taxonomy", spec, "--out",
             str(tmp_path / "sim"))
    names = {p.name for p in (tmp_path / "sim").iterdir()}
    assert {"companies.parquet", "jobs.parquet", "members.parquet", "projects.parquet", "events.parquet",
            "feedback.parquet", "truth"} <= names
    meta = json.loads((tmp_path / "sim" / "truth" / "simulation.json").read_text())
    assert meta["taxonomy"] == spec and meta["config"]["members"] == 300


def test_store_commands(tmp_path):
    from jobmatch.store import open_store

    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    with open_store(spec) as fs:
        fs.push("activity_embedding/mean", {"1": [0.5, 1.0]})
        fs.push("activity_embedding/mean", {"1": [2.0]})
    assert "current=2" in jobmatch("store", "ls", "--store", spec).stdout
    assert jobmatch("store", "rollback", "activity_embedding/mean", "--store", spec).stdout.strip().endswith(
        "version 1 is current")
    assert "[0.5, 1.0]" in jobmatch("store", "get", "activity_embedding/mean", "1", "--store", spec).stdout
