"""The FeatureStore interface and the value codec its backends share.

A dataset (e.g. `activity_embedding/mean`) has numbered versions. `push` writes a whole new version and makes
it current in one atomic step, keeping the previous one for `rollback`; `update` changes single keys of the
current version (the nearline path); `get` reads many keys of one version in one round trip.
Values are 1-D float32 vectors or small JSON records (dict, list, str, number, bool).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Union

import numpy as np

Value = Union[np.ndarray, dict, list, str, int, float, bool]
Items = Union[Mapping[str, Value], Iterable[tuple[str, Value]]]

_VECTOR, _RECORD = b"\x01", b"\x02"
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")
MAX_KEY_CHARS = 256


class StoreError(ValueError):
    pass


def check_dataset(name: str) -> str:
    if not isinstance(name, str) or not DATASET_NAME.match(name):
        raise StoreError(f"dataset: expected a name like 'activity_embedding/mean' (a-z, 0-9, _ . - and /), "
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


class FeatureStore(ABC):
    """One interface, several backends (`SQLiteStore` embedded, `RedisStore` for production)."""

    @abstractmethod
    def push(self, dataset: str, items: Items) -> int:
        """Write all items as a new version and make it current atomically; returns the new version number."""

    @abstractmethod
    def update(self, dataset: str, items: Items) -> None:
        """Nearline partial update: set these keys in the current version (creating version 1 if none)."""

    @abstractmethod
    def get_raw(self, dataset: str, keys: Sequence[str], version: int | None = None) -> list[bytes | None]:
        """Encoded values of many keys in one round trip; None where a key is absent."""

    @abstractmethod
    def current_version(self, dataset: str) -> int | None: ...

    @abstractmethod
    def versions(self, dataset: str) -> list[int]:
        """Versions kept (current and the previous one), ascending."""

    @abstractmethod
    def rollback(self, dataset: str) -> int:
        """Swap the current version with the previous one; returns the version now current."""

    @abstractmethod
    def datasets(self) -> list[str]: ...

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
