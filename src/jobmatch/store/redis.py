"""Redis FeatureStore (a Venice-like versioned store on plain Redis).

Layout, all under one hash tag so that a store lives in one cluster slot and a Lua script may touch any of its keys
(the atomic manifest commit spans datasets; to spread a cluster, use one prefix per group of datasets):
  `{prefix}:generation`       string: the store's generation id (see `jobmatch.store.base`)
  `{prefix}:datasets`/`groups` sets of names
  `{prefix}:ds:<dataset>`     hash: current, previous, last, and per version N: s:N (staging | live),
                              t:N (last write while staging; when it stopped being current once live),
                              r:N (how many kept manifests reference it)
  `{prefix}:d:<generation>:<dataset>:<N>`  hash: key -> encoded value (the generation in the name keeps a
                              writer of an emptied store from writing into the next one's versions)
  `{prefix}:g:<group>`        hash: current, last, m:V (manifest body, JSON), p:V (its publish time)
Every step is one Lua script that first checks the generation the client bound to, so an emptied Redis is an
error, never "no data"; times come from the server's clock. Rows of a staged version go in as plain HSETs, each
in one MULTI/EXEC with a guard script that undoes it unless the version is still staged. Reads use a client with
short timeouts (a down server is a StoreError in well under a second); writes one with a longer read timeout.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

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

READ_CHUNK = 5000  # keys per read script: within Lua's unpack limit (8,000 values)
UPDATE_CHUNK = 2000  # key-value pairs per update script (4,000 values)
WRITE_CHUNK = 5000  # keys per HSET of a staged version (plain HSET: a third of the server time of a script's)
PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_redis_url(url: str) -> str:
    """The URL as errors show it (password hidden); StoreError unless it is redis[s]://HOST[:PORT][/DB] or
    unix://PATH."""
    expected = "expected redis://HOST:PORT/DB, rediss://HOST:PORT/DB or unix:///PATH/TO/SOCKET"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        raise StoreError(f"store spec {url!r}: bad port; {expected}") from None
    ok = (parts.scheme in ("redis", "rediss") and bool(parts.hostname) and re.fullmatch(r"/?\d*", parts.path)) or (
        parts.scheme == "unix" and not parts.netloc and len(parts.path) > 1)
    if not ok:
        raise StoreError(f"store spec {url!r}: {expected}")
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"))


class RedisConnection:
    """One Redis-backed state (a feature store, project counters): a read client with short timeouts (and one
    retry of a dropped connection: reads are idempotent), a write client with a longer read timeout and no
    retries, the generation the state is bound to, and every error as a StoreError naming the server."""

    def __init__(self, url: str, generation_key: str, create: bool, connect_timeout_s: float,
                 read_timeout_s: float, write_timeout_s: float, what: str = "feature store"):
        self.label = check_redis_url(url)
        self.generation_key, self.create, self.what = generation_key, create, what
        self.reader = self._client(url, connect_timeout_s, read_timeout_s, 1)
        self.writer = self._client(url, connect_timeout_s, write_timeout_s, 0)
        self._bound: str | None = None

    @staticmethod
    def _client(url: str, connect_timeout_s: float, timeout_s: float, retries: int) -> redis.Redis:
        return redis.Redis.from_url(url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s,
                                    retry=Retry(NoBackoff(), retries, supported_errors=(redis.ConnectionError,)))

    def close(self) -> None:
        self.reader.close()
        self.writer.close()

    @contextmanager
    def errors(self) -> Iterator[None]:
        try:
            yield
        except redis.ResponseError as e:  # a script's refusal, or the server's (OOM, READONLY, ...)
            message = str(e).split(" of pipeline caused error: ")[-1].split(" script: ")[0]
            raise StoreError(f"{self.label}: {message}") from None
        except redis.TimeoutError as e:
            raise StoreError(f"{self.label}: timed out ({e})") from None
        except redis.ConnectionError as e:
            reason = "connection refused" if "refused" in str(e).lower() else f"connection failed ({e})"
            raise StoreError(f"{self.label}: {reason}") from None
        except redis.RedisError as e:
            raise StoreError(f"{self.label}: {e}") from None

    def bound(self) -> str:
        """The generation this client is bound to: the one it found first (created here if allowed and absent)."""
        if self._bound is None:
            with self.errors():
                if self.create:
                    self.writer.set(self.generation_key, uuid.uuid4().hex, nx=True)
                found = self.reader.get(self.generation_key)
            if found is None:
                raise StoreError(f"no {self.what} at {self.label} ({self.generation_key} is missing: the server "
                                 "is empty or was emptied; a writer creates it with create=True)")
            self._bound = found.decode()
        return self._bound

    def check(self, found: bytes | None) -> None:
        """Raise as the scripts do if `found` (a generation read atomically with other data) is not the bound one."""
        if found is None or found.decode() != self.bound():
            raise StoreError(f"{self.label}: the store was emptied or replaced (generation {self.bound()} when this "
                             f"client first used it, now {found.decode() if found else 'none'})")

    def live(self) -> str | None:
        with self.errors():
            found = self.reader.get(self.generation_key)
        return found.decode() if found is not None else None

    def run(self, script: Script, args: Sequence, write: bool = False, client: redis.client.Pipeline | None = None):
        """Call a script written with `LUA_PRELUDE`: KEYS[1] is the generation key, ARGV[1] the bound id."""
        bound = self.bound()
        with self.errors():
            return script(keys=[self.generation_key], args=[bound, *args],
                          client=client or (self.writer if write else self.reader))


