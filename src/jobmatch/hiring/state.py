"""Per-project feedback counters behind one small interface: in-process, SQLite, and Redis (a hash per project).

A counter is an int64 code (see `online.code`); `add_once` increments a set of counters unless its dedupe field
was seen before in that project, atomically — so counts are idempotent on duplicate events and independent of
the order events arrive in.

The Redis backend is bound to a generation id (as the feature store is, see `jobmatch.store.base`): once the
server was emptied (a restart without persistence, a flush), every call is a StoreError instead of counting from
zero; the counts must then be rebuilt from the event log by a writer opened with `create=True`.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from jobmatch.store import StoreError
from jobmatch.store.redis import LUA_PRELUDE, RedisConnection


class ProjectCounts(ABC):
    @abstractmethod
    def add_once(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        """Increment `codes` by one unless `dedupe` was already applied to this project; True if applied."""

    @abstractmethod
    def lookup(self, project_id: int, codes: np.ndarray) -> np.ndarray:
        """Current values of `codes` (0 where never incremented)."""

    def add_many(self, items: Iterable[tuple[int, str, Iterable[int]]]) -> int:
        return sum(self.add_once(p, d, c) for p, d, c in items)

    def close(self) -> None:
        """Release connections (nothing to release in-process)."""


class MemoryProjectCounts(ProjectCounts):
    def __init__(self) -> None:
        self._counts: dict[int, defaultdict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._seen: dict[int, set[str]] = defaultdict(set)

    def add_once(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        seen = self._seen[project_id]
        if dedupe in seen:
            return False
        seen.add(dedupe)
        counts = self._counts[project_id]
        for c in codes:
            counts[c] += 1
        return True

    def lookup(self, project_id: int, codes: np.ndarray) -> np.ndarray:
        counts = self._counts.get(project_id)
        if not counts:
            return np.zeros(len(codes), np.int64)
        get = counts.get
        return np.fromiter((get(c, 0) for c in codes.tolist()), np.int64, len(codes))


class SQLiteProjectCounts(ProjectCounts):
    """Embedded and persistent: counters and dedupe markers in SQLite tables (they can share the feature store's
    file); each event is one transaction, so several processes can feed and read the same file. `create=False`
    refuses (StoreError) a file without the tables and creates nothing."""

    _DDL = """
    CREATE TABLE IF NOT EXISTS project_counts (project INTEGER NOT NULL, code INTEGER NOT NULL,
        value INTEGER NOT NULL, PRIMARY KEY (project, code)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS project_seen (project INTEGER NOT NULL, dedupe TEXT NOT NULL,
        PRIMARY KEY (project, dedupe)) WITHOUT ROWID;
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        path = Path(path)
        uri = f"file:{quote(str(path.absolute()))}?mode={'rwc' if create else 'rw'}"
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            if not create and self._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name IN "
                                               "('project_counts', 'project_seen')").fetchone()[0] < 2:
                self._db.close()
                raise StoreError(f"no project counts at sqlite:{path}")
        except sqlite3.Error as e:
            raise StoreError(f"no project counts at sqlite:{path} ({e})") from None
        self._db.execute("PRAGMA synchronous=NORMAL")
        if create:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(self._DDL)

    def _apply(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        if self._db.execute("INSERT OR IGNORE INTO project_seen VALUES (?, ?)", [project_id, dedupe]).rowcount == 0:
            return False
        self._db.executemany("INSERT INTO project_counts VALUES (?, ?, 1) "
                             "ON CONFLICT DO UPDATE SET value = value + 1", ((project_id, c) for c in codes))
        return True

    def add_once(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        return self.add_many([(project_id, dedupe, codes)]) == 1

    def add_many(self, items: Iterable[tuple[int, str, Iterable[int]]]) -> int:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            applied = sum(self._apply(p, d, c) for p, d, c in items)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return applied

    def lookup(self, project_id: int, codes: np.ndarray) -> np.ndarray:
        found = dict(self._db.execute(
            "SELECT code, value FROM project_counts WHERE project = ? AND code IN (SELECT value FROM json_each(?))",
            [project_id, json.dumps(codes.tolist())]).fetchall())
        return np.fromiter((found.get(c, 0) for c in codes.tolist()), np.int64, len(codes))

    def close(self) -> None:
        self._db.close()


_ADD_ONCE = LUA_PRELUDE + """
local key = P .. ARGV[3]
if redis.call('HSETNX', key, ARGV[4], 1) == 0 then return 0 end
for i = 5, #ARGV do redis.call('HINCRBY', key, ARGV[i], 1) end
return 1
"""


class RedisProjectCounts(ProjectCounts):
    """`{prefix}:project:{id}` hash: `d:<dedupe>` markers and `<code>` counters; one script call per event.

    `create=False` refuses a server without `{prefix}:counts:generation` (StoreError) instead of counting from
    zero; processes that only read or add feedback use it, the job that loads the counts uses `create=True`.
    Errors are StoreErrors naming the server; reads time out after `read_timeout_s`."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "jm", *, create: bool = True,
                 connect_timeout_s: float = 0.5, read_timeout_s: float = 0.5, write_timeout_s: float = 5.0):
        self.prefix = prefix
        self._conn = RedisConnection(url, f"{prefix}:counts:generation", create, connect_timeout_s, read_timeout_s,
                                     write_timeout_s, what="project counts")
        self._add = self._conn.writer.register_script(_ADD_ONCE)

    def _args(self, project_id: int, dedupe: str, codes: Iterable[int]) -> list:
        return [f"{self.prefix}:", f"project:{project_id}", f"d:{dedupe}", *codes]

    def add_once(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        return bool(self._conn.run(self._add, self._args(project_id, dedupe, codes), write=True))

    def add_many(self, items: Iterable[tuple[int, str, Iterable[int]]]) -> int:
        with self._conn.errors():
            pipe = self._conn.writer.pipeline(transaction=False)
        for p, d, codes in items:
            self._conn.run(self._add, self._args(p, d, codes), client=pipe)
        with self._conn.errors():
            return sum(int(x) for x in pipe.execute())

    def lookup(self, project_id: int, codes: np.ndarray) -> np.ndarray:
        if len(codes) == 0:
            return np.zeros(0, np.int64)
        self._conn.bound()
        with self._conn.errors():
            # one MULTI/EXEC: the generation and the counters are read atomically
            pipe = self._conn.reader.pipeline(transaction=True)
            pipe.get(self._conn.generation_key)
            pipe.hmget(f"{self.prefix}:project:{project_id}", codes.tolist())
            generation, values = pipe.execute()
        self._conn.check(generation)
        return np.array([int(v) if v is not None else 0 for v in values], np.int64)

    def close(self) -> None:
        self._conn.close()
