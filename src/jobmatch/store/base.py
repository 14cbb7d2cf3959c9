"""The FeatureStore interface, its publish protocol, and the value codec its backends share.

A dataset (e.g. `activity_embedding/mean`) has numbered versions; one of them is *current*. Values are 1-D float32
vectors or small JSON records (dict, list, str, number, bool).

Publishing (`push` for one dataset, `publish` for several datasets as one *manifest* of a group):
  1. stage: each dataset gets a new version number, in the order the calls began; a staged version is invisible;
  2. write: items are encoded and written chunk by chunk (a bad value aborts the publish; nothing becomes visible);
  3. commit, ONE atomic step (a Lua script / a SQLite transaction): compare-and-set — a version becomes current only
     if it is newer than the current one (and a manifest only if no newer manifest of its group was committed),
     otherwise the publish is refused with `StoreError` and the newer data stays current; then every dataset's
     current version and the group's manifest `{group, version, datasets: {name: version}, meta, published_at}`
     change together. `rollback_group` records a new manifest that restores the previous one's versions, atomically.
`update` is the nearline path: it sets or deletes keys of the current version. Reads resolve the version once and
read every key of that version (`get` never mixes versions, however many internal chunks it takes); a reader that
wants several datasets of one model reads `manifest(group)` and passes each dataset's version.

Retention — a version is kept while any of these holds:
  * it is the current or the previous version of its dataset (`rollback` swaps the two);
  * a kept manifest references it (each group keeps its last `keep_manifests` manifests, newest last);
  * it stopped being current less than `grace_s` seconds ago (default 10 minutes), so a reader that resolved it
    just before a publish can finish; a read slower than that gets a StoreError, never another version's values;
  * it is staged and its writer wrote to it less than `stage_timeout_s` seconds ago (default 10 minutes); a staged
    version whose writer died is removed after that, and a writer that stalled longer has its publish refused.
Versions are removed by later commits that touch their dataset (`push`, `publish`, `rollback_group`).

Every store has a *generation* id, created with it: an emptied store (a Redis restarted without persistence, a
flushed database) has none or a new one. A store object remembers the generation of its first operation and
refuses every later operation (StoreError) once it changed, so nothing reads an emptied store as "no data".
A store is created only by an object opened with `create=True` — flows that publish whole datasets; readers and
nearline updaters open with `create=False`, so that after an outage that emptied the store they fail until a flow
has republished, instead of serving or patching an empty one.
Every backend error surfaces as `StoreError` naming the backend (e.g. `redis://127.0.0.1:6390/0: connection refused`).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Union

import numpy as np

Value = Union[np.ndarray, dict, list, str, int, float, bool]
Items = Union[Mapping[str, Value], Iterable[tuple[str, Value]]]

_VECTOR, _RECORD = b"\x01", b"\x02"
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")
MAX_KEY_CHARS = 256
GRACE_S = 600.0
STAGE_TIMEOUT_S = 600.0
KEEP_MANIFESTS = 5


class StoreError(ValueError):
    pass


@dataclass(frozen=True)
class Manifest(Mapping):
    """Which version of each dataset of a group is current together; `published_at` in seconds since the epoch.
    Read as attributes or as a mapping (`m.version`, `m["version"]`, `dict(m)`)."""

    group: str
    version: int
    datasets: dict[str, int]
    meta: dict
    published_at: float

    def __getitem__(self, key: str) -> object:
        if key not in _MANIFEST_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_MANIFEST_FIELDS)

    def __len__(self) -> int:
        return len(_MANIFEST_FIELDS)


_MANIFEST_FIELDS = tuple(f.name for f in fields(Manifest))


def check_dataset(name: str, what: str = "dataset") -> str:
    if not isinstance(name, str) or not DATASET_NAME.match(name):
        raise StoreError(f"{what}: expected a name like 'activity_embedding/mean' (a-z, 0-9, _ . - and /), "
                         f"got {name!r}")
    return name


def encode(key: object, value: Value) -> bytes:
    """Serialize one value; errors name the key and what was wrong."""
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise StoreError(f"key: expected a string of 1..{MAX_KEY_CHARS} characters, got {key!r}")
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            raise StoreError(f"value of key {key!r}: expected a 1-D numeric vector, got {value.dtype} {value.shape}")
        vec = value.astype("<f4", copy=False)
        if not np.isfinite(vec).all():
            raise StoreError(f"value of key {key!r}: vector has NaN or infinite entries")
        return _VECTOR + vec.tobytes()
    try:
        return _RECORD + json.dumps(value, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise StoreError(f"value of key {key!r}: not a vector or a JSON record ({e})") from None


def decode(blob: bytes | None) -> Value | None:
    if blob is None:
        return None
    tag, body = blob[:1], blob[1:]
    if tag == _VECTOR:
        return np.frombuffer(body, "<f4")
    if tag == _RECORD:
        return json.loads(body)
    raise StoreError(f"stored value has an unknown type tag {tag!r}")


def encode_items(items: Items) -> list[tuple[str, bytes]]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return [(k, encode(k, v)) for k, v in pairs]


def manifest_body(datasets: Mapping[str, int], meta: Mapping | None) -> str:
    """The stored form of a manifest (group, version and time are stored beside it)."""
    try:
        return json.dumps({"datasets": dict(datasets), "meta": dict(meta or {})}, allow_nan=False,
                          separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise StoreError(f"meta: expected a JSON object, got {meta!r} ({e})") from None


def parse_manifest(group: str, version: int, body: str | bytes, published_at: float) -> Manifest:
    record = json.loads(body)
    return Manifest(group, int(version), {k: int(v) for k, v in record["datasets"].items()}, record["meta"],
                    float(published_at))


class FeatureStore(ABC):
    """One interface, several backends (`SQLiteStore` embedded, `RedisStore` for production).

    Backends implement the four publish primitives (`_begin`, `_write`, `_commit`, `_abort`), `_restore`, and the
    reads; the protocol itself (stage, stream, commit or abort) lives here once.
    """

    label: str  # how errors name the store, e.g. `sqlite:/data/store.sqlite` or `redis://host:6379/0`
    write_chunk: int  # items per write round trip / transaction

    def __init__(self, grace_s: float = GRACE_S, stage_timeout_s: float = STAGE_TIMEOUT_S,
                 keep_manifests: int = KEEP_MANIFESTS):
        if grace_s < 0 or stage_timeout_s < 0 or keep_manifests < 2:
            raise StoreError(f"retention: expected grace_s >= 0, stage_timeout_s >= 0 and keep_manifests >= 2, got "
                             f"{grace_s}, {stage_timeout_s}, {keep_manifests}")
        self.grace_s, self.stage_timeout_s, self.keep_manifests = grace_s, stage_timeout_s, keep_manifests

    # -- publishing -------------------------------------------------------------------------------------------------

    def push(self, dataset: str, items: Items) -> int:
        """Publish one dataset as a new current version (compare-and-set); returns the version number."""
        return self._publish(None, {check_dataset(dataset): items}, None)[1][dataset]

    def publish(self, group: str, datasets: Mapping[str, Items], meta: dict | None = None) -> Manifest:
        """Stage every dataset as a new version, then make all of them current and record manifest N of `group` in
        one atomic step. Refused (StoreError) if a newer manifest of the group, or a newer version of one of the
        datasets, was committed meanwhile; the newer one stays current."""
        check_dataset(group, "group")
        if not datasets:
            raise StoreError(f"group {group!r}: publish needs at least one dataset")
        for name in datasets:
            check_dataset(name)
        stored_meta = json.loads(manifest_body({}, meta))["meta"]  # a bad meta fails before anything is staged
        version, versions, published_at = self._publish(group, datasets, meta)
        return Manifest(group, version, versions, stored_meta, published_at)

    def _publish(self, group: str | None, datasets: Mapping[str, Items],
                 meta: dict | None) -> tuple[int, dict[str, int], float]:
        manifest_version, versions = self._begin(group, list(datasets))
        try:
            for name, items in datasets.items():
                chunk: list[tuple[str, bytes]] = []
                for key, value in (items.items() if isinstance(items, Mapping) else items):
                    chunk.append((key, encode(key, value)))
                    if len(chunk) == self.write_chunk:
                        self._write(name, versions[name], chunk)
                        chunk = []
                if chunk:
                    self._write(name, versions[name], chunk)
            body = manifest_body(versions, meta) if group else ""
            published_at = self._commit(group, manifest_version, versions, body)
        except BaseException:
            try:
                self._abort(versions)
            except StoreError:
                pass  # the store is unreachable: the staged versions expire after stage_timeout_s
            raise
        return manifest_version, versions, published_at

    @abstractmethod
    def _begin(self, group: str | None, datasets: list[str]) -> tuple[int, dict[str, int]]:
        """Allocate the manifest version (0 without a group) and stage a new version of each dataset."""

    @abstractmethod
    def _write(self, dataset: str, version: int, rows: list[tuple[str, bytes]]) -> None:
        """Add rows to a staged version; StoreError if it is no longer staged (its writer timed out)."""

    @abstractmethod
    def _commit(self, group: str | None, manifest_version: int, versions: dict[str, int], body: str) -> float:
        """The atomic compare-and-set publish (see the module docstring); returns the publish time."""

    @abstractmethod
    def _abort(self, versions: dict[str, int]) -> None:
        """Drop these versions if they are still staged."""

    @abstractmethod
    def _restore(self, group: str, expected: int, body: str) -> tuple[int, float]:
        """Atomically, if manifest `expected` is still the group's newest: make the versions in `body` current and
        record them as a new manifest; returns its version and time."""

    @abstractmethod
    def update(self, dataset: str, items: Items, delete: Sequence[str] = ()) -> None:
        """Nearline partial update: set `items` and delete `delete` in the current version (creating a first
        version if there is none). All items are checked before anything is written."""

    @abstractmethod
    def rollback(self, dataset: str) -> int:
        """Swap the current version with the previous one; returns the version now current."""

    def rollback_group(self, group: str) -> Manifest:
        """Make the previous manifest's dataset versions current again, atomically, as a new manifest (its meta is
        the previous one's plus `restores`: that manifest's version). Rolling back twice undoes the rollback."""
        kept = self.manifests(check_dataset(group, "group"))
        if len(kept) < 2:
            raise StoreError(f"group {group!r}: nothing to roll back ({len(kept)} manifest(s) kept)")
        previous = kept[-2]
        meta = {**previous.meta, "restores": previous.version}
        version, published_at = self._restore(group, kept[-1].version, manifest_body(previous.datasets, meta))
        return Manifest(group, version, dict(previous.datasets), meta, published_at)

    # -- reading ----------------------------------------------------------------------------------------------------

    @abstractmethod
    def get_raw(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[bytes | None]:
        """Encoded values of many keys, all of one version (the current one unless given); None where a key is
        absent, all None for a dataset never published; StoreError for a version that is not kept."""

    @abstractmethod
    def current_version(self, dataset: str) -> int | None: ...

    @abstractmethod
    def versions(self, dataset: str) -> list[int]:
        """Published versions kept (see the retention rule), ascending."""

    @abstractmethod
    def datasets(self) -> list[str]: ...

    @abstractmethod
    def manifests(self, group: str) -> list[Manifest]:
        """The group's kept manifests, oldest first; the last one is current."""

    def manifest(self, group: str, version: int | None = None) -> Manifest | None:
        """The group's current manifest, or a kept one by version; None if there is none."""
        kept = self.manifests(group)
        if version is None:
            return kept[-1] if kept else None
        return next((m for m in kept if m.version == version), None)

    @abstractmethod
    def groups(self) -> list[str]: ...

    @abstractmethod
    def generation(self) -> str | None:
        """The store's generation id as it is now; None for an emptied store (see the module docstring)."""

    @abstractmethod
    def close(self) -> None: ...

    def get(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[Value | None]:
        return [decode(b) for b in self.get_raw(dataset, keys, version)]

    def get_one(self, dataset: str, key: str, version: int | None = None) -> Value | None:
        return self.get(dataset, [key], version)[0]

    def get_matrix(self, dataset: str, keys: Sequence[str], dim: int,
                   version: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vectors as one (n, dim) float32 matrix plus a found-mask; absent keys are zero rows."""
        blobs = self.get_raw(dataset, keys, version)
        found = np.array([b is not None for b in blobs], bool)
        out = np.zeros((len(keys), dim), np.float32)
        present = [b for b in blobs if b is not None]
        width = 1 + 4 * dim
        if present:
            lengths = np.fromiter(map(len, present), np.int64, len(present))
            raw = np.frombuffer(b"".join(present), np.uint8) if (lengths == width).all() else None
            if raw is None or (raw[::width] != _VECTOR[0]).any():
                bad = next(k for k, b in zip(keys, blobs) if b is not None and (len(b) != width or b[:1] != _VECTOR))
                raise StoreError(f"key {bad!r} of {dataset!r} is not a {dim}-d vector")
            # one copy: (n, 1 + 4*dim) bytes -> drop the tag column -> float32
            out[found] = raw.reshape(-1, width)[:, 1:].copy().view("<f4")
        return out, found

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