# Helpers every script starts with: keys, the server's clock, the generation check.
LUA_HELPERS = """
local function fail(msg) error({err = msg}) end
local P = ARGV[2]
local function ds_key(name) return P .. 'ds:' .. name end
local function data_key(name, v) return P .. 'd:' .. ARGV[1] .. ':' .. name .. ':' .. v end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function stamp(t) return string.format('%.6f', t) end
local function generation_changed()
  local gen = redis.call('GET', KEYS[1])
  if gen ~= ARGV[1] then
    return 'the store was emptied or replaced (generation ' .. ARGV[1] .. ' when this client first used it, now ' ..
           (gen or 'none') .. ')'
  end
end
local function unstaged(name, v)
  if redis.call('HGET', ds_key(name), 's:' .. v) ~= 'staging' then
    return 'dataset ' .. name .. ': staged version ' .. v .. ' was removed: its writer did not write for longer ' ..
           'than the stage timeout (stage_timeout_s)'
  end
end
"""
# Every script but the write guard: refuse if the generation changed.
LUA_PRELUDE = LUA_HELPERS + """
local changed = generation_changed()
if changed then fail(changed) end
"""

# Retention (module docstring of jobmatch.store.base) and the shared steps of commit and restore.
_LUA_PUBLISHING = """
local function collect(name, now, grace, stage_timeout)
  local ds = ds_key(name)
  local f = {}
  local h = redis.call('HGETALL', ds)
  for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
  for field, state in pairs(f) do
    local v = string.match(field, '^s:(%d+)$')
    if v and v ~= f.current and v ~= f.previous and tonumber(f['r:' .. v] or '0') == 0 then
      local age = now - tonumber(f['t:' .. v])
      if (state == 'staging' and age > stage_timeout) or (state == 'live' and age >= grace) then
        redis.call('UNLINK', data_key(name, v))
        redis.call('HDEL', ds, 's:' .. v, 't:' .. v, 'r:' .. v)
      end
    end
  end
end
local function make_current(name, v, now)
  local ds = ds_key(name)
  local cur = redis.call('HGET', ds, 'current')
  if cur then
    redis.call('HSET', ds, 'previous', cur, 't:' .. cur, stamp(now))
  end
  redis.call('HSET', ds, 'current', v)
end
local function record_manifest(group, version, body, now, keep, touched)
  local gk = P .. 'g:' .. group
  redis.call('HSET', gk, 'current', version, 'm:' .. version, body, 'p:' .. version, stamp(now))
  redis.call('SADD', P .. 'groups', group)
  for name, v in pairs(cjson.decode(body).datasets) do
    redis.call('HINCRBY', ds_key(name), 'r:' .. v, 1)
    touched[name] = true
  end
  local kept = {}
  for _, field in ipairs(redis.call('HKEYS', gk)) do
    local m = string.match(field, '^m:(%d+)$')
    if m then kept[#kept + 1] = tonumber(m) end
  end
  table.sort(kept)
  for i = 1, #kept - keep do
    for name, v in pairs(cjson.decode(redis.call('HGET', gk, 'm:' .. kept[i])).datasets) do
      redis.call('HINCRBY', ds_key(name), 'r:' .. v, -1)
      touched[name] = true
    end
    redis.call('HDEL', gk, 'm:' .. kept[i], 'p:' .. kept[i])
  end
end
"""

