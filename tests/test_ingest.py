import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobmatch.events import EventLog, FileProblem, IngestError, read_batch
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
        assert log.append("events", batch.rows).inserted == 4
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
    "integer above int64": (GOOD[1] | {"event_id": "x11", "member_id": 2**64}, "member_id"),
    "newline in a query": (GOOD[0] | {"event_id": "x12", "query": "nurse\nAPPLY c_forged job *"}, "query"),
    "NUL in an id": (GOOD[1] | {"event_id": "x13\u0000"}, "event_id"),
    "year 1": (GOOD[1] | {"event_id": "x14", "ts": "0001-01-01T00:00:00Z"}, "ts"),
    "year 9999": (GOOD[1] | {"event_id": "x15", "ts": "9999-12-31T00:00:00Z"}, "ts"),
    "boolean id": (GOOD[1] | {"event_id": "x16", "job_id": True}, "job_id"),
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


def test_skip_bad_ingests_good_rows_and_rejects_can_be_fixed_and_replayed(tmp_path):
    db = tmp_path / "log.duckdb"
    bad_action = BAD_CASES["unknown action"][0]
    path = write_jsonl(tmp_path / "batch.jsonl", [GOOD[0], bad_action, GOOD[1], BAD_CASES["malformed JSON"][0]])
    rejects = tmp_path / "rejects.jsonl"
    result = jobmatch("ingest", str(path), "--db", str(db), "--skip-bad", "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr
    assert [r[0] for r in snapshot(db)] == ["e1", "e2"]
    # the rejects file holds the bad rows exactly as they came; what was wrong is beside it
    lines = rejects.read_text().splitlines()
    assert lines == [json.dumps(bad_action), BAD_CASES["malformed JSON"][0]]
    errors = [json.loads(x) for x in (tmp_path / "rejects.jsonl.errors.jsonl").read_text().splitlines()]
    assert [(e["rejects_line"], e["line"], e["field"]) for e in errors] == [(1, 2, "action"), (2, 4, "<json>")]
    # fix the rows and replay the rejects file
    rejects.write_text(json.dumps(bad_action | {"action": "SAVE"}) + "\n" + json.dumps(GOOD[3] | {"event_id": "x1"})
                       + "\n")
    assert jobmatch("ingest", str(rejects), "--db", str(db)).returncode == 0
    assert sorted(r[0] for r in snapshot(db)) == ["e1", "e2", "x1", "x3"]


def test_duplicates_are_idempotent_and_late_events_accepted(tmp_path):
    with EventLog(tmp_path / "log.duckdb") as log:
        batch = read_batch(write_jsonl(tmp_path / "a.jsonl", GOOD)).rows
        assert log.append("events", batch).inserted == 4
        assert log.append("events", batch).inserted == 0
        late = GOOD[0] | {"event_id": "late", "ts": "2025-12-31T23:00:00Z"}
        dup_in_batch = [late, late | {"query": "second copy is ignored"}]
        assert log.append("events", read_batch(write_jsonl(tmp_path / "b.jsonl", dup_in_batch)).rows).inserted == 1
        rows = log.table("events").to_pylist()
    assert len(rows) == 5
    assert next(r for r in rows if r["event_id"] == "late")["query"] == "data scientist"


def test_parquet_batches_are_validated_by_row(tmp_path, tiny_market_dir):
    good = read_batch(tiny_market_dir / "events.parquet")
    assert not good.errors and good.rows.num_rows > 1000
    fb = read_batch(tiny_market_dir / "feedback.parquet")
    assert fb.kind == "feedback" and not fb.errors
    table = pa.table({"event_id": ["a", "b"], "member_id": [1, 2],
                      "ts": pa.array([1_767_600_000_000_000] * 2, pa.timestamp("us", tz="UTC")),
                      "action": ["VIEW", "JUMP"],
                      "channel": ["alerts", "alerts"], "job_id": [3, 4], "query": [None, None]})
    pq.write_table(table, tmp_path / "bad.parquet")
    errors = read_batch(tmp_path / "bad.parquet").errors
    assert [(e.unit, e.line, e.field) for e in errors] == [("row", 2, "action")]
    pq.write_table(table.drop_columns(["member_id"]), tmp_path / "missing.parquet")
    with pytest.raises(FileProblem, match="'member_id'"):  # no row of such a file can be right: file-level
        read_batch(tmp_path / "missing.parquet")


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
        assert log.append("events", read_batch(tiny_market_dir / "events.parquet").rows).inserted > 1000


def test_invalid_utf8_is_a_line_error(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_bytes(json.dumps(GOOD[0]).encode() + b"\n" + b'{"event_id": "\xff\xfe", "member_id": 1}\n')
    batch = read_batch(path, "events")
    assert [(e.line, e.field) for e in batch.errors] == [(2, "<utf-8>")]
    assert batch.rows.num_rows == 1


def _one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.mark.parametrize("case", ["empty", "not parquet", "binary without kind", "naive timestamps", "missing file",
                                  "string ids column", "directory"])
def test_file_level_problems_fail_whole_even_with_skip_bad(tmp_path, case):
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append("events", read_batch(write_jsonl(tmp_path / "first.jsonl", GOOD[:2])).rows)
    before = snapshot(db)
    path = tmp_path / "batch.parquet"
    needle = {"empty": "empty", "not parquet": "not a readable Parquet file", "binary without kind": "kind",
              "naive timestamps": "naive", "missing file": "no such file", "string ids column": "member_id",
              "directory": "not a file"}[case]
    if case == "empty":
        path = tmp_path / "batch.jsonl"
        path.write_bytes(b"")
    elif case == "not parquet":
        path.write_text("this is not parquet")
    elif case == "binary without kind":
        path = tmp_path / "batch.bin"
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "naive timestamps":
        pq.write_table(pa.table({"event_id": ["n1"], "member_id": [1], "ts": pa.array([1_767_600_000_000_000],
                                 pa.timestamp("us")), "action": ["VIEW"], "channel": ["alerts"], "job_id": [3]}), path)
    elif case == "string ids column":
        pq.write_table(pa.table({"event_id": ["n1"], "member_id": ["one"], "ts": pa.array(
            [1_767_600_000_000_000], pa.timestamp("us", "UTC")), "action": ["VIEW"], "channel": ["alerts"],
            "job_id": [3]}), path)
    elif case == "directory":
        path = tmp_path
    result = jobmatch("ingest", str(path), "--db", str(db), "--skip-bad")
    _one_line_failure(result, needle)
    assert snapshot(db) == before
    assert not list(tmp_path.glob("*.rejects.jsonl"))


def test_parquet_types_out_of_range_and_nanoseconds(tmp_path):
    ns = pa.array([1_767_600_000_000_000_123, 1_767_600_060_000_000_999], pa.timestamp("ns", "UTC"))
    table = pa.table({"event_id": ["a", "b"], "member_id": pa.array([1, 2**63 + 5], pa.uint64()), "ts": ns,
                      "action": ["VIEW", "VIEW"], "channel": ["alerts", "alerts"], "job_id": [3, 4]})
    pq.write_table(table, tmp_path / "b.parquet")
    batch = read_batch(tmp_path / "b.parquet")
    assert [(e.line, e.field) for e in batch.errors] == [(2, "member_id")]
    assert "out of range" in batch.errors[0].message
    assert batch.rows["ts"].cast(pa.int64())[0].as_py() == 1_767_600_000_000_000  # ns floored to µs
    assert json.loads(batch.rejected[0])["event_id"] == "b"


def test_resent_ids_with_other_content_are_reported_and_strict_refuses(tmp_path):
    db = tmp_path / "log.duckdb"
    assert jobmatch("ingest", str(write_jsonl(tmp_path / "a.jsonl", GOOD)), "--db", str(db)).returncode == 0
    changed = [GOOD[1] | {"job_id": 99}, GOOD[2], GOOD[3] | {"event_id": "new"}]
    path = write_jsonl(tmp_path / "b.jsonl", changed)
    strict = jobmatch("ingest", str(path), "--db", str(db), "--strict")
    _one_line_failure(strict, "'e2'", "different content")
    assert len(snapshot(db)) == 4
    lenient = jobmatch("ingest", str(path), "--db", str(db))
    assert lenient.returncode == 0 and "1 new events (1 already present)" in lenient.stderr
    assert "1 id(s) sent before with different content" in lenient.stderr and "'e2'" in lenient.stderr
    assert next(r for r in snapshot(db) if r[0] == "e2")[5] == 10  # the first copy wins
    with EventLog(db, read_only=True) as log:
        assert log.table("batches")["conflicts"].to_pylist()[-1] == 1


def test_a_second_writer_waits_then_fails_with_one_line(tmp_path, tiny_market_dir):
    db = tmp_path / "log.duckdb"
    with EventLog(db) as log:
        log.append("events", read_batch(write_jsonl(tmp_path / "first.jsonl", GOOD)).rows)
    holder = subprocess.Popen([sys.executable, "-m", "jobmatch.cli", "ingest", str(tiny_market_dir / "events.parquet"),
                               "--db", str(db)], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, PAUSE_BEFORE_COMMIT_ENV: "60"})
    try:
        for line in holder.stderr:
            if "paused before commit" in line:
                break
        second = jobmatch("ingest", str(write_jsonl(tmp_path / "b.jsonl", [GOOD[0] | {"event_id": "z"}])), "--db",
                          str(db), env={"JOBMATCH_LOCK_TIMEOUT_S": "0.5"})
        _one_line_failure(second, "in use by another process")
        errors = [x for x in second.stderr.splitlines() if x and not x[:2].isdigit()]  # not progress lines
        assert len(errors) == 1, second.stderr
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stderr.close()
    assert [r[0] for r in snapshot(db)] == ["e1", "e2", "e3", "e4"]


def test_impressions_are_events_with_their_own_kinds(tmp_path, tiny_market_dir):
    with EventLog(tmp_path / "log.duckdb") as log:
        for kind in ("impressions", "hirer_impressions"):
            batch = read_batch(tiny_market_dir / f"{kind}.parquet")
            assert batch.kind == kind and not batch.errors and batch.rows.num_rows > 100
            assert log.append(kind, batch.rows).inserted == batch.rows.num_rows
            assert log.append(kind, batch.rows).inserted == 0  # idempotent on impression_id
    bad = {"impression_id": "i1", "request_id": "r1", "member_id": 1, "job_id": 2, "ts": "2026-01-05T09:00:00Z",
           "channel": "search", "position": -1}
    errors = read_batch(write_jsonl(tmp_path / "i.jsonl", [bad]), "impressions").errors
    assert [(e.line, e.field) for e in errors] == [(1, "position")]
    assert read_batch(write_jsonl(tmp_path / "h.jsonl", [bad | {"project_id": 3}])).kind == "hirer_impressions"


def test_load_entities_refuses_duplicate_ids_and_upserts_across_batches(tmp_path, tiny_market_dir):
    db = tmp_path / "log.duckdb"
    folder = tmp_path / "entities"
    folder.mkdir()
    members = pq.read_table(tiny_market_dir / "members.parquet")
    pq.write_table(members, folder / "members.parquet")
    assert jobmatch("load-entities", str(folder), "--db", str(db)).returncode == 0
    dup = pa.concat_tables([members.slice(0, 3), members.slice(1, 1)])
    pq.write_table(dup, folder / "members.parquet")
    _one_line_failure(jobmatch("load-entities", str(folder), "--db", str(db)), "row 4", "duplicate id")
    changed = members.slice(0, 1).set_column(1, "title", pa.array(["chief cartographer"]))
    (folder / "members.parquet").unlink()
    (folder / "members.jsonl").write_text(json.dumps({k: v for k, v in changed.to_pylist()[0].items()}) + "\n")
    assert jobmatch("load-entities", str(folder), "--db", str(db)).returncode == 0
    with EventLog(db, read_only=True) as log:
        stored = log.table("members")
    assert stored.num_rows == members.num_rows
    assert stored["title"][0].as_py() == "chief cartographer"


def test_wrong_files_and_options_are_one_line(tmp_path):
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("hello")
    _one_line_failure(jobmatch("documents", "1", "--db", str(not_a_log)), "not a jobmatch event log")
    _one_line_failure(jobmatch("documents", "1", "--db", str(tmp_path / "missing.duckdb")), "no event log")
    _one_line_failure(jobmatch("sessionize", "--db", str(tmp_path / "l.duckdb"), "--gap-minutes", "-5"),
                      "--gap-minutes")
    _one_line_failure(jobmatch("ingest", str(tmp_path / "absent.jsonl"), "--db", str(tmp_path / "l.duckdb")),
                      "no such file")


def test_documents_are_one_line_per_session_whatever_the_text():
    from jobmatch.events import render_event

    assert "\n" not in render_event("SEARCH", "nurse\nAPPLY c_x forged *", None, None, None)
    assert render_event("VIEW", None, "Acme\tInc", "data\x00 engineer", 3) == "VIEW c_acme_inc data  engineer"


def test_a_json_integer_too_wide_for_its_column_is_a_line_error():
    """`position` is int32: 2^31 fits int64 but not the column, and is reported, not an Arrow crash."""
    from datetime import datetime, timezone

    from jobmatch.events.ingest import TimeBounds, read_records

    row = {"impression_id": "i-1", "request_id": "r-1", "member_id": 1, "job_id": 2,
           "ts": "2026-02-01T10:00:00Z", "channel": "search", "position": 2**31, "query": "nurse"}
    batch = read_records("impressions", [row, {**row, "impression_id": "i-2", "position": 3}],
                         TimeBounds(now=datetime(2026, 2, 2, tzinfo=timezone.utc)))
    assert [(e.line, e.field) for e in batch.errors] == [(1, "position")]
    assert "int32" in batch.errors[0].message and batch.rows.num_rows == 1
