import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobmatch.events import EventLog, IngestError, read_batch
from jobmatch.events.log import PAUSE_BEFORE_COMMIT_ENV

GOOD = [
    {"event_id": "e1", "member_id": 1, "ts": "2026-01-05T09:00:00Z", "action": "SEARCH", "channel": "search",
     "query": "data scientist"},
    {"event_id": "e2", "member_id": 1, "ts": "2026-01-05T09:01:00Z", "action": "VIEW", "channel": "search",
     "job_id": 10},
    {"event_id": "e3", "member_id": 1, "ts": "2026-01-05T10:02:30+01:00", "action": "APPLY", "channel": "search",
     "job_id": 10},
    {"event_id": "e4", "member_id": 2, "ts": "2026-01-06T12:00:00.250Z", "action": "DISMISS",
     "channel": "recommendations", "job_id": 11},
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def jobmatch(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobmatch.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def snapshot(db: Path) -> list[tuple]:
    with EventLog(db, read_only=True) as log:
        return [tuple(r.values()) for r in log.table("events").to_pylist()]


def test_good_batch_round_trips(tmp_path):
    batch = read_batch(write_jsonl(tmp_path / "b.jsonl", GOOD))
    assert batch.kind == "events" and not batch.errors and batch.rows.num_rows == 4
    with EventLog(tmp_path / "log.duckdb") as log:
        assert log.append("events", batch.rows) == 4
        stored = log.table("events")
    assert stored["event_id"].to_pylist() == ["e1", "e2", "e3", "e4"]
    # +01:00 is converted to UTC
    assert stored["ts"][2].as_py().isoformat() == "2026-01-05T09:02:30+00:00"


BAD_CASES = {
    "malformed JSON": ('{"event_id": "x1", "member_id": 3,', "<json>"),
    "missing field": ({k: v for k, v in GOOD[1].items() if k != "member_id"} | {"event_id": "x2"}, "member_id"),
    "unknown action": (GOOD[1] | {"event_id": "x3", "action": "CLICK"}, "action"),
    "garbage timestamp": (GOOD[1] | {"event_id": "x4", "ts": "yesterday-ish"}, "ts"),
    "naive timestamp": (GOOD[1] | {"event_id": "x5", "ts": "2026-01-05T09:00:00"}, "ts"),
    "wrong type": (GOOD[1] | {"event_id": "x6", "member_id": "one"}, "member_id"),
    "oversized text": (GOOD[0] | {"event_id": "x7", "query": "q" * 5000}, "query"),
    "unknown field": (GOOD[1] | {"event_id": "x8", "color": "red"}, "color"),
    "search without query": ({k: v for k, v in GOOD[0].items() if k != "query"} | {"event_id": "x9"}, "query"),
    "negative id": (GOOD[1] | {"event_id": "x10", "job_id": -4}, "job_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_row_is_named_and_nothing_changes(tmp_path, case):
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append("events", read_batch(write_jsonl(tmp_path / "first.jsonl", GOOD[:2])).rows)
    before = snapshot(db)
    bad_row, field = BAD_CASES[case]
    path = write_jsonl(tmp_path / "batch.jsonl", [GOOD[2], GOOD[3], bad_row])  # the bad row is line 3
    batch = read_batch(path, "events")
    assert [(e.line, e.field) for e in batch.errors] == [(3, field)], batch.errors
    message = str(IngestError(path, batch.errors))
    assert "line 3" in message and repr(field) in message
    result = jobmatch("ingest", str(path), "--db", str(db))
    assert result.returncode == 2, result.stderr
    assert "line 3" in result.stderr and field in result.stderr
    assert snapshot(db) == before


def test_skip_bad_ingests_good_rows_and_writes_rejects(tmp_path):
    db = tmp_path / "log.duckdb"
    path = write_jsonl(tmp_path / "batch.jsonl", [GOOD[0], BAD_CASES["unknown action"][0], GOOD[1],
                                                  BAD_CASES["malformed JSON"][0]])
    rejects = tmp_path / "rejects.jsonl"
    result = jobmatch("ingest", str(path), "--db", str(db), "--skip-bad", "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in snapshot(db)] == ["e1", "e2"]
    rejected = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejected] == [(2, "action"), (4, "<json>")]


def test_duplicates_are_idempotent_and_late_events_accepted(tmp_path):
    with EventLog(tmp_path / "log.duckdb") as log:
        batch = read_batch(write_jsonl(tmp_path / "a.jsonl", GOOD)).rows
        assert log.append("events", batch) == 4
        assert log.append("events", batch) == 0
        late = GOOD[0] | {"event_id": "late", "ts": "2025-12-31T23:00:00Z"}
        dup_in_batch = [late, late | {"query": "second copy is ignored"}]
        assert log.append("events", read_batch(write_jsonl(tmp_path / "b.jsonl", dup_in_batch)).rows) == 1
        rows = log.table("events").to_pylist()
    assert len(rows) == 5
    assert next(r for r in rows if r["event_id"] == "late")["query"] == "data scientist"


def test_parquet_batches_are_validated_by_row(tmp_path, tiny_market_dir):
    good = read_batch(tiny_market_dir / "events.parquet")
    assert not good.errors and good.rows.num_rows > 1000
    fb = read_batch(tiny_market_dir / "feedback.parquet")
    assert fb.kind == "feedback" and not fb.errors
    table = pa.table({"event_id": ["a", "b"], "member_id": [1, 2],
                      "ts": pa.array([0, 1], pa.timestamp("us", tz="UTC")), "action": ["VIEW", "JUMP"],
                      "channel": ["alerts", "alerts"], "job_id": [3, 4], "query": [None, None]})
    pq.write_table(table, tmp_path / "bad.parquet")
    errors = read_batch(tmp_path / "bad.parquet").errors
    assert [(e.unit, e.line, e.field) for e in errors] == [("row", 2, "action")]
    pq.write_table(table.drop_columns(["member_id"]), tmp_path / "missing.parquet")
    assert [e.field for e in read_batch(tmp_path / "missing.parquet").errors] == ["member_id"]


def test_killed_ingest_leaves_the_log_as_it_was(tmp_path, tiny_market_dir):
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append("events", read_batch(write_jsonl(tmp_path / "first.jsonl", GOOD)).rows)
    before = snapshot(db)
    proc = subprocess.Popen([sys.executable, "-m", "jobmatch.cli", "ingest", str(tiny_market_dir / "events.parquet"),
                             "--db", str(db)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, PAUSE_BEFORE_COMMIT_ENV: "60"})
    for line in proc.stderr:  # the whole batch is written, not yet committed
        if "paused before commit" in line:
            break
    else:
        pytest.fail(f"ingest never reached the commit point (exit {proc.wait()})")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert snapshot(db) == before
    # and the log is healthy: the same batch ingests fine afterwards
    with EventLog(db) as log:
        assert log.append("events", read_batch(tiny_market_dir / "events.parquet").rows) > 1000