_BEGIN = LUA_PRELUDE + """
local now = stamp(clock())
local mv = 0
if ARGV[3] ~= '' then mv = redis.call('HINCRBY', P .. 'g:' .. ARGV[3], 'last', 1) end
local out = {mv}
for i = 4, #ARGV do
  local v = redis.call('HINCRBY', ds_key(ARGV[i]), 'last', 1)
  redis.call('HSET', ds_key(ARGV[i]), 's:' .. v, 'staging', 't:' .. v, now)
  redis.call('SADD', P .. 'datasets', ARGV[i])
  out[#out + 1] = v
end
return out
"""

# Runs in one MULTI/EXEC right after the HSET of a chunk of a staged version: if the version is no longer staged
# (or the store was emptied), undo the HSET and fail; else record the write as the writer's heartbeat.
_WRITE_GUARD = LUA_HELPERS + """
local problem = generation_changed() or unstaged(ARGV[3], ARGV[4])
if problem then
  redis.call('UNLINK', data_key(ARGV[3], ARGV[4]))
  fail(problem)
end
redis.call('HSET', ds_key(ARGV[3]), 't:' .. ARGV[4], stamp(clock()))
return 1
"""

_COMMIT = LUA_PRELUDE + _LUA_PUBLISHING + """
local now = clock()
local grace, stage_timeout, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local group, mv, body = ARGV[6], tonumber(ARGV[7]), ARGV[8]
for i = 9, #ARGV, 2 do
  local problem = unstaged(ARGV[i], ARGV[i + 1])
  if problem then fail(problem) end
end
if group ~= '' then
  local newest = tonumber(redis.call('HGET', P .. 'g:' .. group, 'current') or '0')
  if newest > mv then
    fail('group ' .. group .. ': manifest ' .. mv .. ' was not published: manifest ' .. newest ..
         ', begun later, was published meanwhile')
  end
end
for i = 9, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', ds_key(ARGV[i]), 'current') or '0')
  if cur > tonumber(ARGV[i + 1]) then
    fail('dataset ' .. ARGV[i] .. ': version ' .. ARGV[i + 1] .. ' was not published: version ' .. cur ..
         ', begun later, was published meanwhile')
  end
end
local touched = {}
for i = 9, #ARGV, 2 do
  make_current(ARGV[i], ARGV[i + 1], now)
  redis.call('HSET', ds_key(ARGV[i]), 's:' .. ARGV[i + 1], 'live', 't:' .. ARGV[i + 1], stamp(now))
  touched[ARGV[i]] = true
end
if group ~= '' then record_manifest(group, mv, body, now, keep, touched) end
for name in pairs(touched) do collect(name, now, grace, stage_timeout) end
return stamp(now)
"""

_ABORT = LUA_PRELUDE + """
for i = 3, #ARGV, 2 do
  if redis.call('HGET', ds_key(ARGV[i]), 's:' .. ARGV[i + 1]) == 'staging' then
    redis.call('UNLINK', data_key(ARGV[i], ARGV[i + 1]))
    redis.call('HDEL', ds_key(ARGV[i]), 's:' .. ARGV[i + 1], 't:' .. ARGV[i + 1])
  end
end
return 1
"""

_RESTORE = LUA_PRELUDE + _LUA_PUBLISHING + """
local now = clock()
local grace, stage_timeout, keep = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local group, expected, body = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local gk = P .. 'g:' .. group
local newest = tonumber(redis.call('HGET', gk, 'current') or '0')
if newest ~= expected then
  fail('group ' .. group .. ': manifest ' .. newest .. ' was published meanwhile; nothing rolled back')
end
local datasets = cjson.decode(body).datasets
for name, v in pairs(datasets) do
  if redis.call('HGET', ds_key(name), 's:' .. v) ~= 'live' then
    fail('group ' .. group .. ': version ' .. v .. ' of ' .. name .. ' is no longer kept')
  end
end
for name, v in pairs(datasets) do
  if redis.call('HGET', ds_key(name), 'current') ~= tostring(v) then make_current(name, v, now) end
end
local mv = redis.call('HINCRBY', gk, 'last', 1)
local touched = {}
record_manifest(group, mv, body, now, keep, touched)
for name in pairs(touched) do collect(name, now, grace, stage_timeout) end
return {mv, stamp(now)}
"""

