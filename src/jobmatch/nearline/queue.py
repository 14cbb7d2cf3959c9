"""The nearline event queue: what the API publishes and `jobmatch worker` consumes, on one of two backends.

* embedded (no JOBMATCH_STREAM): an SQLite inbox at `<home>/inbox.sqlite` (WAL, a busy timeout, so the API's
  processes and the worker can share it); the worker's consumer group is a persisted cursor (`seq` of the last
  acknowledged row);
* Redis Streams (`redis://host:port/db`): one stream for every kind (`kind` is a field of each entry), consumed by
  the consumer group `worker` with XREADGROUP/XACK; a restarted consumer first re-reads its own pending entries,
  and entries left pending by a consumer that died are taken over with XAUTOCLAIM once idle long enough.

One entry is one row (so lag counts events, not batches), serialized as JSON with times in microseconds.
Publishing is idempotent on the kind's id field: an id seen in the last `retain_s` seconds (default 7 days) is
counted as a duplicate and not queued again. Past that window a re-sent event is queued again, which is harmless
because the worker's application is idempotent too (the event log, the activity state and the hirer counts all
ignore ids they hold). `publish` returns once the rows are committed (SQLite: synchronous=FULL; Redis: written to
the server, as durable as its persistence settings). Acknowledged entries leave the queue (Redis: XDEL; SQLite:
kept as duplicate markers until `retain_s`), so `lag()` — entries published and not yet acknowledged — is the
stream's length. Every backend failure is a `QueueUnavailable` whose message names the dependency.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from jobmatch.schema import KINDS, STREAM_KINDS
from jobmatch.store import StoreError
from jobmatch.store.redis import check_redis_url

GROUP = "worker"
RETAIN_S = 7 * 86_400.0
SOCKET_TIMEOUT_S = 0.5
BLOCK_SLICE_MS = 250  # a blocking read waits at most this long per round trip, under the 0.5 s socket timeout
PUBLISH_CHUNK = 1000  # rows per publish script (2 + 2 * 1000 arguments)


class QueueUnavailable(Exception):
    """The queue's backend cannot be reached or refused an operation; the message names it."""


@dataclass(frozen=True)
class PublishResult:
    accepted: int
    duplicates: int  # ids already queued (or seen within retain_s), or repeated in the batch


@dataclass
class Delivery:
    """Rows read by a consumer, grouped by kind (each table in the kind's schema, in queue order), and the handle
    `ack` needs. Rows whose payload could not be decoded are in `rejected` (entry id, reason): acknowledging
    them drops them, since no retry can make them valid. (Publishing validates rows, so only a foreign writer
    can put such rows in the queue.)"""

    tables: dict[str, pa.Table]
    handle: object
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())

    @property
    def empty(self) -> bool:
        return not self.tables and not self.rejected


def _wire_schema(kind: str) -> pa.Schema:
    """The kind's schema with times as int64 microseconds (how rows travel as JSON)."""
    schema = KINDS[kind].schema
    return pa.schema([pa.field(f.name, pa.int64(), f.nullable) if pa.types.is_timestamp(f.type) else f
                      for f in schema])


