import json
import os
import subprocess
import sys

import pytest


def jobmatch(*args: str, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "jobmatch.cli", *args], capture_output=True, text=True,
                            timeout=900, env={**os.environ, **env})
    assert result.returncode == 0, result.stderr
    return result


def test_main_job_then_the_readers_with_no_flags(tmp_path):
    home = tmp_path / "home"
    jobmatch("--home", str(home), "run", "main", "--members", "800", "--days", "21", "--seed", "4", "--size", "quick")
    report = (home / "report.md").read_text()
    for heading in ("Seeds' regime", "Action and channel shares", "Sessions by length", "002 Figure 3",
                    "hiring/report.md", "qa/report.md", "activity/report.md", "intent/report.md"):
        assert heading in report
    assert {p.name for p in home.iterdir()} >= {"data", "truth", "events.duckdb", "store.sqlite", "flows", "hiring",
                                                 "qa", "activity", "intent"}
    assert not (home / "data" / "truth").exists()
    env = {"JOBMATCH_HOME": str(home)}
    listing = jobmatch("store", "ls", **env).stdout
    for name in ("qa/coefficients", "activity_embedding/mean-v1", "activity_embedding/learned-cnn-v2",
                 "intent/suggestions", "hiring/ranker", "manifest qa", "manifest intent"):
        assert name in listing, listing
    assert (home / "sessions_by_length.png").stat().st_size > 10_000
    stats = json.loads((home / "marketplace.json").read_text())
    assert stats["events"] > 0 and abs(sum(stats["action_share"].values()) - 1) < 1e-9
    assert sum(r["sessions"] for r in stats["by_session_length"]) == stats["sessions"]
    docs = jobmatch("documents", "0", "1", **env).stdout
    assert docs.startswith("# member 0")
    from jobmatch.store import open_store

    with open_store(f"sqlite:{home / 'store.sqlite'}") as fs:
        member = next(k for k in map(str, range(200)) if fs.get_one("intent/suggestions", k) is not None)
    assert len(jobmatch("suggest", member, **env).stdout.splitlines()) == 10
    short = subprocess.run([sys.executable, "-m", "jobmatch.cli", "--home", str(tmp_path / "s"), "run", "main",
                            "--days", "7"], capture_output=True, text=True)
    assert short.returncode == 2 and "days" in short.stderr and "Traceback" not in short.stderr


@pytest.mark.parametrize("taxonomy", ["builtin", "onet"])
def test_simulate_command_with_both_taxonomies(tmp_path, taxonomy, request):
    spec = "builtin" if taxonomy == "builtin" else f"onet:{request.getfixturevalue('onet_path')}"
    jobmatch("simulate", "--members", "300", "--days", "7", "--seed", "1", "--taxonomy", spec, "--out",
             str(tmp_path / "sim"))
    names = {p.name for p in (tmp_path / "sim").iterdir()}
    assert {"companies.parquet", "jobs.parquet", "members.parquet", "projects.parquet", "events.parquet",
            "feedback.parquet", "impressions.parquet", "hirer_impressions.parquet"} == names
    meta = json.loads((tmp_path / "sim-truth" / "simulation.json").read_text())
    assert meta["taxonomy"] == spec and meta["config"]["members"] == 300


def test_store_commands(tmp_path):
    from jobmatch.store import open_store

    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    with open_store(spec, create=True) as fs:
        fs.push("activity_embedding/mean", {"1": [0.5, 1.0]})
        fs.push("activity_embedding/mean", {"1": [2.0]})
    assert "current=2" in jobmatch("store", "ls", "--store", spec).stdout
    assert jobmatch("store", "rollback", "activity_embedding/mean", "--store", spec).stdout.strip().endswith(
        "version 1 is current")
    assert "[0.5, 1.0]" in jobmatch("store", "get", "activity_embedding/mean", "1", "--store", spec).stdout


def _mistakes(tmp: "os.PathLike") -> list[list[str]]:
    from pathlib import Path

    tmp = Path(tmp)
    binary = tmp / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    bad_type = tmp / "bad_type.toml"
    bad_type.write_text('[data]\ntrain = "t.parquet"\nvalidation = "v.parquet"\n'
                        '[[coordinates]]\nname = "g"\ntype = "fixd"\nfeatures = ["a"]\n')
    no_files = tmp / "no_files.toml"
    no_files.write_text('[data]\ntrain = "t.parquet"\nvalidation = "v.parquet"\n'
                        '[[coordinates]]\nname = "g"\ntype = "fixed"\nfeatures = ["a"]\n')
    return [["ingest", str(tmp / "missing.jsonl"), "--kind", "events"],
            ["ingest", str(binary)],
            ["ingest", str(binary), "--kind", "bogus"],
            ["load-entities", str(tmp / "no-such-folder")],
            ["documents", "1"],
            ["documents", "999999999"],
            ["sessionize", "--gap-minutes", "-1"],
            ["report", "--out", str(tmp / "r")],
            ["simulate", "--taxonomy", "foo", "--out", str(tmp / "s")],
            ["simulate", "--members", "-5", "--out", str(tmp / "s")],
            ["store", "ls"],
            ["store", "ls", "--store", "redis://127.0.0.1:1/0"],
            ["store", "ls", "--store", "mysql://x"],
            ["store", "get", "qa/coefficients", "global"],
            ["store", "rollback", "qa"],
            ["qa", "rollback"],
            ["suggest", "17"],
            ["run", "daily"],
            ["run", "daily", "--only", "qa,bogus"],
            ["run", "hiring", "--as-of", "2026-13-01"],
            ["run", "main", "--days", "7"],
            ["evaluate", "qa", "--data", str(tmp / "no-such-data"), "--out", str(tmp / "e")],
            ["evaluate", "audience", "--db", str(tmp / "none.duckdb"), "--out", str(tmp / "e")],
            ["game", "train", "--config", str(bad_type), "--out", str(tmp / "g")],
            ["game", "train", "--config", str(no_files), "--out", str(tmp / "g")],
            ["game", "score", "--model", str(tmp / "no-model"), "--data", str(tmp / "x.parquet"),
             "--out", str(tmp / "y.parquet")],
            ["worker", "--batch", "0"]]


def test_every_command_answers_a_mistake_with_one_line_and_exit_2(tmp_path):
    """A user's mistake is never a traceback: one line naming what and where, exit code 2."""
    home = tmp_path / "home"
    jobmatch("--home", str(home), "load-entities", "examples/byod")  # a log with entities, no events
    wrong = []
    for args in _mistakes(tmp_path):
        r = subprocess.run([sys.executable, "-m", "jobmatch.cli", "--home", str(home), *args],
                           capture_output=True, text=True, timeout=300)
        lines = r.stderr.strip().splitlines()
        if r.returncode != 2 or "Traceback" in r.stderr or not 1 <= len(lines) <= 8:
            wrong.append((args, r.returncode, r.stderr[-600:]))
    assert not wrong, "\n".join(map(str, wrong))
