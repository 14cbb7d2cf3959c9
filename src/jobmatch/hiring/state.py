"""Per-project feedback counters behind one small interface: in-process, SQLite, and Redis (a hash per project).

A counter is an int64 code (see `online.code`); `add_once` increments a set of counters unless its dedupe field
was seen before in that project, atomically — so counts are idempotent on duplicate events and independent of
the order events arrive in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable

import json
import sqlite3
from pathlib import Path

import numpy as np
import redis


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
    file); each event is one transaction, so several processes can feed and read the same file."""

    _DDL = """
    CREATE TABLE IF NOT EXISTS project_counts (project INTEGER NOT NULL, code INTEGER NOT NULL,
        value INTEGER NOT NULL, PRIMARY KEY (project, code)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS project_seen (project INTEGER NOT NULL, dedupe TEXT NOT NULL,
        PRIMARY KEY (project, dedupe)) WITHOUT ROWID;
    """

    def __init__(self, path: str | Path):
        self._db = sqlite3.connect(Path(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
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


_ADD_ONCE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 0 then return 0 end
for i = 2, #ARGV do redis.call('HINCRBY', KEYS[1], ARGV[i], 1) end
return 1
"""


class RedisProjectCounts(ProjectCounts):
    """`{prefix}:project:{id}` hash: `d:<dedupe>` markers and `<code>` counters; one script call per event."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "jm"):
        self.prefix = prefix
        self._r = redis.Redis.from_url(url)
        self._add = self._r.register_script(_ADD_ONCE)

    def _key(self, project_id: int) -> str:
        return f"{self.prefix}:project:{project_id}"

    def add_once(self, project_id: int, dedupe: str, codes: Iterable[int]) -> bool:
        return bool(self._add(keys=[self._key(project_id)], args=[f"d:{dedupe}", *codes]))

    def add_many(self, items: Iterable[tuple[int, str, Iterable[int]]]) -> int:
        pipe = self._r.pipeline(transaction=False)
        for p, d, codes in items:
            self._add(keys=[self._key(p)], args=[f"d:{d}", *codes], client=pipe)
        return sum(int(x) for x in pipe.execute())

    def lookup(self, project_id: int, codes: np.ndarray) -> np.ndarray:
        if len(codes) == 0:
            return np.zeros(0, np.int64)
        values = self._r.hmget(self._key(project_id), codes.tolist())
        return np.array([int(v) if v is not None else 0 for v in values], np.int64)

    def close(self) -> None:
        self._r.close()