_UPDATE = LUA_PRELUDE + """
local name, v, nset = ARGV[3], ARGV[4], tonumber(ARGV[5])
local ds = ds_key(name)
if v == '' then
  v = redis.call('HGET', ds, 'current')
  if not v then
    v = redis.call('HINCRBY', ds, 'last', 1)
    redis.call('HSET', ds, 'current', v, 's:' .. v, 'live', 't:' .. v, stamp(clock()))
    redis.call('SADD', P .. 'datasets', name)
  end
elseif redis.call('HGET', ds, 's:' .. v) ~= 'live' then
  fail('dataset ' .. name .. ': version ' .. v .. ' was removed while this update was being written')
end
if nset > 0 then redis.call('HSET', data_key(name, v), unpack(ARGV, 6, 5 + 2 * nset)) end
if #ARGV > 5 + 2 * nset then redis.call('HDEL', data_key(name, v), unpack(ARGV, 6 + 2 * nset)) end
return tostring(v)
"""

_ROLLBACK = LUA_PRELUDE + _LUA_PUBLISHING + """
local prev = redis.call('HGET', ds_key(ARGV[3]), 'previous')
if not prev then fail('dataset ' .. ARGV[3] .. ' has no previous version to roll back to') end
make_current(ARGV[3], prev, clock())
return prev
"""

# ARGV[4] = '' reads the current version; a given version must be kept. Returns {version, values} or {} when the
# dataset has no current version.
_GET = LUA_PRELUDE + """
local name, v = ARGV[3], ARGV[4]
if v == '' then
  v = redis.call('HGET', ds_key(name), 'current')
  if not v then return {} end
elseif redis.call('HGET', ds_key(name), 's:' .. v) ~= 'live' then
  fail('dataset ' .. name .. ' has no version ' .. v)
end
return {v, redis.call('HMGET', data_key(name, v), unpack(ARGV, 5))}
"""

_HASH = LUA_PRELUDE + "return redis.call('HGETALL', P .. ARGV[3])"

_NAMES = LUA_PRELUDE + """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', P .. ARGV[3])) do
  if redis.call('HEXISTS', P .. ARGV[4] .. name, 'current') == 1 then out[#out + 1] = name end
end
return out
"""


