"""`jobmatch worker`: applies queued events to the event log, the member activity embeddings and the hirer counts.

One delivery (a batch read from the queue's consumer group, see `jobmatch.nearline.queue`) is applied in order:
  1. appended to the event log (idempotent on ids). The log is opened read-write only for this step and closed
     again, because DuckDB allows one writer per file and `jobmatch run daily` needs it too; a busy log means the
     same delivery is retried later, never dropped;
  2. hirer feedback counts: the delivery's candidate impressions (applicants via their job's project, sourced
     candidates) and ratings go through the daily hiring flow's own `candidate_impressions` and `feed_counts`,
     which count each (candidate, channel[, rating]) once per project;
  3. member activity embeddings: for every member with an APPLY/SAVE/DISMISS in the delivery, the embeddings are
     recomputed from that member's last 32 such actions in the 28 days up to their newest one, read from the log
     (`RealtimeActivity.sequence`). The log is the durable per-member state keyed by event_id: a replayed event
     adds no row to it, so recomputing from it gives the same vectors however often and in whatever order
     events are applied;
  4. only then acknowledged.
Delivery is at least once (a worker killed anywhere before step 4 gets the delivery again on restart) and every
step is idempotent, so each event is applied exactly once in effect.

Rows naming a member, project or job the log does not hold yet cannot be applied to counts or embeddings; they
are still logged, counted as `skipped` in the progress, and picked up by the daily flows once the entity exists.
A dependency that is down (Redis, the store, a busy log) is one log line naming it; the worker retries with
backoff and resumes where it was. Progress (processed counts) is written to `<home>/nearline/progress.json`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.config import Settings
from jobmatch.embed.sequences import ACTION_CODE, SEQ_LEN, Sequences
from jobmatch.events import EventLog
from jobmatch.events.log import LogBusyError, LogError
from jobmatch.flows.activity import WINDOW_DAYS, EmbeddingModels, RealtimeActivity, dataset_name
from jobmatch.flows.hiring import feed_counts, open_counts
from jobmatch.hiring.dataset import candidate_impressions
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.state import ProjectCounts
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.nearline.queue import Delivery, EventQueue, QueueUnavailable, open_queue
from jobmatch.schema import ENTITY_KINDS, KINDS
from jobmatch.store import FeatureStore, StoreError, open_store

# Fault-injection point for the kill test: pause (seconds) after a delivery was applied, before acknowledging it.
PAUSE_BEFORE_ACK_ENV = "JOBMATCH_WORKER_PAUSE_BEFORE_ACK"
MAX_BACKOFF_S = 2.0
PROGRESS_EVERY_S = 5.0
Say = Callable[[str], None]


def activity_models_dir(home: Path) -> Path:
    """Where the activity flow saves its models (`run_activity_embeddings` with the flows' home `home/flows`)."""
    return home / "flows" / "activity" / "models"


def _say_stderr(message: str) -> None:
    stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
    print(f"{stamp} worker: {message}", file=sys.stderr, flush=True)


@dataclass
class Progress:
    batches: int = 0  # deliveries applied and acknowledged
    events: int = 0  # rows in them (every kind)
    appended: int = 0  # rows new to the event log (the rest were there already: replays, or ingested directly)
    kinds: dict[str, int] = field(default_factory=dict)
    impressions_counted: int = 0  # new candidate impressions in the hirer counts
    ratings_counted: int = 0  # new ratings in the hirer counts
    members_embedded: int = 0  # member embedding recomputations written to the store
    skipped: int = 0  # rows whose member, project or job the log does not hold (counts/embeddings not updated)
    rejected: int = 0  # queue entries that could not be decoded (dropped)
    updated_at: float = 0.0


@dataclass
class _Entities:
    """What applying needs from the log's entities, reloaded when the log's entity batches change."""

    seq: dict[str, int]
    projects: pa.Table
    prefs: HirerPreferences
    members: set[int]
    models: EmbeddingModels | None


class Worker:
    def __init__(self, settings: Settings, consumer: str = "worker", batch: int = 5000, block_ms: int = 1000,
                 say: Say | None = None, queue: EventQueue | None = None):
        if batch < 1:
            raise ValueError(f"batch: expected a positive number of entries, got {batch}")
        if block_ms < 0:
            raise ValueError(f"block_ms: expected >= 0, got {block_ms}")
        self.settings, self.consumer, self.batch, self.block_ms = settings, consumer, batch, block_ms
        self.say = say or _say_stderr
        self.queue = queue or open_queue(settings.home, settings.stream)
        self.progress = Progress()
        self.progress_path = settings.home / "nearline" / "progress.json"
        self._store: FeatureStore | None = None
        self._counts: ProjectCounts | None = None
        self._entities: _Entities | None = None
        self._models_missing_said = False

    # -- one delivery ------------------------------------------------------------------------------------------

    def apply(self, delivery: Delivery) -> None:
        """Steps 1-3 of the module docstring; raises QueueUnavailable/StoreError/LogError (or sqlite3's
        OperationalError: a locked counts file) for a dependency that is down or busy, and may then be called again
        with the same delivery."""
        tables = delivery.tables
        with EventLog(self.settings.event_log_path, lock_timeout_s=self.settings.lock_timeout_s) as log:
            appended = sum(log.append(kind, t, source="worker").inserted for kind, t in tables.items())
            entities = self._refresh(log)
            recent = self._recent_actions(log, tables.get("events"), entities.models)
        new_shown, new_rated, skipped = self._apply_counts(tables, entities)
        embedded = self._apply_activity(recent, entities.models)
        p = self.progress
        p.appended += appended
        p.impressions_counted += new_shown
        p.ratings_counted += new_rated
        p.members_embedded += embedded
        p.skipped += skipped + self._unknown_jobs(tables.get("events"), entities.models)

    def _refresh(self, log: EventLog) -> _Entities:
        seq = {k: log.last_seq(k) for k in ENTITY_KINDS}
        if self._entities is not None and self._entities.seq == seq and (
                self._entities.models is not None or not self._models_available()):
            return self._entities
        snap = log.snapshot()
        members, projects = snap.entities("members"), snap.entities("projects")
        prefs = HirerPreferences(ProfileTerms.from_members(members), self._open_counts(),
                                 projects["project_id"].to_pylist())
        models = None
        if self._models_available():
            models = EmbeddingModels.load(activity_models_dir(self.settings.home)).with_jobs(
                snap.entities("jobs"), snap.entities("companies"))
        self._entities = _Entities(seq, projects.select(["project_id", "job_id"]), prefs,
                                   set(members["member_id"].to_pylist()), models)
        return self._entities

    def _models_available(self) -> bool:
        found = (activity_models_dir(self.settings.home) / "aggregators.json").is_file()
        if not found and not self._models_missing_said:
            self._models_missing_said = True
            self.say(f"no activity models at {activity_models_dir(self.settings.home)}: member embeddings are not "
                     "updated until `jobmatch run daily` has trained them")
        return found

    def _open_counts(self) -> ProjectCounts:
        if self._counts is None:
            self._counts = open_counts(self.settings.store_spec)
        return self._counts

    def _open_store(self) -> FeatureStore:
        if self._store is None:
            # create=False: after an outage that emptied the store, fail until a flow republished it
            self._store = open_store(self.settings.store_spec)
        return self._store

    def _apply_counts(self, tables: dict[str, pa.Table], entities: _Entities) -> tuple[int, int, int]:
        if not {"events", "feedback", "hirer_impressions"} & tables.keys():
            return 0, 0, 0
        events = tables.get("events", KINDS["events"].schema.empty_table())
        sourced = tables.get("hirer_impressions", KINDS["hirer_impressions"].schema.empty_table())
        feedback = tables.get("feedback", KINDS["feedback"].schema.empty_table())
        shown = candidate_impressions(events.select(["member_id", "ts", "action", "job_id"]), entities.projects,
                                      sourced)
        projects = pa.array(sorted(entities.prefs.projects or ()), pa.int64())
        members = pa.array(sorted(entities.members), pa.int64())

        def known(t: pa.Table) -> pa.Table:
            return t.filter(pc.and_(pc.is_in(t["project_id"], projects), pc.is_in(t["member_id"], members)))

        shown_ok, feedback_ok = known(shown), known(feedback)
        skipped = shown.num_rows - shown_ok.num_rows + feedback.num_rows - feedback_ok.num_rows
        new_shown, new_rated = feed_counts(entities.prefs, shown_ok, feedback_ok)
        return new_shown, new_rated, skipped

    @staticmethod
    def _recent_actions(log: EventLog, events: pa.Table | None, models: EmbeddingModels | None) -> pa.Table:
        """The last SEQ_LEN APPLY/SAVE/DISMISS actions on known jobs, within the window up to each one's newest,
        of every member with such an action in `events`; columns event_id, member_id, ts, action, job_id."""
        empty = pa.table({"event_id": pa.array([], pa.string()), "member_id": pa.array([], pa.int64()),
                          "ts": pa.array([], KINDS["events"].schema.field("ts").type),
                          "action": pa.array([], pa.string()), "job_id": pa.array([], pa.int64())})
        if events is None or models is None:
            return empty
        acting = events.filter(pc.is_in(events["action"], pa.array(list(ACTION_CODE))))["member_id"]
        if len(acting) == 0:
            return empty
        # the log's connection directly: Snapshot reads whole streams by time, and this needs a few members'
        # rows out of a log of millions (a member-filtered Snapshot read would be the public form of this query)
        con = log._con
        con.register("_touched", pa.table({"member_id": pc.unique(acting)}))
        con.register("_known_jobs", pa.table({"job_id": pa.array(models.job_ids, pa.int64())}))
        actions = ", ".join(f"'{a}'" for a in ACTION_CODE)
        try:
            return con.sql(f"""
                WITH acts AS (SELECT e.event_id, e.member_id, e.ts, e.action, e.job_id FROM events e
                              SEMI JOIN _touched t ON e.member_id = t.member_id
                              SEMI JOIN _known_jobs j ON e.job_id = j.job_id
                              WHERE e.action IN ({actions})),
                     newest AS (SELECT member_id, max(ts) AS mx FROM acts GROUP BY 1)
                SELECT a.event_id, a.member_id, a.ts, a.action, a.job_id FROM acts a JOIN newest n USING (member_id)
                WHERE a.ts >= n.mx + INTERVAL 1 MICROSECOND - INTERVAL {WINDOW_DAYS} DAY
                QUALIFY row_number() OVER (PARTITION BY a.member_id ORDER BY a.ts DESC, a.event_id DESC) <= {SEQ_LEN}
                ORDER BY a.member_id, a.ts, a.event_id""").to_arrow_table().cast(empty.schema)
        finally:
            con.unregister("_touched")
            con.unregister("_known_jobs")

    @staticmethod
    def _unknown_jobs(events: pa.Table | None, models: EmbeddingModels | None) -> int:
        if events is None or models is None:
            return 0
        acts = events.filter(pc.is_in(events["action"], pa.array(list(ACTION_CODE))))
        return acts.num_rows - int(pc.sum(pc.is_in(acts["job_id"], pa.array(models.job_ids, pa.int64()))).as_py()
                                   or 0)

    def _apply_activity(self, recent: pa.Table, models: EmbeddingModels | None) -> int:
        if models is None or recent.num_rows == 0:
            return 0
        realtime = RealtimeActivity(models, window_days=WINDOW_DAYS).load(recent)
        ts = recent["ts"].cast(pa.int64()).to_numpy()
        member = recent["member_id"].to_numpy()
        ends = np.r_[np.flatnonzero(member[1:] != member[:-1]), member.size - 1]
        parts = [realtime.sequence(int(member[e]), int(ts[e]) + 1) for e in ends.tolist()]
        seqs = Sequences(*(np.concatenate([getattr(s, f) for s in parts])
                           for f in ("member_id", "job", "action", "ts")))
        vectors = models.embed(seqs)
        keys = [str(m) for m in seqs.member_id.tolist()]
        store = self._open_store()
        for name, agg in models.aggregators.items():
            store.update(dataset_name(agg), dict(zip(keys, vectors[name])))
        return len(keys)

    # -- the loop ----------------------------------------------------------------------------------------------

    def run(self, once: bool = False, stop: threading.Event | None = None) -> Progress:
        """Read, apply and acknowledge until `stop` is set (or, with `once`, until the queue has nothing left)."""
        stop = stop or threading.Event()
        pending: Delivery | None = None
        applied = False
        down: str | None = None
        backoff = 0.1
        last_report = time.monotonic()
        self.say(f"consuming {self.queue.label} as {self.consumer!r} (batches of {self.batch}); log "
                 f"{self.settings.event_log_path}, store {self.settings.store_spec}")
        while not stop.is_set():
            try:
                if pending is None:
                    pending = self.queue.read(self.consumer, self.batch, self.block_ms)
                if pending.empty:
                    pending = None
                    if down is not None:
                        self.say(f"resumed ({down} is back)")
                        down, backoff = None, 0.1
                    if once:
                        break
                    continue
                if not applied:
                    self.apply(pending)
                    applied = True
                    self._pause_before_ack()
                self.queue.ack(pending)
                self._count(pending)
                pending, applied = None, False
                if down is not None:
                    self.say(f"resumed ({down} is back)")
                    down, backoff = None, 0.1
            except (QueueUnavailable, StoreError, LogError, sqlite3.OperationalError) as e:
                what = (self.queue.label if isinstance(e, QueueUnavailable) else
                        f"the event log {self.settings.event_log_path}" if isinstance(e, LogError) else
                        self.settings.store_spec)
                if down != what:
                    self.say(f"waiting: {e}; retrying with backoff")
                    down = what
                if not isinstance(e, (QueueUnavailable, LogBusyError)):
                    self._reset_store()
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                last_report = time.monotonic()
                self.say(self.summary())
        self.say(self.summary())
        return self.progress

    def _pause_before_ack(self) -> None:
        if pause := os.environ.get(PAUSE_BEFORE_ACK_ENV):
            self.say(f"applied batch {self.progress.batches + 1}, paused before ack")
            time.sleep(float(pause))

    def _count(self, delivery: Delivery) -> None:
        p = self.progress
        p.batches += 1
        p.events += delivery.rows
        for kind, t in delivery.tables.items():
            p.kinds[kind] = p.kinds.get(kind, 0) + t.num_rows
        p.rejected += len(delivery.rejected)
        for entry, reason in delivery.rejected:
            self.say(f"dropped queue entry {entry}: {reason}")
        p.updated_at = time.time()
        self._save_progress()

    def _save_progress(self) -> None:
        # write then rename: a reader (or a kill) never sees a half-written file
        self.progress_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.progress_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self.progress)) + "\n")
        os.replace(tmp, self.progress_path)

    def summary(self) -> str:
        p = self.progress
        return (f"{p.events} events in {p.batches} batches applied ({p.appended} new to the log, "
                f"{p.impressions_counted} impressions and {p.ratings_counted} ratings counted, "
                f"{p.members_embedded} member embeddings, {p.skipped} skipped, {p.rejected} rejected)")

    def _reset_store(self) -> None:
        # a StoreError may come from the store or the counts (both on the store's backend): reopen both
        for handle in (self._store, self._counts):
            if handle is not None:
                try:
                    handle.close()
                except StoreError:
                    pass
        self._store = self._counts = None
        self._entities = None

    def close(self) -> None:
        self._reset_store()
        self.queue.close()


def load_progress(home: Path) -> dict | None:
    """The last progress a worker wrote under `home` (None before its first batch)."""
    path = home / "nearline" / "progress.json"
    return json.loads(path.read_text()) if path.is_file() else None


__all__ = ["PAUSE_BEFORE_ACK_ENV", "Progress", "Worker", "activity_models_dir", "load_progress"]
