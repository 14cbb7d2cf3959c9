"""Embedded FeatureStore: one SQLite file (WAL mode, so readers never wait for a writer).

Every step of the publish protocol (see `jobmatch.store.base`) is one transaction: staging, each chunk of rows,
and the compare-and-set commit with its manifest and clean-up. A read is one read transaction, so it sees one
snapshot. The store's tables are created only when the store is opened with `create=True`; other files opened
with `create=False` are never written to except by write methods.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from jobmatch.store.base import (
    GRACE_S,
    KEEP_MANIFESTS,
    STAGE_TIMEOUT_S,
    FeatureStore,
    Items,
    Manifest,
    StoreError,
    check_dataset,
    encode_items,
    parse_manifest,
)

_TABLES = (
    "CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS datasets (name TEXT PRIMARY KEY, current INTEGER, previous INTEGER, "
     "last INTEGER NOT NULL DEFAULT 0)"),
    # staging = 1 while a writer fills the version; touched = its last write, or when it stopped being current
    ("CREATE TABLE IF NOT EXISTS versions (name TEXT NOT NULL, version INTEGER NOT NULL, staging INTEGER NOT NULL, "
     "touched REAL NOT NULL, PRIMARY KEY (name, version)) WITHOUT ROWID"),
    ("CREATE TABLE IF NOT EXISTS kv (name TEXT NOT NULL, version INTEGER NOT NULL, key TEXT NOT NULL, "
     "value BLOB NOT NULL, PRIMARY KEY (name, version, key)) WITHOUT ROWID"),
    "CREATE TABLE IF NOT EXISTS groups (name TEXT PRIMARY KEY, current INTEGER, last INTEGER NOT NULL DEFAULT 0)",
    ("CREATE TABLE IF NOT EXISTS manifests (grp TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, "
     "published_at REAL NOT NULL, PRIMARY KEY (grp, version)) WITHOUT ROWID"),
)


class SQLiteStore(FeatureStore):
    """`create=False` refuses a missing file or a file without a feature store (StoreError) and creates nothing.
    `timeout_s` is how long a writer waits for another writer's transaction (readers never wait)."""

    write_chunk = 20_000

    def __init__(self, path: str | Path, *, create: bool = True, timeout_s: float = 10.0, grace_s: float = GRACE_S,
                 stage_timeout_s: float = STAGE_TIMEOUT_S, keep_manifests: int = KEEP_MANIFESTS):
        super().__init__(grace_s, stage_timeout_s, keep_manifests)
        self.path = Path(path)
        self.label = f"sqlite:{self.path}"
        if not create and not self.path.is_file():
            raise StoreError(f"no feature store at {self.label} (no such file)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"file:{quote(str(self.path.absolute()))}?mode={'rwc' if create else 'rw'}"
        self._generation: str | None = None  # set once open: every transaction then checks it
        self._lock = threading.RLock()  # threads may share the store; a connection runs one transaction at a time
        with self._errors():
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                       timeout=timeout_s)
            try:
                self._open(create)
            except BaseException:
                self._db.close()
                raise

    def _open(self, create: bool) -> None:
        db = self._db
        # Batch gets are random B-tree reads: memory-mapped pages and a larger cache roughly halve their time.
        db.execute("PRAGMA mmap_size=1073741824")
        db.execute("PRAGMA cache_size=-65536")
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "store_info" not in tables:
            if "datasets" in tables:
                raise StoreError(f"{self.label}: written by an older jobmatch (no store_info table); publish into a "
                                 "new file")
            if not create:
                raise StoreError(f"no feature store at {self.label} (the file has no feature store tables)")
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if create:
            with self._tx():
                for ddl in _TABLES:
                    db.execute(ddl)
                db.execute("INSERT OR IGNORE INTO store_info VALUES ('generation', ?)", [uuid.uuid4().hex])
        self._generation = self._live_generation()
        if self._generation is None:
            raise StoreError(f"no feature store at {self.label} (no generation id)")

    def close(self) -> None:
        self._db.close()

    # -- transactions, errors, generation ---------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise StoreError(f"{self.label}: {e}") from e

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction that checks the generation first; readers take a snapshot, writers the write lock."""
        db = self._db
        with self._lock, self._errors():
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                if self._generation is not None and self._live_generation() != self._generation:
                    raise StoreError(f"{self.label}: the store was emptied or replaced (generation "
                                     f"{self._generation} when first opened, now {self._live_generation()})")
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself after some errors
                    db.execute("ROLLBACK")
                raise

    def _live_generation(self) -> str | None:
        try:
            row = self._db.execute("SELECT value FROM store_info WHERE key = 'generation'").fetchone()
        except sqlite3.OperationalError:  # the table is gone
            return None
        return row[0] if row else None

    def generation(self) -> str | None:
        with self._lock, self._errors():
            return self._live_generation()

    # -- publishing -------------------------------------------------------------------------------------------------

    def _begin(self, group: str | None, datasets: list[str]) -> tuple[int, dict[str, int]]:
        with self._tx() as db:
            now = time.time()
            manifest_version = 0
            if group:
                manifest_version = db.execute("INSERT INTO groups (name, last) VALUES (?, 1) ON CONFLICT(name) DO "
                                              "UPDATE SET last = last + 1 RETURNING last", [group]).fetchone()[0]
            versions = {}
            for name in datasets:
                v = db.execute("INSERT INTO datasets (name, last) VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET "
                               "last = last + 1 RETURNING last", [name]).fetchone()[0]
                db.execute("INSERT INTO versions VALUES (?, ?, 1, ?)", [name, v, now])
                versions[name] = v
        return manifest_version, versions

    def _write(self, dataset: str, version: int, rows: list[tuple[str, bytes]]) -> None:
        with self._tx() as db:
            if db.execute("UPDATE versions SET touched = ? WHERE name = ? AND version = ? AND staging = 1",
                          [time.time(), dataset, version]).rowcount == 0:
                raise StoreError(_abandoned(dataset, version))
            db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)", ((dataset, version, k, v) for k, v in rows))

    def _commit(self, group: str | None, manifest_version: int, versions: dict[str, int], body: str) -> float:
        with self._tx() as db:
            now = time.time()
            for name, v in versions.items():
                if db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ? AND staging = 1",
                              [name, v]).fetchone() is None:
                    raise StoreError(_abandoned(name, v))
            if group:
                newest = db.execute("SELECT current FROM groups WHERE name = ?", [group]).fetchone()[0]
                if newest is not None and newest > manifest_version:
                    raise StoreError(_refused(f"group {group!r}", "manifest", manifest_version, newest))
            for name, v in versions.items():
                current = self._pointers(name)[0]
                if current is not None and current > v:
                    raise StoreError(_refused(f"dataset {name!r}", "version", v, current))
            for name, v in versions.items():
                self._make_current(name, v, now)
                db.execute("UPDATE versions SET staging = 0, touched = ? WHERE name = ? AND version = ?",
                           [now, name, v])
            touched = set(versions)
            if group:
                touched |= self._record_manifest(group, manifest_version, body, now)
            for name in touched:
                self._collect(name, now)
        return now

    def _abort(self, versions: dict[str, int]) -> None:
        with self._tx() as db:
            for name, v in versions.items():
                if db.execute("DELETE FROM versions WHERE name = ? AND version = ? AND staging = 1",
                              [name, v]).rowcount:
                    db.execute("DELETE FROM kv WHERE name = ? AND version = ?", [name, v])

    def _restore(self, group: str, expected: int, body: str) -> tuple[int, float]:
        with self._tx() as db:
            now = time.time()
            newest, last = db.execute("SELECT current, last FROM groups WHERE name = ?", [group]).fetchone()
            if newest != expected:
                raise StoreError(f"group {group!r}: manifest {newest} was published meanwhile; nothing rolled back")
            for name, v in json.loads(body)["datasets"].items():
                if db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ? AND staging = 0",
                              [name, v]).fetchone() is None:
                    raise StoreError(f"group {group!r}: version {v} of {name!r} is no longer kept")
                if self._pointers(name)[0] != v:
                    self._make_current(name, v, now)
            version = last + 1
            db.execute("UPDATE groups SET last = ? WHERE name = ?", [version, group])
            for name in self._record_manifest(group, version, body, now):
                self._collect(name, now)
        return version, now

    def _pointers(self, dataset: str) -> tuple[int | None, int | None]:
        row = self._db.execute("SELECT current, previous FROM datasets WHERE name = ?", [dataset]).fetchone()
        return row if row else (None, None)

    def _make_current(self, dataset: str, version: int, now: float) -> None:
        """The current version becomes the previous one; its grace period starts now."""
        current = self._pointers(dataset)[0]
        self._db.execute("UPDATE datasets SET current = ?, previous = ? WHERE name = ?", [version, current, dataset])
        self._db.execute("UPDATE versions SET touched = ? WHERE name = ? AND version = ?", [now, dataset, current])

    def _record_manifest(self, group: str, version: int, body: str, now: float) -> set[str]:
        """Record the group's new newest manifest and drop the oldest beyond `keep_manifests`; returns the
        datasets whose versions may no longer be referenced."""
        db = self._db
        db.execute("INSERT INTO manifests VALUES (?, ?, ?, ?)", [group, version, body, now])
        db.execute("UPDATE groups SET current = ? WHERE name = ?", [version, group])
        dropped = db.execute("DELETE FROM manifests WHERE grp = ? AND version NOT IN (SELECT version FROM manifests "
                             "WHERE grp = ? ORDER BY version DESC LIMIT ?) RETURNING body",
                             [group, group, self.keep_manifests]).fetchall()
        return {name for (b,) in dropped for name in json.loads(b)["datasets"]} | set(json.loads(body)["datasets"])

    def _collect(self, dataset: str, now: float) -> None:
        """Remove the versions the retention rule no longer keeps (module docstring of `jobmatch.store.base`)."""
        db = self._db
        keep = set(self._pointers(dataset)) | {v for (v,) in db.execute(
            "SELECT DISTINCT j.value FROM manifests AS m, json_each(m.body, '$.datasets') AS j WHERE j.key = ?",
            [dataset])}
        for v, staging, touched in db.execute("SELECT version, staging, touched FROM versions WHERE name = ?",
                                              [dataset]).fetchall():
            if v not in keep and ((staging and now - touched > self.stage_timeout_s)
                                  or (not staging and now - touched >= self.grace_s)):
                db.execute("DELETE FROM versions WHERE name = ? AND version = ?", [dataset, v])
                db.execute("DELETE FROM kv WHERE name = ? AND version = ?", [dataset, v])

    def update(self, dataset: str, items: Items, delete: Sequence[str] = ()) -> None:
        check_dataset(dataset)
        rows = encode_items(items)
        with self._tx() as db:
            current = self._pointers(dataset)[0]
            if current is None:
                current = db.execute("INSERT INTO datasets (name, last) VALUES (?, 1) ON CONFLICT(name) DO UPDATE "
                                     "SET last = last + 1 RETURNING last", [dataset]).fetchone()[0]
                db.execute("UPDATE datasets SET current = ? WHERE name = ?", [current, dataset])
                db.execute("INSERT INTO versions VALUES (?, ?, 0, ?)", [dataset, current, time.time()])
            db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?)", ((dataset, current, k, v) for k, v in rows))
            db.executemany("DELETE FROM kv WHERE name = ? AND version = ? AND key = ?",
                           ((dataset, current, k) for k in delete))

    def rollback(self, dataset: str) -> int:
        with self._tx():
            previous = self._pointers(dataset)[1]
            if previous is None:
                raise StoreError(f"dataset {dataset!r} has no previous version to roll back to")
            self._make_current(dataset, previous, time.time())  # the current version becomes the previous one
        return previous

    # -- reading ----------------------------------------------------------------------------------------------------

    def get_raw(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[bytes | None]:
        keys = list(keys)
        with self._tx(write=False) as db:
            v = version if version is not None else self._pointers(dataset)[0]
            if v is None:
                return [None] * len(keys)
            if version is not None and db.execute("SELECT 1 FROM versions WHERE name = ? AND version = ? AND "
                                                  "staging = 0", [dataset, v]).fetchone() is None:
                raise StoreError(f"dataset {dataset!r} has no version {version} (kept: {self._kept(dataset)})")
            found = dict(db.execute("SELECT key, value FROM kv WHERE name = ? AND version = ? "
                                    "AND key IN (SELECT value FROM json_each(?))",
                                    [dataset, v, json.dumps(keys)]).fetchall())
        return [found.get(k) for k in keys]

    def _kept(self, dataset: str) -> list[int]:
        return [v for (v,) in self._db.execute(
            "SELECT version FROM versions WHERE name = ? AND staging = 0 ORDER BY version", [dataset])]

    def current_version(self, dataset: str) -> int | None:
        with self._tx(write=False):
            return self._pointers(dataset)[0]

    def versions(self, dataset: str) -> list[int]:
        with self._tx(write=False):
            return self._kept(dataset)

    def datasets(self) -> list[str]:
        with self._tx(write=False) as db:
            return [r[0] for r in db.execute("SELECT name FROM datasets WHERE current IS NOT NULL ORDER BY name")]

    def manifests(self, group: str) -> list[Manifest]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT version, body, published_at FROM manifests WHERE grp = ? ORDER BY version",
                              [group]).fetchall()
        return [parse_manifest(group, v, body, t) for v, body, t in rows]

    def groups(self) -> list[str]:
        with self._tx(write=False) as db:
            return [r[0] for r in db.execute("SELECT name FROM groups WHERE current IS NOT NULL ORDER BY name")]


def _abandoned(dataset: str, version: int) -> str:
    return (f"dataset {dataset!r}: staged version {version} was removed: its writer did not write for longer than "
            "the stage timeout (stage_timeout_s)")


def _refused(what: str, kind: str, mine: int, newer: int) -> str:
    return f"{what}: {kind} {mine} was not published: {kind} {newer}, begun later, was published meanwhile"
