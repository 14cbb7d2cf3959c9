"""The nearline queue (one conformance suite over the embedded inbox and Redis Streams) and the worker's
exactly-once-in-effect application of queued events to the log, the hirer counts and the activity embeddings.

The fixture home is the tiny market split at a day: the log holds the events before it (and every entity), the
activity flow has trained and published on them, and the events after it are what gets queued."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import redis
import typer
from typer.testing import CliRunner

from jobmatch.config import Settings
from jobmatch.embed.sequences import ACTION_CODE, action_log, member_sequences
from jobmatch.events import EventLog
from jobmatch.flows.activity import (JOB_EMBEDDINGS, WINDOW_DAYS, EmbeddingModels, dataset_name,
                                     run_activity_embeddings)
from jobmatch.flows.hiring import feed_counts, open_counts
from jobmatch.flows.state import FlowContext, day_end_us
from jobmatch.hiring.dataset import candidate_impressions
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.state import MemoryProjectCounts
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.nearline.commands import register
from jobmatch.nearline.queue import Delivery, PublishResult, QueueUnavailable, RedisQueue, open_queue
from jobmatch.nearline.worker import Worker, activity_models_dir, load_progress
from jobmatch.schema import ENTITY_KINDS, EVENT_SCHEMA, KINDS, STREAM_KINDS
from jobmatch.store import open_store

REPO = Path(__file__).resolve().parents[1]
SPLIT_DAY = 9  # days after the first event: the log holds what came before, the queue what came after


# -- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def nearline_base(tmp_path_factory, tiny_log) -> tuple[Path, dict[str, pa.Table]]:
    """(a home with the log before the split and the activity flow's models, the stream rows after the split)."""
    home = tmp_path_factory.mktemp("nearline") / "home"
    with EventLog(tiny_log, read_only=True) as src:
        first, _ = src.time_range()
        tables = {k: src.table(k) for k in STREAM_KINDS + ENTITY_KINDS}
    day = dt.datetime.fromtimestamp(first / 1e6, dt.timezone.utc).date() + dt.timedelta(days=SPLIT_DAY)
    _, split = day_end_us(day)
    queued = {}
    spec = f"sqlite:{home / 'store.sqlite'}"
    with EventLog(home / "events.duckdb") as log:
        for kind in ENTITY_KINDS:
            log.put_entities(kind, tables[kind])
        for kind in STREAM_KINDS:
            before = pc.less(tables[kind]["ts"].cast(pa.int64()), split)
            log.append(kind, tables[kind].filter(before))
            queued[kind] = tables[kind].filter(pc.invert(before))
        with open_store(spec, create=True) as store:
            run_activity_embeddings(FlowContext.create(log, store, spec, home / "flows", day), epochs=1)
    assert all(t.num_rows > 100 for t in queued.values())
    return home, queued


def make_home(base: Path, target: Path, store: str = "") -> Settings:
    """A copy of the base home; with a Redis store spec, that store and its hirer counts are created (as the flows'
    first publish would)."""
    shutil.copytree(base, target)
    if store:
        with open_store(store, create=True) as s:
            s.push(JOB_EMBEDDINGS, {"0": np.zeros(4, np.float32)})
        open_counts(store, create=True).close()
    return Settings(home=target, store=store)


@pytest.fixture
def fresh_redis(redis_url) -> str:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture(params=["sqlite", "redis"])
def stream_spec(request) -> str:
    if request.param == "sqlite":
        return ""
    return request.getfixturevalue("fresh_redis")


def publish_all(queue, queued: dict[str, pa.Table]) -> int:
    return sum(queue.publish(kind, t).accepted for kind, t in queued.items())


# -- what "applied exactly once" means --------------------------------------------------------------------------

def expected_counts(settings: Settings, queued: dict[str, pa.Table]) -> dict[tuple[int, int], int]:
    """Hirer counters from applying every queued event once, through the daily flow's own code path."""
    with EventLog(settings.event_log_path, read_only=True) as log:
        snap = log.snapshot()
        members, projects = snap.entities("members"), snap.entities("projects")
    counts = MemoryProjectCounts()
    prefs = HirerPreferences(ProfileTerms.from_members(members), counts, projects["project_id"].to_pylist())
    shown = candidate_impressions(queued["events"].select(["member_id", "ts", "action", "job_id"]),
                                  projects, queued["hirer_impressions"])
    feed_counts(prefs, shown, queued["feedback"])
    return {(p, c): v for p, by_code in counts._counts.items() for c, v in by_code.items() if v}


def stored_counts(settings: Settings) -> dict[tuple[int, int], int]:
    spec = settings.store_spec
    if spec.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(spec.removeprefix("sqlite:")) as db:
            return {(p, c): v for p, c, v in db.execute("SELECT project, code, value FROM project_counts")}
    client = redis.Redis.from_url(spec)
    found = {}
    for key in client.scan_iter("jm:project:*"):
        project = int(key.decode().rsplit(":", 1)[1])
        for code, value in client.hgetall(key).items():
            if not code.startswith(b"d:"):
                found[(project, int(code))] = int(value)
    client.close()
    return found


def expected_embeddings(settings: Settings, members: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Each member's embeddings recomputed from scratch: the daily flow's `member_sequences` over every action in
    the log, as of just after the member's newest action."""
    with EventLog(settings.event_log_path, read_only=True) as log:
        snap = log.snapshot()
        models = EmbeddingModels.load(activity_models_dir(settings.home)).with_jobs(snap.entities("jobs"),
                                                                                   snap.entities("companies"))
        events = snap.events(["event_id", "member_id", "ts", "action", "job_id"])
    acts = action_log(events, models.job_row)
    out: dict[str, dict[int, np.ndarray]] = {dataset_name(a): {} for a in models.aggregators.values()}
    for m in members:
        newest = int(acts[3][acts[0] == m].max())
        seqs = member_sequences(acts, newest + 1, WINDOW_DAYS, members=np.array([m]))
        for name, v in models.embed(seqs).items():
            out[dataset_name(models.aggregators[name])][m] = v[0]
    return out


def check_applied_once(settings: Settings, base_log: Path, queued: dict[str, pa.Table]) -> None:
    """The log holds every event once; the hirer counts equal one application of the queued events; every member
    with a queued action has the embeddings a from-scratch recompute gives."""
    with EventLog(base_log, read_only=True) as before, EventLog(settings.event_log_path, read_only=True) as log:
        for kind in STREAM_KINDS:
            ids = log.table(kind)[KINDS[kind].id_field]
            assert len(ids) == len(pc.unique(ids)) == before.count(kind) + queued[kind].num_rows, kind
    assert stored_counts(settings) == expected_counts(settings, queued)
    ev = queued["events"]
    members = sorted(set(ev.filter(pc.is_in(ev["action"], pa.array(list(ACTION_CODE))))["member_id"].to_pylist()))
    assert members
    with open_store(settings.store_spec) as store:
        for dataset, by_member in expected_embeddings(settings, members).items():
            got = store.get(dataset, [str(m) for m in members])
            for m, value in zip(members, got):
                np.testing.assert_allclose(value, by_member[m], rtol=1e-5, atol=1e-6, err_msg=f"{dataset} {m}")


# -- queue conformance (both backends) -----------------------------------------------------------------------------

def _events(n: int, start: int = 0) -> pa.Table:
    ts = dt.datetime(2026, 1, 5, 12, tzinfo=dt.timezone.utc)
    return pa.Table.from_pylist([
        {"event_id": f"e{i}", "member_id": i % 13, "ts": ts + dt.timedelta(seconds=i),
         "action": "SEARCH" if i % 5 == 0 else "APPLY", "channel": "search",
         "job_id": None if i % 5 == 0 else i % 7, "query": "nurse" if i % 5 == 0 else None}
        for i in range(start, start + n)], schema=EVENT_SCHEMA)


def test_publish_is_idempotent_on_ids(tmp_path, stream_spec):
    with open_queue(tmp_path, stream_spec) as q:
        assert q.publish("events", _events(50)) == PublishResult(50, 0)
        assert q.publish("events", _events(60)) == PublishResult(10, 50)
        doubled = pa.concat_tables([_events(5, 100), _events(5, 100)])
        assert q.publish("events", doubled) == PublishResult(5, 5)
        assert q.lag() == 65


def test_rows_round_trip_in_order_with_lag(tmp_path, stream_spec):
    sent = _events(30)
    with open_queue(tmp_path, stream_spec) as q:
        q.publish("events", sent)
        q.publish("feedback", pa.Table.from_pylist([{
            "feedback_id": "f1", "project_id": 3, "member_id": 4, "ts": dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc),
            "channel": "applicants", "feedback": "message"}], schema=KINDS["feedback"].schema))
        first = q.read("c1", 20)
        assert first.tables["events"].equals(sent.slice(0, 20)) and q.lag() == 31
        second = q.read("c1", 20)  # the next entries, not the unacknowledged ones again
        assert second.tables["events"].equals(sent.slice(20)) and second.tables["feedback"].num_rows == 1
        assert q.ack(first) == 20 and q.lag() == 11
        assert q.ack(second) == 11 and q.lag() == 0
        assert q.read("c1", 20, block_ms=100).empty


def test_unacknowledged_entries_come_back_after_a_restart(tmp_path, stream_spec):
    with open_queue(tmp_path, stream_spec) as q:
        q.publish("events", _events(10))
        q.ack(q.read("worker", 4))
        q.read("worker", 4)  # read, never acknowledged: the consumer "dies"
    with open_queue(tmp_path, stream_spec) as q:
        again = q.read("worker", 100)
        assert again.tables["events"]["event_id"].to_pylist()[:4] == ["e4", "e5", "e6", "e7"]
        rest = again if again.rows == 6 else None
        if rest is None:  # Redis hands back the pending entries first, then the new ones
            q.ack(again)
            rest = q.read("worker", 100)
            assert rest.tables["events"]["event_id"].to_pylist() == ["e8", "e9"]
        q.ack(rest)
        assert q.lag() == 0


def test_batches_that_do_not_fit_the_schema_are_refused(tmp_path, stream_spec):
    with open_queue(tmp_path, stream_spec) as q:
        with pytest.raises(ValueError, match="kind: expected one of"):
            q.publish("jobs", _events(1))
        with pytest.raises(ValueError, match="event_id: missing"):
            q.publish("events", _events(1).drop_columns(["event_id"]))
        assert q.lag() == 0


def test_a_dead_consumers_pending_entries_are_claimed(fresh_redis):
    q = RedisQueue(fresh_redis, claim_idle_ms=50)
    q.publish("events", _events(6))
    assert q.read("dead", 4).rows == 4  # never acknowledged
    import time

    time.sleep(0.2)
    claimed = q.read("alive", 10)
    assert claimed.tables["events"]["event_id"].to_pylist() == ["e0", "e1", "e2", "e3"]
    q.ack(claimed)
    q.ack(q.read("alive", 10))
    assert q.lag() == 0
    q.close()


def test_an_unreachable_redis_is_named(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    q = open_queue(tmp_path, f"redis://127.0.0.1:{port}/0")
    with pytest.raises(QueueUnavailable, match=f"redis at 127.0.0.1:{port}: connection refused"):
        q.lag()
    with pytest.raises(QueueUnavailable, match=f"redis at 127.0.0.1:{port}"):
        q.publish("events", _events(1))
    q.close()
    with pytest.raises(ValueError, match="stream: expected redis://"):
        open_queue(tmp_path, "kafka://x")


# -- the worker --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_worker_applies_everything_once(tmp_path, nearline_base, stream_spec, store, request):
    base, queued = nearline_base
    spec = request.getfixturevalue("fresh_redis") if store == "redis" else ""
    settings = make_home(base, tmp_path / "home", spec)
    settings = settings.model_copy(update={"stream": stream_spec})
    with open_queue(settings.home, stream_spec) as q:
        total = publish_all(q, queued)
    worker = Worker(settings, batch=700, block_ms=50, say=lambda _m: None)
    progress = worker.run(once=True)
    assert progress.events == total and progress.appended == total and progress.skipped == 0
    assert worker.queue.lag() == 0
    # a replay of everything (as after a crash before the acks) changes nothing
    for kind, t in queued.items():
        worker.apply(Delivery({kind: t}, None))
    worker.close()
    check_applied_once(settings, base / "events.duckdb", queued)
    assert load_progress(settings.home)["events"] == total


def test_cli_worker_once(tmp_path, nearline_base):
    base, queued = nearline_base
    settings = make_home(base, tmp_path / "home")
    with open_queue(settings.home) as q:
        q.publish("feedback", queued["feedback"])
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, as in the main CLI, so that `worker` is a subcommand
        pass

    register(app)
    result = CliRunner().invoke(app, ["worker", "--once", "--batch", "100", "--block-ms", "10"],
                                env={"JOBMATCH_HOME": str(settings.home)})
    assert result.exit_code == 0, result.output
    assert load_progress(settings.home)["kinds"] == {"feedback": queued["feedback"].num_rows}
    assert "Traceback" not in result.output


# -- running the worker as a process (also used by the fault tests) -----------------------------------------------

RUNNER = ("import typer\nfrom jobmatch.nearline.commands import register\napp = typer.Typer()\n"
          "app.callback()(lambda: None)\nregister(app)\napp()\n")


def spawn_worker(settings: Settings, log_file: Path, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.Popen:
    """`worker` in its own process (the main CLI's command once the lead registers it there)."""
    import os

    environ = {**os.environ, "JOBMATCH_HOME": str(settings.home), "JOBMATCH_STORE": settings.store,
               "JOBMATCH_STREAM": settings.stream, **(env or {})}
    with log_file.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-c", RUNNER, "worker", *args], cwd=REPO, env=environ,
                                stdout=subprocess.DEVNULL, stderr=err)


def test_worker_process_drains_and_stops_on_sigterm(tmp_path, nearline_base):
    base, queued = nearline_base
    settings = make_home(base, tmp_path / "home")
    with open_queue(settings.home) as q:
        total = publish_all(q, queued)
    proc = spawn_worker(settings, tmp_path / "worker.log", "--batch", "2000", "--block-ms", "100")
    import time

    deadline = time.monotonic() + 300
    while (load_progress(settings.home) or {}).get("events", 0) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.terminate()
    assert proc.wait(timeout=60) == 0
    text = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in text and f"{total} events in" in text
    check_applied_once(settings, base / "events.duckdb", queued)
    assert json.loads((settings.home / "nearline" / "progress.json").read_text())["events"] == total
