"""API keys: random tokens, stored only as their SHA-256, with one scope each (a hirer key bound to one company).

A key reads `jm_<key id>_<secret>`: the key id (public, 8 hex digits) finds the row, and the SHA-256 of the whole
token is compared with the stored one in constant time (`hmac.compare_digest`), so neither the database nor a
timing difference gives the token away. The table lives in HOME/keys.sqlite (WAL, so `jobmatch keys revoke` works
while the server runs); the server re-reads a key at most every `cache_s` seconds, so a revocation takes effect
within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cachetools import TTLCache

SCOPES = ("events:write", "seeker:read", "hirer", "admin")
_DDL = """CREATE TABLE IF NOT EXISTS api_keys (key_id TEXT PRIMARY KEY, sha256 BLOB NOT NULL, scope TEXT NOT NULL,
    company_id INTEGER, label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL, revoked_at REAL)"""
_DUMMY = hashlib.sha256(b"no such key").digest()


class KeyProblem(ValueError):
    """A key that cannot be created or revoked as asked (the message names the field and the value)."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scope: str
    company_id: int | None
    label: str
    created_at: float
    revoked_at: float | None

    def as_dict(self) -> dict:
        return {"key_id": self.key_id, "scope": self.scope, "company_id": self.company_id, "label": self.label,
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class KeyStore:
    def __init__(self, path: str | Path, cache_s: float = 5.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_DDL)
        self._lock = threading.Lock()
        self._cache: TTLCache = TTLCache(maxsize=10_000, ttl=cache_s)

    def close(self) -> None:
        self._db.close()

    def create(self, scope: str, company_id: int | None = None, label: str = "") -> tuple[str, ApiKey]:
        """A new key; returns (the token, shown once and never stored, its record)."""
        if scope not in SCOPES:
            raise KeyProblem(f"scope: expected one of {', '.join(SCOPES)}, got {scope!r}")
        if scope == "hirer" and company_id is None:
            raise KeyProblem("company: a hirer key is bound to one company; pass --company ID")
        if scope != "hirer" and company_id is not None:
            raise KeyProblem(f"company: only hirer keys are bound to a company, got --company {company_id} with "
                            f"scope {scope!r}")
        key_id = secrets.token_hex(4)
        token = f"jm_{key_id}_{secrets.token_urlsafe(32)}"
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (key_id, _digest(token), scope, company_id, label, now))
        return token, ApiKey(key_id, scope, company_id, label, now, None)

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute("SELECT key_id, scope, company_id, label, created_at, revoked_at FROM api_keys "
                                    "ORDER BY created_at").fetchall()
        return [ApiKey(*r) for r in rows]

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            changed = self._db.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                                       (time.time(), key_id)).rowcount
        found = [k for k in self.list() if k.key_id == key_id]
        if not found:
            raise KeyProblem(f"key_id: no key {key_id!r} (see `jobmatch keys list`)")
        if not changed:
            raise KeyProblem(f"key_id: key {key_id!r} was already revoked")
        self._cache.clear()
        return found[0]

    def verify(self, token: str) -> ApiKey | None:
        """The live key this token is, or None (unknown, malformed, wrong secret, revoked)."""
        parts = token.split("_", 2)
        key_id = parts[1] if len(parts) == 3 and parts[0] == "jm" else ""
        row = self._row(key_id) if key_id else None
        # compare even when the id is unknown, so the time taken does not say whether a key id exists
        ok = hmac.compare_digest(_digest(token), row[0] if row else _DUMMY)
        if not ok or row is None or row[1].revoked_at is not None:
            return None
        return row[1]

    def _row(self, key_id: str) -> tuple[bytes, ApiKey] | None:
        try:
            return self._cache[key_id]
        except KeyError:
            pass
        with self._lock:
            r = self._db.execute("SELECT sha256, key_id, scope, company_id, label, created_at, revoked_at "
                                 "FROM api_keys WHERE key_id = ?", (key_id,)).fetchone()
        row = None if r is None else (bytes(r[0]), ApiKey(*r[1:]))
        self._cache[key_id] = row
        return row
