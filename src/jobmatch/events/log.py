"""The embedded event log: a DuckDB file holding every stream kind, the entities, and sessions.

Writing: every append is one transaction: a batch lands whole or not at all (a process killed mid-append leaves
the log as it was); duplicate ids are ignored (the first copy wins) and a re-sent id whose content differs is
counted as a conflict (and refused with `strict`); late or out-of-order events are accepted. Each batch gets a
sequence number, so sessionization and the daily flows pick up exactly what they have not seen. Entities are
upserted by id.

Reading: `snapshot(as_of)` is the one read interface every flow, evaluation and service uses. It answers as of a
cutoff (exclusive, in microseconds): streams with `ts < as_of`, jobs posted and projects created before it, and
sessions and activity documents from the log's own sessionization of those events (a session that straddles the
cutoff is cut there). Entity profiles are kept in their latest version: the log holds no profile history.

One process may hold the file for writing at a time (DuckDB's rule); a second writer waits up to `lock_timeout_s`
and then fails with `LogBusyError`. DuckDB extension autoloading and external file access are off.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from jobmatch import schema
from jobmatch.events.documents import DEFAULT_CONTENT, MemberDocs, build_documents, check_content
from jobmatch.events.sessions import DEFAULT_GAP_MINUTES, sessionize
from jobmatch.schema import ENTITY_KINDS, KINDS, STREAM_KINDS

# Fault-injection point for the crash-safety test: pause (seconds) after writing a batch, before committing it.
PAUSE_BEFORE_COMMIT_ENV = "JOBMATCH_PAUSE_BEFORE_COMMIT"
ENTITY_KEYS = {k: KINDS[k].id_field for k in ENTITY_KINDS}
_ENTITY_TIME = {"jobs": "posted_at", "projects": "created_at"}
_ORDER = {"events": "member_id, ts, event_id", "feedback": "ts, feedback_id", "impressions": "ts, impression_id",
          "hirer_impressions": "ts, impression_id", "sessions": "member_id, session_idx", **ENTITY_KEYS}
_SAFE_CONFIG = {"autoload_known_extensions": False, "autoinstall_known_extensions": False,
                "enable_external_access": False}


class LogError(RuntimeError):
    """The event log cannot be opened or used (one line, naming the file)."""


class LogBusyError(LogError):
    pass


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    return {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER", pa.int8(): "TINYINT",
            pa.bool_(): "BOOLEAN"}[t]


def _ddl() -> str:
    tables = []
    for kind, spec in KINDS.items():
        cols = ", ".join(f"{f.name} {_sql_type(f.type)}" + ("" if f.nullable else " NOT NULL") for f in spec.schema)
        tables.append(f"CREATE TABLE IF NOT EXISTS {kind} ({cols}, seq BIGINT NOT NULL);")
    return "SET TimeZone = 'UTC';\n" + "\n".join(tables) + """
CREATE TABLE IF NOT EXISTS batches (seq BIGINT, kind VARCHAR, source VARCHAR, received BIGINT, inserted BIGINT,
    received_at TIMESTAMPTZ, duplicates BIGINT DEFAULT 0, conflicts BIGINT DEFAULT 0);
CREATE TABLE IF NOT EXISTS sessions (member_id BIGINT, session_idx INTEGER, start_ts TIMESTAMPTZ,
    end_ts TIMESTAMPTZ, n_events INTEGER, n_search INTEGER, n_apply INTEGER, apply_after_search BOOLEAN);
