"""FeatureStore backends behind one interface: embedded SQLite file, Redis."""

from jobmatch.store.base import FeatureStore, StoreError, Value, decode, encode
from jobmatch.store.redis import RedisStore
from jobmatch.store.sqlite import SQLiteStore

__all__ = ["FeatureStore", "RedisStore", "SQLiteStore", "StoreError", "Value", "decode", "encode", "open_store"]


def open_store(spec: str) -> FeatureStore:
    """`sqlite:PATH` (or a plain path) for the embedded store, `redis://HOST:PORT/DB` for Redis."""
    if spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(spec)
    return SQLiteStore(spec.removeprefix("sqlite:"))