def encode_rows(kind: str, table: pa.Table) -> list[tuple[str, str]]:
    """(id, JSON row) pairs of a batch in the kind's schema; ValueError naming the field on a bad batch."""
    if kind not in STREAM_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(STREAM_KINDS)}, got {kind!r}")
    spec = KINDS[kind]
    missing = [n for n in spec.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{missing[0]}: missing from the {kind} batch (columns: {', '.join(table.column_names)})")
    try:
        wire = table.select(spec.names).cast(spec.schema).cast(_wire_schema(kind))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise ValueError(f"{kind} batch: does not match the {kind} schema ({e})") from None
    ids = wire[spec.id_field].to_pylist()
    if any(i is None for i in ids):
        raise ValueError(f"{spec.id_field}: null id in the {kind} batch")
    return list(zip(ids, (json.dumps(r, separators=(",", ":")) for r in wire.to_pylist())))


def decode_rows(entries: list[tuple[str, str, str]]) -> tuple[dict[str, pa.Table], list[tuple[str, str]]]:
    """(entry id, kind, JSON row) entries -> tables by kind in entry order, and the undecodable entries."""
    by_kind: dict[str, list[dict]] = {}
    rejected = []
    for entry_id, kind, payload in entries:
        if kind not in STREAM_KINDS:
            rejected.append((entry_id, f"kind: unknown kind {kind!r}"))
            continue
        try:
            row = json.loads(payload)
        except ValueError as e:
            rejected.append((entry_id, f"row: not JSON ({e})"))
            continue
        by_kind.setdefault(kind, []).append(row)
    tables = {}
    for kind, rows in by_kind.items():
        try:
            tables[kind] = pa.Table.from_pylist(rows, schema=_wire_schema(kind)).cast(KINDS[kind].schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # one bad row would poison the whole batch forever: decode row by row to isolate it
            good = []
            for row in rows:
                try:
                    pa.Table.from_pylist([row], schema=_wire_schema(kind)).cast(KINDS[kind].schema)
                    good.append(row)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    rejected.append((str(row.get(KINDS[kind].id_field)), f"{kind} row: {e}"))
            if good:
                tables[kind] = pa.Table.from_pylist(good, schema=_wire_schema(kind)).cast(KINDS[kind].schema)
    return tables, rejected


class EventQueue(ABC):
    label: str  # how errors name the dependency

    @abstractmethod
    def publish(self, kind: str, table: pa.Table) -> PublishResult:
        """Queue a validated batch of a stream kind; durable when it returns; idempotent on the kind's id."""

    @abstractmethod
    def lag(self) -> int:
        """Entries published and not yet acknowledged by the worker's consumer group."""

    @abstractmethod
    def read(self, consumer: str, count: int, block_ms: int = 0) -> Delivery:
        """Up to `count` entries for `consumer` of the group (pending ones first); waits up to `block_ms` when
        there is nothing to read. Entries stay pending until `ack`."""

    @abstractmethod
    def ack(self, delivery: Delivery) -> int:
        """Acknowledge a delivery once it has been applied; returns the entries acknowledged."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> EventQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SQLiteQueue(EventQueue):
    """The embedded inbox. One consumer group (`worker`) with one persisted cursor; acknowledging a delivery
    acknowledges every row up to its last one (as a Kafka offset does), so deliveries are acknowledged in order.
    Rows read and not yet acknowledged are delivered again only to a new queue object (a restarted worker). A
    second worker on the same inbox reads the same rows (harmless, application is idempotent, but wasted work),
    so run one embedded worker."""

    _DDL = """
    CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, id TEXT NOT NULL,
        row TEXT NOT NULL, received REAL NOT NULL, UNIQUE (kind, id));
    CREATE TABLE IF NOT EXISTS cursor (grp TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0, retain_s: float = RETAIN_S):
        self.path = Path(path)
        self.label = f"sqlite inbox at {self.path}"
        self.retain_s = retain_s
        self._delivered = 0  # the last row this object delivered: the next read continues after it
        self._lock = threading.RLock()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a published row survives a power cut, not only a crash
            self._db.executescript(self._DDL)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        # one connection, shared by the threads of a server: its transactions must not interleave
        try:
            with self._lock:
                yield
        except (sqlite3.Error, OSError) as e:
            raise QueueUnavailable(f"{self.label}: {e}") from None

    def _cursor(self) -> int:
        row = self._db.execute("SELECT seq FROM cursor WHERE grp = ?", [GROUP]).fetchone()
        return row[0] if row else 0

    def publish(self, kind: str, table: pa.Table) -> PublishResult:
        rows = encode_rows(kind, table)
        now = time.time()
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO inbox (kind, id, row, received) VALUES (?, ?, ?, ?)",
                                     ((kind, i, r, now) for i, r in rows))
                accepted = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return PublishResult(accepted, len(rows) - accepted)

    def lag(self) -> int:
        with self._errors():
            return self._db.execute("SELECT count(*) FROM inbox WHERE seq > (SELECT coalesce(max(seq), 0) FROM "
                                    "cursor WHERE grp = ?)", [GROUP]).fetchone()[0]

    def read(self, consumer: str, count: int, block_ms: int = 0) -> Delivery:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            with self._errors():
                rows = self._db.execute("SELECT seq, kind, row FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                        [max(self._cursor(), self._delivered), count]).fetchall()
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        tables, rejected = decode_rows([(str(s), k, r) for s, k, r in rows])
        if rows:
            self._delivered = rows[-1][0]
        return Delivery(tables, rows[-1][0] if rows else None, rejected)

    def ack(self, delivery: Delivery) -> int:
        if delivery.handle is None:
            return 0
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                done = self._cursor()
                acked = self._db.execute("SELECT count(*) FROM inbox WHERE seq > ? AND seq <= ?",
                                         [done, delivery.handle]).fetchone()[0]
                self._db.execute("INSERT INTO cursor VALUES (?, ?) ON CONFLICT (grp) DO UPDATE "
                                 "SET seq = max(seq, excluded.seq)", [GROUP, delivery.handle])
                # acknowledged rows stay as duplicate markers for retain_s, then go
                self._db.execute("DELETE FROM inbox WHERE seq <= ? AND received < ?",
                                 [delivery.handle, time.time() - self.retain_s])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return acked

    def close(self) -> None:
        self._db.close()


_PUBLISH = """
local accepted = 0
for i = 4, #ARGV, 2 do
  if redis.call('SET', ARGV[3] .. ARGV[i], 1, 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[1], '*', 'kind', ARGV[1], 'row', ARGV[i + 1])
    accepted = accepted + 1
  end
end
return accepted
"""

_ACK = """
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
"""


class RedisQueue(EventQueue):
    """Redis Streams: `{prefix}:stream` (fields kind, row) with the consumer group `worker`, and `{prefix}:seen:
    <kind>:<id>` markers (expiring after retain_s) for idempotent publishing; every key shares one hash tag, so
    the publish script may touch them all in a cluster too. Socket timeouts are 0.5 s, so a down server is a
    QueueUnavailable in well under a second."""

    def __init__(self, url: str, prefix: str = "jm", retain_s: float = RETAIN_S,
                 claim_idle_ms: int = 30_000):
        try:
            check_redis_url(url)
        except StoreError:
            raise ValueError(f"stream: expected redis://HOST:PORT/DB (JOBMATCH_STREAM), got {url!r}") from None
        parts = urlsplit(url)
        where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
        self.label = f"redis at {where}"
        self.stream, self.seen = f"{{{prefix}:q}}:stream", f"{{{prefix}:q}}:seen:"
        self.retain_s, self.claim_idle_ms = int(retain_s), claim_idle_ms
        self._client = redis.Redis.from_url(url, socket_connect_timeout=SOCKET_TIMEOUT_S,
                                            socket_timeout=SOCKET_TIMEOUT_S,
                                            retry=Retry(NoBackoff(), 0, supported_errors=(redis.ConnectionError,)))
        self._publish = self._client.register_script(_PUBLISH)
        self._ack = self._client.register_script(_ACK)
        self._group_ready = False
        self._recovering: set[str] = set()  # consumers that have not yet re-read their own pending entries
        self._started: set[str] = set()
        self._last_claim = 0.0

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except redis.TimeoutError:
            self._group_ready = False
            raise QueueUnavailable(f"{self.label}: timed out after {SOCKET_TIMEOUT_S:g} s") from None
        except redis.ConnectionError as e:
            self._group_ready = False
            reason = "connection refused" if "refused" in str(e).lower() else f"connection failed ({e})"
            raise QueueUnavailable(f"{self.label}: {reason}") from None
        except redis.RedisError as e:
            self._group_ready = False
            raise QueueUnavailable(f"{self.label}: {e}") from None
        except socket.error as e:
            self._group_ready = False
            raise QueueUnavailable(f"{self.label}: {e}") from None

    def _ensure_group(self) -> None:
        # created at 0, so entries published before the first worker started are delivered too; re-checked after
        # every error because a server restarted without persistence has lost it
        if self._group_ready:
            return
        with self._errors():
            try:
                self._client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
        self._group_ready = True

    def publish(self, kind: str, table: pa.Table) -> PublishResult:
        rows = encode_rows(kind, table)
        self._ensure_group()
        accepted = 0
        with self._errors():
            pipe = self._client.pipeline(transaction=False)
            for s in range(0, len(rows), PUBLISH_CHUNK):
                args = [kind, self.retain_s, f"{self.seen}{kind}:"]
                for i, r in rows[s:s + PUBLISH_CHUNK]:
                    args += [i, r]
                self._publish(keys=[self.stream], args=args, client=pipe)
            accepted = sum(int(n) for n in pipe.execute())
        return PublishResult(accepted, len(rows) - accepted)

    def lag(self) -> int:
        with self._errors():
            return int(self._client.xlen(self.stream))

    def read(self, consumer: str, count: int, block_ms: int = 0) -> Delivery:
        self._ensure_group()
        if consumer not in self._started:
            self._started.add(consumer)
            self._recovering.add(consumer)
        with self._errors():
            if consumer in self._recovering:
                # a restarted consumer first gets back what it had read and not acknowledged before it stopped
                got = self._client.xreadgroup(GROUP, consumer, {self.stream: "0"}, count=count)
                entries = got[0][1] if got else []
                if entries:
                    return self._delivery(entries)
                self._recovering.discard(consumer)
            if time.monotonic() - self._last_claim >= self.claim_idle_ms / 1000:
                # entries another consumer read and never acknowledged (it died): take them over
                self._last_claim = time.monotonic()
                claimed = self._client.xautoclaim(self.stream, GROUP, consumer, self.claim_idle_ms, "0-0",
                                                  count=count)
                if claimed[1]:
                    return self._delivery(claimed[1])
            deadline = time.monotonic() + block_ms / 1000
            while True:
                left = int((deadline - time.monotonic()) * 1000)
                got = self._client.xreadgroup(GROUP, consumer, {self.stream: ">"}, count=count,
                                              block=max(1, min(left, BLOCK_SLICE_MS)) if left > 0 else None)
                if got and got[0][1]:
                    return self._delivery(got[0][1])
                if left <= 0:
                    return Delivery({}, [])

    def _delivery(self, entries: list) -> Delivery:
        ids, decoded, rejected = [], [], []
        for entry_id, fields in entries:
            entry_id = entry_id.decode()
            ids.append(entry_id)
            if not fields:  # deleted while pending (acknowledged by another consumer): nothing to apply
                continue
            kind, row = fields.get(b"kind"), fields.get(b"row")
            if kind is None or row is None:
                rejected.append((entry_id, "entry: expected the fields kind and row"))
                continue
            decoded.append((entry_id, kind.decode(), row.decode()))
        tables, bad = decode_rows(decoded)
        return Delivery(tables, ids, rejected + bad)

    def ack(self, delivery: Delivery) -> int:
        ids = delivery.handle or []
        if not ids:
            return 0
        with self._errors():
            return int(self._ack(keys=[self.stream], args=[GROUP, *ids]))

    def close(self) -> None:
        self._client.close()


def open_queue(home: Path, stream: str = "") -> EventQueue:
    """`stream` "" -> the embedded inbox at `home/inbox.sqlite`; `redis://host:port/db` -> Redis Streams."""
    if not stream:
        return SQLiteQueue(Path(home) / "inbox.sqlite")
    if stream.split(":", 1)[0] in ("redis", "rediss", "unix"):
        return RedisQueue(stream)
    raise ValueError(f"stream: expected redis://HOST:PORT/DB, or nothing for the embedded inbox "
                     f"(JOBMATCH_STREAM), got {stream!r}")


__all__ = ["Delivery", "EventQueue", "PublishResult", "QueueUnavailable", "RedisQueue", "SQLiteQueue",
           "open_queue"]
