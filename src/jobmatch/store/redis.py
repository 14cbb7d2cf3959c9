"""Redis FeatureStore (a Venice-like versioned store on plain Redis).

Layout per dataset, with a hash tag so a dataset's keys share a cluster slot:
  `{prefix}:{<dataset>}:meta`  hash: current, previous, last
  `{prefix}:{<dataset>}:v<N>`  hash: key -> encoded value
A push fills a fresh version hash, then one Lua script swaps `current` and drops the version two back; a reader's
Lua script resolves `current` and HMGETs in the same round trip, so it never sees a half-pushed version.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from jobmatch.store.base import FeatureStore, Items, StoreError, check_dataset, encode_items

_PUBLISH = """
local meta = KEYS[1]
local cur = redis.call('HGET', meta, 'current')
local prev = redis.call('HGET', meta, 'previous')
if prev and prev ~= cur then redis.call('UNLINK', ARGV[2] .. prev) end
if cur then redis.call('HSET', meta, 'previous', cur) end
redis.call('HSET', meta, 'current', ARGV[1])
return cur
"""
_GET = """
local v = ARGV[1]
if v == '' then v = redis.call('HGET', KEYS[1], 'current') end
if not v then return {} end
return redis.call('HMGET', ARGV[2] .. v, unpack(ARGV, 3))
"""
_ENSURE_CURRENT = """
local cur = redis.call('HGET', KEYS[1], 'current')
if not cur then
  cur = redis.call('HINCRBY', KEYS[1], 'last', 1)
  redis.call('HSET', KEYS[1], 'current', cur)
end
return cur
"""
_ROLLBACK = """
local cur = redis.call('HGET', KEYS[1], 'current')
local prev = redis.call('HGET', KEYS[1], 'previous')
if not prev then return false end
redis.call('HSET', KEYS[1], 'current', prev, 'previous', cur)
return prev
"""
CHUNK = 5000  # Lua's unpack and single commands stay well within limits


class RedisStore(FeatureStore):
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "jm"):
        self.prefix = prefix
        self._r = redis.Redis.from_url(url)
        self._publish = self._r.register_script(_PUBLISH)
        self._get = self._r.register_script(_GET)
        self._ensure = self._r.register_script(_ENSURE_CURRENT)
        self._rollback = self._r.register_script(_ROLLBACK)

    def close(self) -> None:
        self._r.close()

    def _meta(self, dataset: str) -> str:
        return f"{self.prefix}:{{{check_dataset(dataset)}}}:meta"

    def _vprefix(self, dataset: str) -> str:
        return f"{self.prefix}:{{{dataset}}}:v"

    def push(self, dataset: str, items: Items) -> int:
        meta = self._meta(dataset)
        rows = encode_items(items)
        version = int(self._r.hincrby(meta, "last", 1))
        vkey = self._vprefix(dataset) + str(version)
        # Versions left by a push that died before publishing are never current: drop them now.
        prefix = self._vprefix(dataset)
        keep = {v.decode() for v in self._r.hmget(meta, ["current", "previous"]) if v} | {str(version)}
        for stale in self._r.scan_iter(match=prefix + "*"):
            if stale.decode()[len(prefix):] not in keep:
                self._r.unlink(stale)
        pipe = self._r.pipeline(transaction=False)
        for i in range(0, len(rows), CHUNK):
            pipe.hset(vkey, mapping=dict(rows[i:i + CHUNK]))
        pipe.execute()
        self._publish(keys=[meta], args=[version, self._vprefix(dataset)])
        return version

    def update(self, dataset: str, items: Items) -> None:
        meta = self._meta(dataset)
        rows = encode_items(items)
        current = int(self._ensure(keys=[meta]))
        vkey = self._vprefix(dataset) + str(current)
        for i in range(0, len(rows), CHUNK):
            self._r.hset(vkey, mapping=dict(rows[i:i + CHUNK]))

    def get_raw(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[bytes | None]:
        meta = self._meta(dataset)
        out: list[bytes | None] = []
        for i in range(0, max(len(keys), 1), CHUNK):
            chunk = list(keys[i:i + CHUNK])
            if not chunk:
                break
            got = self._get(keys=[meta], args=["" if version is None else version, self._vprefix(dataset), *chunk])
            out.extend(got if got else [None] * len(chunk))
        return out

    def current_version(self, dataset: str) -> int | None:
        v = self._r.hget(self._meta(dataset), "current")
        return int(v) if v is not None else None

    def versions(self, dataset: str) -> list[int]:
        cur, prev = self._r.hmget(self._meta(dataset), ["current", "previous"])
        return sorted(int(v) for v in (cur, prev) if v is not None)

    def rollback(self, dataset: str) -> int:
        prev = self._rollback(keys=[self._meta(dataset)])
        if not prev:
            raise StoreError(f"dataset {dataset!r} has no previous version to roll back to")
        return int(prev)

    def datasets(self) -> list[str]:
        names = []
        for key in self._r.scan_iter(match=f"{self.prefix}:{{*}}:meta"):
            k = key.decode()
            if self._r.hexists(k, "current"):
                names.append(k[len(self.prefix) + 2:-len("}:meta")])
        return sorted(names)