class RedisStore(FeatureStore):
    """`create=False` makes a Redis without this store's generation key an error instead of a new empty store.
    Timeouts are per socket operation: reads `read_timeout_s`, writes `write_timeout_s`."""

    write_chunk = WRITE_CHUNK

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "jm", *, create: bool = True,
                 connect_timeout_s: float = 0.5, read_timeout_s: float = 0.5, write_timeout_s: float = 30.0,
                 grace_s: float = GRACE_S, stage_timeout_s: float = STAGE_TIMEOUT_S,
                 keep_manifests: int = KEEP_MANIFESTS):
        super().__init__(grace_s, stage_timeout_s, keep_manifests)
        if not PREFIX.match(prefix):
            raise StoreError(f"prefix: expected letters, digits, _ . or -, got {prefix!r}")
        self.prefix = prefix
        self._keys = f"{{{prefix}}}:"
        self._conn = RedisConnection(url, self._keys + "generation", create, connect_timeout_s, read_timeout_s,
                                     write_timeout_s)
        self.label = self._conn.label
        register = self._conn.writer.register_script
        self._begin_script, self._write_guard, self._commit_script = register(_BEGIN), register(
            _WRITE_GUARD), register(_COMMIT)
        self._abort_script, self._restore_script, self._update = register(_ABORT), register(_RESTORE), register(
            _UPDATE)
        self._rollback, self._get, self._hash, self._names = register(_ROLLBACK), register(_GET), register(
            _HASH), register(_NAMES)

    def close(self) -> None:
        self._conn.close()

    def generation(self) -> str | None:
        return self._conn.live()

    def _run(self, script: Script, *args: object, write: bool = False, client=None):
        return self._conn.run(script, [self._keys, *args], write, client)

    def _retention(self) -> list[float]:
        return [self.grace_s, self.stage_timeout_s, self.keep_manifests]

    # -- publishing -------------------------------------------------------------------------------------------------

    def _begin(self, group: str | None, datasets: list[str]) -> tuple[int, dict[str, int]]:
        manifest_version, *versions = self._run(self._begin_script, group or "", *datasets, write=True)
        return int(manifest_version), dict(zip(datasets, map(int, versions)))

    def _write(self, dataset: str, version: int, rows: list[tuple[str, bytes]]) -> None:
        with self._conn.errors():
            tx = self._conn.writer.pipeline(transaction=True)
            tx.hset(f"{self._keys}d:{self._conn.bound()}:{dataset}:{version}", mapping=dict(rows))
        self._run(self._write_guard, dataset, version, client=tx)
        with self._conn.errors():
            tx.execute()

    def _commit(self, group: str | None, manifest_version: int, versions: dict[str, int], body: str) -> float:
        pairs = (x for item in versions.items() for x in item)
        return float(self._run(self._commit_script, *self._retention(), group or "", manifest_version, body, *pairs,
                               write=True))

    def _abort(self, versions: dict[str, int]) -> None:
        self._run(self._abort_script, *(x for item in versions.items() for x in item), write=True)

    def _restore(self, group: str, expected: int, body: str) -> tuple[int, float]:
        version, published_at = self._run(self._restore_script, *self._retention(), group, expected, body, write=True)
        return int(version), float(published_at)

    def update(self, dataset: str, items: Items, delete: Sequence[str] = ()) -> None:
        check_dataset(dataset)
        rows = encode_items(items)
        deletes = list(delete)
        version = ""  # the first call resolves the current version; the rest write to that one
        for i in range(0, max(len(rows), len(deletes), 1), UPDATE_CHUNK):
            sets = rows[i:i + UPDATE_CHUNK]
            version = self._run(self._update, dataset, version, len(sets), *(x for row in sets for x in row),
                                *deletes[i:i + UPDATE_CHUNK], write=True).decode()

    def rollback(self, dataset: str) -> int:
        return int(self._run(self._rollback, check_dataset(dataset), write=True))

    # -- reading ----------------------------------------------------------------------------------------------------

    def get_raw(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[bytes | None]:
        check_dataset(dataset)
        keys = list(keys)
        if not keys:
            return []
        first = self._run(self._get, dataset, "" if version is None else version, *keys[:READ_CHUNK])
        if not first:
            return [None] * len(keys)
        pinned, out = first[0].decode(), list(first[1])
        if len(keys) > READ_CHUNK:
            with self._conn.errors():
                pipe = self._conn.reader.pipeline(transaction=False)
            for i in range(READ_CHUNK, len(keys), READ_CHUNK):
                self._run(self._get, dataset, pinned, *keys[i:i + READ_CHUNK], client=pipe)
            try:
                with self._conn.errors():
                    rest = pipe.execute()
            except StoreError as e:
                raise StoreError(f"{e} (version {pinned} of {dataset!r} was removed while this read was in "
                                 f"progress: it stopped being current more than grace_s = {self.grace_s:g} s ago)"
                                 ) from None
            for got in rest:
                out.extend(got[1])
        return out

    def _fields(self, key: str) -> dict[str, bytes]:
        flat = self._run(self._hash, key)
        return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}

    def current_version(self, dataset: str) -> int | None:
        current = self._fields("ds:" + check_dataset(dataset)).get("current")
        return int(current) if current is not None else None

    def versions(self, dataset: str) -> list[int]:
        fields = self._fields("ds:" + check_dataset(dataset))
        return sorted(int(f[2:]) for f, state in fields.items() if f.startswith("s:") and state == b"live")

    def datasets(self) -> list[str]:
        return sorted(n.decode() for n in self._run(self._names, "datasets", "ds:"))

    def manifests(self, group: str) -> list[Manifest]:
        fields = self._fields("g:" + check_dataset(group, "group"))
        kept = sorted(int(f[2:]) for f in fields if f.startswith("m:"))
        return [parse_manifest(group, v, fields[f"m:{v}"], float(fields[f"p:{v}"])) for v in kept]

    def groups(self) -> list[str]:
        return sorted(n.decode() for n in self._run(self._names, "groups", "g:"))
