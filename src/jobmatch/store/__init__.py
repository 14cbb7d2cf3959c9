"""FeatureStore backends behind one interface: embedded SQLite file, Redis (see `jobmatch.store.base`)."""

from jobmatch.store.base import (
    FeatureStore,
    Manifest,
    StoreError,
    Value,
    decode,
    encode,
)
from jobmatch.store.redis import RedisStore
from jobmatch.store.sqlite import SQLiteStore

__all__ = ["FeatureStore", "Manifest", "RedisStore", "SQLiteStore", "StoreError", "Value", "decode", "encode",
           "open_store"]


def open_store(spec: str, create: bool = False, **options: object) -> FeatureStore:
    """`sqlite:PATH` for the embedded store, `redis://HOST:PORT/DB` (or `rediss://…`, `unix:///PATH`) for Redis.

    With `create=False` (readers, inspection) a store that does not exist is a StoreError and nothing is created;
    flows that publish pass `create=True`. `options` go to the backend (timeouts, retention)."""
    if not isinstance(spec, str) or not spec:
        raise StoreError(f"store spec: expected sqlite:PATH or redis://HOST:PORT/DB, got {spec!r}")
    if spec.startswith("sqlite:"):
        path = spec.removeprefix("sqlite:")
        if not path:
            raise StoreError(f"store spec {spec!r}: no path after sqlite:")
        return SQLiteStore(path, create=create, **options)
    if spec.split(":", 1)[0] in ("redis", "rediss", "unix"):
        return RedisStore(spec, create=create, **options)
    if ":" not in spec or "/" in spec.split(":", 1)[0]:
        raise StoreError(f"store spec {spec!r}: write sqlite:{spec} for an embedded store file (or "
                         "redis://HOST:PORT/DB for Redis)")
    raise StoreError(f"store spec {spec!r}: unknown scheme {spec.split(':', 1)[0]!r}; expected sqlite:PATH or "
                     "redis://HOST:PORT/DB")