CREATE TABLE IF NOT EXISTS state (key VARCHAR PRIMARY KEY, value DOUBLE);
"""


@dataclass(frozen=True)
class AppendResult:
    inserted: int
    duplicates: int  # ids already present (or repeated in the batch) with the same content: ignored
    conflicts: list[str]  # ids already present (or repeated in the batch) with different content: ignored, reported


class EventLog:
    def __init__(self, path: str | Path, read_only: bool = False, lock_timeout_s: float = 10.0):
        self.path = Path(path)
        if read_only and not self.path.is_file():
            raise LogError(f"no event log at {str(self.path)!r}")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + lock_timeout_s
        while True:
            try:
                self._con = duckdb.connect(str(self.path), read_only=read_only, config=_SAFE_CONFIG)
                break
            except duckdb.IOException as e:
                text = str(e)
                if "lock" in text.lower() and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if "lock" in text.lower():
                    raise LogBusyError(f"event log {str(self.path)!r} is in use by another process (waited "
                                       f"{lock_timeout_s:g} s); try again when it has finished") from None
                raise LogError(f"{str(self.path)!r} is not a jobmatch event log ({text.splitlines()[0][:120]})"
                               ) from None
            except duckdb.Error as e:
                raise LogError(f"{str(self.path)!r} is not a jobmatch event log ({str(e).splitlines()[0][:120]})"
                               ) from None
        self.read_only = read_only
        if read_only:
            self._con.execute("SET TimeZone = 'UTC'")
            if not self.has_table("events"):
                self._con.close()
                raise LogError(f"{str(self.path)!r} is not a jobmatch event log (no events table)")
        else:
            self._con.execute(_ddl())

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------------------------
    def append(self, kind: str, rows: pa.Table, source: str = "", strict: bool = False) -> AppendResult:
        """Append a validated batch of a stream kind atomically.

        With `strict`, a batch holding any conflicting id (already stored, or repeated in the batch, with other
        content) is refused whole: `ConflictError` lists them and nothing changes."""
        if kind not in STREAM_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(STREAM_KINDS)}, got {kind!r}")
        spec = KINDS[kind]
        target = spec.schema
        rows = rows.select(target.names).cast(target)
        rows = rows.append_column("_row", pa.array(np.arange(rows.num_rows), pa.int64()))
        id_field, cols = spec.id_field, ", ".join(target.names)
        same = " AND ".join(f"x.{c} IS NOT DISTINCT FROM b.{c}" for c in target.names if c != id_field)
        con = self._con
        con.begin()
        try:
            seq = self._scalar("SELECT coalesce(max(seq), 0) + 1 FROM batches")
            con.register("_batch", rows)
            # conflicts: a stored row, or an earlier row of this batch, with the same id and other content
            conflicts = [r[0] for r in con.execute(f"""
                SELECT DISTINCT b.{id_field} FROM _batch b JOIN {kind} x ON x.{id_field} = b.{id_field}
                WHERE NOT ({same})
                UNION
                SELECT DISTINCT b.{id_field} FROM _batch b JOIN _batch x
                    ON x.{id_field} = b.{id_field} AND x._row < b._row WHERE NOT ({same})
                ORDER BY 1""").fetchall()]
            if strict and conflicts:
                raise ConflictError(kind, conflicts)
            con.execute(
                f"INSERT INTO {kind} SELECT {cols}, ? FROM _batch b "
                f"WHERE NOT EXISTS (SELECT 1 FROM {kind} x WHERE x.{id_field} = b.{id_field}) "
                f"QUALIFY row_number() OVER (PARTITION BY {id_field} ORDER BY _row) = 1", [seq])
            con.unregister("_batch")
            inserted = self._scalar(f"SELECT count(*) FROM {kind} WHERE seq = ?", [seq])
            con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, now(), ?, ?)",
                        [seq, kind, source, rows.num_rows, inserted, rows.num_rows - inserted - len(conflicts),
                         len(conflicts)])
            if pause := os.environ.get(PAUSE_BEFORE_COMMIT_ENV):
                print(f"paused before commit of batch {seq}", file=sys.stderr, flush=True)
                time.sleep(float(pause))
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return AppendResult(inserted, rows.num_rows - inserted - len(conflicts), conflicts)

    def put_entities(self, kind: str, table: pa.Table, source: str = "") -> int:
        """Upsert a validated entity batch (ids unique within it) by id; returns the rows written."""
        if kind not in ENTITY_KINDS:
            raise ValueError(f"entity kind: expected one of {', '.join(ENTITY_KINDS)}, got {kind!r}")
        spec = KINDS[kind]
        table = table.select(spec.names).cast(spec.schema)
        key = spec.id_field
        if table.num_rows != len(set(table[key].to_pylist())):
            raise ValueError(f"{key}: duplicate ids in one entity batch")
        con = self._con
        con.begin()
        try:
            seq = self._scalar("SELECT coalesce(max(seq), 0) + 1 FROM batches")
            con.register("_entities", table)
            con.execute(f"DELETE FROM {kind} WHERE {key} IN (SELECT {key} FROM _entities)")
            con.execute(f"INSERT INTO {kind} SELECT {', '.join(spec.names)}, ? FROM _entities", [seq])
            con.unregister("_entities")
            con.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, now(), 0, 0)",
                        [seq, kind, source, table.num_rows, table.num_rows])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        return table.num_rows

    def _scalar(self, sql: str, params: list[object] | None = None) -> object:
        # fetchall: DuckDB refuses new work on a connection while a result is only partly fetched
        return self._con.execute(sql, params or []).fetchall()[0][0]

    # -- reading -------------------------------------------------------------------------------------------------
    def count(self, kind: str) -> int:
        return self._scalar(f"SELECT count(*) FROM {_known(kind)}")

    def table(self, kind: str) -> pa.Table:
        """A whole table (every row ever ingested), in the kind's schema."""
        _known(kind)
        if kind in KINDS:
            t = self._con.sql(f"SELECT * EXCLUDE (seq) FROM {kind} ORDER BY {_ORDER[kind]}").to_arrow_table()
            return t.cast(KINDS[kind].schema)
        return self._con.sql(f"SELECT * FROM {kind} ORDER BY {_ORDER.get(kind, '1')}").to_arrow_table()

    def has_table(self, name: str) -> bool:
        return bool(self._scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))

    def last_seq(self, kind: str | None = None) -> int:
        where = "" if kind is None else f"WHERE kind = '{_known(kind)}'"
        return int(self._scalar(f"SELECT coalesce(max(seq), 0) FROM batches {where}"))

    def time_range(self) -> tuple[int, int] | None:
        """(first, last) event time in microseconds, None for an empty log."""
        lo, hi = self._con.execute("SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM events").fetchall()[0]
        return None if lo is None else (int(lo), int(hi))

    def snapshot(self, as_of_us: int | None = None) -> Snapshot:
        return Snapshot(self, as_of_us)

    @property
    def gap_us(self) -> int:
        return int(self._state("session_gap_us", DEFAULT_GAP_MINUTES * 60e6))

    # -- sessions ------------------------------------------------------------------------------------------------
    def _state(self, key: str, default: float) -> float:
        rows = self._con.execute("SELECT value FROM state WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else default

    def sessionize(self, gap_minutes: float = DEFAULT_GAP_MINUTES) -> int:
        """Bring the sessions table up to date with all ingested events; returns how many sessions were (re)built.

        Only members with new events are touched, and for them only from the first session that a new event
        can join (the open session, or an earlier one when a late event arrives). Changing the gap rebuilds all.
        """
        if not gap_minutes > 0:
            raise ValueError(f"gap_minutes: must be a positive number of minutes, got {gap_minutes!r}")
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
                s = sessionize(ev["member_id"].to_numpy(), ev["ts"].to_numpy(), action_codes(ev["action"]), gap_us)
                reopen = con.sql("SELECT member_id, kept_idx FROM _reopen ORDER BY member_id").to_arrow_table()
                base = dict(zip(reopen["member_id"].to_pylist(), reopen["kept_idx"].to_pylist()))
                first_of_member = np.r_[True, s.member_id[1:] != s.member_id[:-1]] if len(s) else np.zeros(0, bool)
                starts = np.flatnonzero(first_of_member)
                rank = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
                kept = np.array([base[m] for m in s.member_id[starts].tolist()], np.int64)
                idx = rank + np.repeat(kept, np.diff(np.r_[starts, len(s)])) + 1
                new = _sessions_table(s, idx)
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
        """Activity documents (002 Figure 2) of the whole log: per member, one text line per session."""
        return {d.member_id: d.sessions for d in self.snapshot().documents(member_ids)}


class ConflictError(ValueError):
    def __init__(self, kind: str, ids: list[str]):
        self.kind, self.ids = kind, ids
        shown = ", ".join(map(repr, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        super().__init__(f"{len(ids)} {kind} id(s) were sent before with different content: {shown}; "
                         "nothing was ingested (--strict)")


def _known(kind: str) -> str:
    if kind not in KINDS and kind not in ("sessions", "batches", "state"):
        raise ValueError(f"table: expected one of {', '.join([*KINDS, 'sessions', 'batches'])}, got {kind!r}")
    return kind


def action_codes(actions: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Action strings -> ACTION_CODES, vectorized through a dictionary encoding."""
    arr = actions.combine_chunks() if isinstance(actions, pa.ChunkedArray) else actions
    if len(arr) == 0:
        return np.zeros(0, np.int8)
    enc = arr.dictionary_encode()
    lut = np.array([schema.ACTION_CODES[a] for a in enc.dictionary.to_pylist()], np.int8)
    return lut[enc.indices.to_numpy()]


def _sessions_table(s, idx: np.ndarray) -> pa.Table:
    return pa.table({
        "member_id": s.member_id, "session_idx": idx.astype(np.int32),
        "start_ts": pa.array(s.start_us, schema.TS), "end_ts": pa.array(s.end_us, schema.TS),
        "n_events": s.n_events, "n_search": s.n_search, "n_apply": s.n_apply,
        "apply_after_search": s.apply_after_search,
    })


class Snapshot:
    """The log as of a cutoff (exclusive, microseconds; None = everything). Every read names its columns' rows
    before the cutoff only, so a flow or an evaluation cannot see the future by accident."""

    def __init__(self, log: EventLog, as_of_us: int | None):
        self.log, self.as_of_us = log, as_of_us
        self._con = log._con

    def _where(self, column: str = "ts", since_us: int | None = None) -> str:
        parts = []
        if self.as_of_us is not None:
            parts.append(f"{column} < make_timestamptz({int(self.as_of_us)}::BIGINT)")
        if since_us is not None:
            parts.append(f"{column} >= make_timestamptz({int(since_us)}::BIGINT)")
        return ("WHERE " + " AND ".join(parts)) if parts else ""

    def stream(self, kind: str, columns: Sequence[str] | None = None, since_us: int | None = None) -> pa.Table:
        if kind not in STREAM_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(STREAM_KINDS)}, got {kind!r}")
        spec = KINDS[kind]
        cols = list(columns) if columns is not None else spec.names
        t = self._con.sql(f"SELECT {', '.join(cols)} FROM {kind} {self._where(since_us=since_us)} "
                          f"ORDER BY {_ORDER[kind]}").to_arrow_table()
        return t.cast(pa.schema([spec.schema.field(c) for c in cols]))

    def events(self, columns: Sequence[str] | None = None, since_us: int | None = None) -> pa.Table:
        """Seeker events before the cutoff, sorted by (member, ts, event_id)."""
        return self.stream("events", columns, since_us)

    def feedback(self, columns: Sequence[str] | None = None, since_us: int | None = None) -> pa.Table:
        return self.stream("feedback", columns, since_us)

    def impressions(self, columns: Sequence[str] | None = None, since_us: int | None = None) -> pa.Table:
        return self.stream("impressions", columns, since_us)

    def hirer_impressions(self, columns: Sequence[str] | None = None, since_us: int | None = None) -> pa.Table:
        return self.stream("hirer_impressions", columns, since_us)

    def entities(self, kind: str) -> pa.Table:
        """Companies and members as they stand; jobs posted and projects created before the cutoff."""
        if kind not in ENTITY_KINDS:
            raise ValueError(f"entity kind: expected one of {', '.join(ENTITY_KINDS)}, got {kind!r}")
        where = self._where(_ENTITY_TIME[kind]) if kind in _ENTITY_TIME else ""
        t = self._con.sql(f"SELECT {', '.join(KINDS[kind].names)} FROM {kind} {where} "
                          f"ORDER BY {ENTITY_KEYS[kind]}").to_arrow_table()
        return t.cast(KINDS[kind].schema)

    def time_range(self) -> tuple[int, int] | None:
        lo, hi = self._con.execute(f"SELECT epoch_us(min(ts)), epoch_us(max(ts)) FROM events {self._where()}"
                                   ).fetchall()[0]
        return None if lo is None else (int(lo), int(hi))

    def members_with_events(self, since_us: int | None = None, until_us: int | None = None) -> np.ndarray:
        parts = [self._where(since_us=since_us).removeprefix("WHERE ")]
        if until_us is not None:
            parts.append(f"ts < make_timestamptz({int(until_us)}::BIGINT)")
        where = " AND ".join(p for p in parts if p)
        rows = self._con.sql(f"SELECT DISTINCT member_id FROM events {'WHERE ' + where if where else ''} "
                             "ORDER BY 1").to_arrow_table()
        return rows["member_id"].to_numpy()

    def sessions(self) -> pa.Table:
        """Sessions of the events before the cutoff (the log's gap), as in the sessions table."""
        ev = self.events(["member_id", "ts", "action"])
        s = sessionize(ev["member_id"].to_numpy(), ev["ts"].cast(pa.int64()).to_numpy(),
                       action_codes(ev["action"]), self.log.gap_us)
        first = np.r_[True, s.member_id[1:] != s.member_id[:-1]] if len(s) else np.zeros(0, bool)
        starts = np.flatnonzero(first)
        idx = np.arange(len(s)) - np.repeat(starts, np.diff(np.r_[starts, len(s)]))
        return _sessions_table(s, idx)

    def documents(self, member_ids: Sequence[int] | None = None, content: str = DEFAULT_CONTENT) -> list[MemberDocs]:
        """Activity documents (002 Figure 2) with each session's entities, from the log's sessionization;
        `content` says how much of each job they carry (events.documents.DOCUMENT_CONTENT)."""
        check_content(content)
        skills = ", j.skills" if content.endswith("skills") else ""
        where = self._where("e.ts")
        if member_ids is not None:
            self._con.register("_wanted", pa.table({"member_id": pa.array(list(member_ids), pa.int64())}))
            where += (" AND " if where else "WHERE ") + "e.member_id IN (SELECT member_id FROM _wanted)"
        ev = self._con.sql(f"""
            SELECT e.member_id, epoch_us(e.ts) AS ts, e.action, e.query, e.job_id, c.name AS company, j.title{skills}
            FROM events e LEFT JOIN jobs j ON j.job_id = e.job_id LEFT JOIN companies c ON c.company_id = j.company_id
            {where} ORDER BY e.member_id, e.ts, e.event_id""").to_arrow_table()
        return build_documents(ev, self.log.gap_us, content)

    def impression_outcomes(self, window_s: float = 3600.0) -> pa.Table:
        """Seeker impressions before the cutoff with what the seeker then did: each VIEW/SAVE/APPLY/DISMISS is
        attributed to the latest impression of the same job to the same member at or before it (within
        `window_s`), and only actions before the cutoff count. Columns: the impression's, plus boolean
        viewed, saved, applied, dismissed."""
        cutoff = self._where("a.ts")
        imp_where = self._where("ts")
        t = self._con.sql(f"""
            WITH imp AS (SELECT impression_id, member_id, job_id, ts FROM impressions {imp_where}),
            acts AS (SELECT member_id, job_id, ts, action FROM events a {cutoff}
                     {'AND' if cutoff else 'WHERE'} action <> 'SEARCH'),
            hit AS (SELECT i.impression_id, a.action FROM acts a ASOF JOIN imp i
                    ON a.member_id = i.member_id AND a.job_id = i.job_id AND a.ts >= i.ts
                    WHERE a.ts - i.ts <= to_microseconds({int(window_s * 1e6)})),
            flags AS (SELECT impression_id, bool_or(action = 'VIEW') AS viewed, bool_or(action = 'SAVE') AS saved,
                             bool_or(action = 'APPLY') AS applied, bool_or(action = 'DISMISS') AS dismissed
                      FROM hit GROUP BY impression_id)
            SELECT i.*, coalesce(f.viewed, false) AS viewed, coalesce(f.saved, false) AS saved,
                   coalesce(f.applied, false) AS applied, coalesce(f.dismissed, false) AS dismissed
            FROM impressions i LEFT JOIN flags f USING (impression_id)
            {self._where('i.ts')} ORDER BY i.ts, i.impression_id""").to_arrow_table()
        return t.drop_columns(["seq"])


__all__ = ["AppendResult", "ConflictError", "ENTITY_KEYS", "EventLog", "LogBusyError", "LogError", "Snapshot",
           "action_codes"]
