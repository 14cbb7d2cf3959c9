"""The embedded event log: a DuckDB file holding events, hirer feedback, entities and sessions.

Every append is one transaction: a batch lands whole or not at all (a process killed mid-append leaves the log
as it was), duplicate ids are ignored (the first copy wins), and late or out-of-order events are accepted.
Each batch gets a sequence number, so sessionization can pick up exactly the events it has not seen.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from jobmatch import schema
from jobmatch.events.documents import render_documents
from jobmatch.events.sessions import DEFAULT_GAP_MINUTES, sessionize

ENTITY_KEYS = {"companies": "company_id", "jobs": "job_id", "members": "member_id", "projects": "project_id"}
# Fault-injection point for the crash-safety test: pause (seconds) after writing a batch, before committing it.
PAUSE_BEFORE_COMMIT_ENV = "JOBMATCH_PAUSE_BEFORE_COMMIT"

_DDL = """
SET TimeZone = 'UTC';
CREATE TABLE IF NOT EXISTS events (event_id VARCHAR NOT NULL, member_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL,
    action VARCHAR NOT NULL, channel VARCHAR NOT NULL, job_id BIGINT, query VARCHAR, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (feedback_id VARCHAR NOT NULL, project_id BIGINT NOT NULL,
    member_id BIGINT NOT NULL, ts TIMESTAMPTZ NOT NULL, channel VARCHAR NOT NULL, feedback VARCHAR NOT NULL,
    seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (seq BIGINT, kind VARCHAR, source VARCHAR, received BIGINT, inserted BIGINT,
    received_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS sessions (member_id BIGINT, session_idx INTEGER, start_ts TIMESTAMPTZ,
    end_ts TIMESTAMPTZ, n_events INTEGER, n_search INTEGER, n_apply INTEGER, apply_after_search BOOLEAN);
CREATE TABLE IF NOT EXISTS state (key VARCHAR PRIMARY KEY, value DOUBLE);
"""


class EventLog:
    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"no event log at {str(self.path)!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path), read_only=read_only)
        if read_only:
            self._con.execute("SET TimeZone = 'UTC'")
        else:
            self._con.execute(_DDL)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------------------
    def append(self, kind: schema.EventKind, rows: pa.Table, source: str = "") -> int:
        """Append a validated batch atomically; returns the number of new (not previously seen) rows."""
        target = schema.SCHEMAS[kind]
        rows = rows.select(target.names).cast(target)
        rows = rows.append_column("_row", pa.array(np.arange(rows.num_rows), pa.int64()))
        id_field = schema.ID_FIELD[kind]
        con = self._con
        con.begin()
        try:
            seq = self._scalar("SELECT coalesce(max(seq), 0) + 1 FROM batches")
            con.register("_batch", rows)
            cols = ", ".join(target.names)
            con.execute(
                f"INSERT INTO {kind} SELECT {cols}, ? FROM _batch b "
                f"WHERE NOT EXISTS (SELECT 1 FROM {kind} x WHERE x.{id_field} = b.{id_field}) "
                f"QUALIFY row_number() OVER (PARTITION BY {id_field} ORDER BY _row) = 1", [seq])
            con.unregister("_batch")
            inserted = self._scalar(f"SELECT count(*) FROM {kind} WHERE seq = ?", [seq])
            con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, now())", [seq, kind, source, rows.num_rows, inserted])
            if pause := os.environ.get(PAUSE_BEFORE_COMMIT_ENV):
                print(f"paused before commit of batch {seq}", file=sys.stderr, flush=True)
                time.sleep(float(pause))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return inserted

    def put_entities(self, name: str, table: pa.Table) -> None:
        """Upsert an entity table (companies, jobs, members, projects) by its id."""
        if name not in ENTITY_KEYS:
            raise ValueError(f"entity table: expected one of {', '.join(ENTITY_KEYS)}, got {name!r}")
        key = ENTITY_KEYS[name]
        con = self._con
        con.begin()
        try:
            con.register("_entities", table)
            con.execute(f"CREATE TABLE IF NOT EXISTS {name} AS SELECT * FROM _entities LIMIT 0")
            con.execute(f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM _entities)")
            con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _entities")
            con.unregister("_entities")
            con.commit()
        except BaseException:
            con.rollback()
            raise

    def _scalar(self, sql: str, params: list[object] | None = None) -> object:
        # fetchall: DuckDB refuses new work on a connection while a result is only partly fetched
        return self._con.execute(sql, params or []).fetchall()[0][0]

    # -- reading -------------------------------------------------------------------------------------------------
    def count(self, kind: str) -> int:
        return self._scalar(f"SELECT count(*) FROM {kind}")

    def table(self, kind: str) -> pa.Table:
        order = {"events": "member_id, ts, event_id", "feedback": "ts, feedback_id",
                 "sessions": "member_id, session_idx"}.get(kind, ENTITY_KEYS.get(kind, "1"))
        t = self._con.sql(f"SELECT * EXCLUDE (seq) FROM {kind} ORDER BY {order}" if kind in schema.SCHEMAS
                              else f"SELECT * FROM {kind} ORDER BY {order}").to_arrow_table()
        return t.cast(schema.SCHEMAS[kind]) if kind in schema.SCHEMAS else t

    def has_table(self, name: str) -> bool:
        return bool(self._scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))

    # -- sessions ------------------------------------------------------------------------------------------------
    def _state(self, key: str, default: float) -> float:
        rows = self._con.execute("SELECT value FROM state WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else default

    def sessionize(self, gap_minutes: float = DEFAULT_GAP_MINUTES) -> int:
        """Bring the sessions table up to date with all ingested events; returns how many sessions were (re)built.

        Only members with new events are touched, and for them only from the first session that a new event
        can join (the open session, or an earlier one when a late event arrives). Changing the gap rebuilds all.
        """
        con = self._con
        gap_us = int(gap_minutes * 60e6)
        con.begin()
        try:
            if self._state("session_gap_us", gap_us) != gap_us:
                con.execute("DELETE FROM sessions; DELETE FROM state WHERE key = 'sessions_seq'")
            done = int(self._state("sessions_seq", 0))
            latest = self._scalar("SELECT coalesce(max(seq), 0) FROM events")
            rebuilt = 0
            if latest > done:
                con.execute(f"""
                    CREATE OR REPLACE TEMP TABLE _reopen AS
                    WITH touched AS (SELECT member_id, min(ts) AS cutoff FROM events WHERE seq > {done} GROUP BY 1)
                    SELECT t.member_id, least(t.cutoff, min(s.start_ts)) AS r,
                           coalesce(max(k.session_idx), -1) AS kept_idx
                    FROM touched t
                    LEFT JOIN sessions s ON s.member_id = t.member_id
                         AND s.end_ts >= t.cutoff - to_microseconds({gap_us})
                    LEFT JOIN sessions k ON k.member_id = t.member_id
                         AND k.end_ts < t.cutoff - to_microseconds({gap_us})
                    GROUP BY t.member_id, t.cutoff""")
                ev = con.sql("""
                    SELECT e.member_id, epoch_us(e.ts) AS ts, e.action FROM events e
                    JOIN _reopen r ON e.member_id = r.member_id AND e.ts >= r.r
                    ORDER BY e.member_id, e.ts, e.event_id""").to_arrow_table()
                member = ev["member_id"].to_numpy()
                action = np.array([schema.ACTION_CODES[a] for a in ev["action"].to_pylist()], np.int8) \
                    if ev.num_rows < 1000 else _codes(ev["action"])
                s = sessionize(member, ev["ts"].to_numpy(), action, gap_us)
                reopen = con.sql("SELECT member_id, kept_idx FROM _reopen ORDER BY member_id").to_arrow_table()
                base = dict(zip(reopen["member_id"].to_pylist(), reopen["kept_idx"].to_pylist()))
                first_of_member = np.r_[True, s.member_id[1:] != s.member_id[:-1]] if len(s) else np.zeros(0, bool)
                starts = np.flatnonzero(first_of_member)
                rank = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
                kept = np.array([base[m] for m in s.member_id[starts].tolist()], np.int64)
                idx = rank + np.repeat(kept, np.diff(np.r_[starts, len(s)])) + 1
                new = pa.table({
                    "member_id": s.member_id, "session_idx": idx.astype(np.int32),
                    "start_ts": pa.array(s.start_us, schema.TS), "end_ts": pa.array(s.end_us, schema.TS),
                    "n_events": s.n_events, "n_search": s.n_search, "n_apply": s.n_apply,
                    "apply_after_search": s.apply_after_search,
                })
                con.execute("DELETE FROM sessions USING _reopen r "
                            "WHERE sessions.member_id = r.member_id AND sessions.start_ts >= r.r")
                con.register("_new_sessions", new)
                con.execute("INSERT INTO sessions SELECT * FROM _new_sessions")
                con.unregister("_new_sessions")
                rebuilt = len(s)
            con.execute("INSERT OR REPLACE INTO state VALUES ('sessions_seq', ?), ('session_gap_us', ?)",
                        [latest, gap_us])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return rebuilt

    def documents(self, member_ids: Sequence[int] | None = None) -> dict[int, list[str]]:
        """Activity documents (002 Figure 2): per member, one text line per session, oldest first."""
        gap_us = int(self._state("session_gap_us", DEFAULT_GAP_MINUTES * 60e6))
        where = ""
        if member_ids is not None:
            self._con.register("_wanted", pa.table({"member_id": pa.array(list(member_ids), pa.int64())}))
            where = "WHERE e.member_id IN (SELECT member_id FROM _wanted)"
        jobs = "LEFT JOIN jobs j ON j.job_id = e.job_id LEFT JOIN companies c ON c.company_id = j.company_id" \
            if self.has_table("jobs") and self.has_table("companies") else \
            "LEFT JOIN (SELECT NULL::BIGINT job_id, NULL title) j ON false LEFT JOIN (SELECT NULL name) c ON false"
        ev = self._con.sql(f"""
            SELECT e.member_id, epoch_us(e.ts) AS ts, e.action, e.query, e.job_id, c.name AS company, j.title
            FROM events e {jobs} {where} ORDER BY e.member_id, e.ts, e.event_id""").to_arrow_table()
        return render_documents(ev, gap_us)


def _codes(actions: pa.ChunkedArray) -> np.ndarray:
    """Action strings -> ACTION_CODES, vectorized through a dictionary encoding."""
    enc = actions.combine_chunks().dictionary_encode()
    lut = np.array([schema.ACTION_CODES[a] for a in enc.dictionary.to_pylist()], np.int8)
    return lut[enc.indices.to_numpy()]
