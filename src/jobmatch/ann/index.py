"""A sharded HNSW index over user vectors, cosine similarity (002 §4.3, §5.4).

The vectors are centred on their corpus mean, then normalized: user vectors pooled from a transformer (and mean
word vectors) all lean the same way, so raw cosines crowd near 1 and a similarity threshold separates nothing;
after centring, a cosine says how alike two users are *relative to the average user*. The corpus is randomly
partitioned into `shards` equal parts with one hnswlib graph each (002: 16 shards, M 48, efC 32, efS 1000); a
query searches every shard in parallel threads and the per-shard top-k lists are merged. Each shard is built on
one thread from a fixed seed, so the same vectors give the same index.

Saved as a folder: `ann.json` (class, format version, parameters, and `source`: which published vectors it was
built from), `arrays.npz` (keys, centre, shard of each row, the unit vectors) and one hnswlib file per shard.
`load(folder, source=...)` refuses an index built from other vectors than the caller's (`StaleIndexError`), so a
stale index is never silently paired with new vectors.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import hnswlib
import numpy as np

from jobmatch.features.ids import IdIndex
from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 1
QUERY_BLOCK = 2048  # exact search multiplies this many queries at a time


class StaleIndexError(ValueError):
    """The index on disk was built from other vectors than the ones it is being paired with."""


@dataclass(frozen=True)
class AnnParams:
    shards: int = 4  # 002: 16 random shards for hundreds of millions of users
    M: int = 16  # HNSW graph degree (002: 48)
    ef_construction: int = 100  # 002: 32
    ef_search: int = 500  # 002: 1000; raised to k when a query asks for more neighbours
    center: bool = True
    threads: int = 2  # shards built and queried in parallel
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("shards", 1), ("M", 2), ("ef_construction", 1), ("ef_search", 1), ("threads", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")


def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def top_k(sims: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row of `sims` (ties by column order), as (rows, sims)."""
    k = min(k, sims.shape[1])
    if k == 0:
        return np.zeros((sims.shape[0], 0), np.int64), np.zeros((sims.shape[0], 0), np.float32)
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else \
        np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    order = np.lexsort((part, -np.take_along_axis(sims, part, 1)), axis=1)
    best = np.take_along_axis(part, order, 1)
    return np.take_along_axis(rows, best, 1), np.take_along_axis(sims, best, 1)


class ShardedIndex:
    """Cosine k-nearest-neighbour search over keyed vectors: `fit(keys, vectors)`, `query(vectors, k)`."""

    def __init__(self, params: AnnParams | None = None, **overrides):
        self.params = replace(params or AnnParams(), **overrides)

    # -- building ---------------------------------------------------------------------------------------------------
    def fit(self, keys, vectors) -> ShardedIndex:
        keys = np.asarray(keys)
        X = np.asarray(vectors, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"vectors: expected a non-empty 2-D (members x dims) array, got shape {X.shape}")
        if keys.shape != (X.shape[0],) or not np.issubdtype(keys.dtype, np.integer):
            raise ValueError(f"keys: expected {X.shape[0]} integer ids (one per vector row), got {keys.dtype} "
                             f"{keys.shape}")
        if np.unique(keys).size != keys.size:
            raise ValueError("keys: ids must be unique")
        if not np.isfinite(X).all():
            raise ValueError("vectors: NaN or infinite entries")
        p = self.params
        self.keys_ = keys.astype(np.int64)
        self.center_ = X.mean(0) if p.center else np.zeros(X.shape[1], np.float32)
        self.vectors_ = unit_rows(X - self.center_)
        # a random partition into equal shards (002 partitions at random, so every shard is a sample of everyone)
        self.shard_of_ = (np.random.default_rng(p.seed).permutation(keys.size) % p.shards).astype(np.int32)
        self._sizes = np.bincount(self.shard_of_, minlength=p.shards)
        self.shards_ = list(self._pool().map(self._build, range(p.shards)))
        self._ids = IdIndex(self.keys_, "member_id")
        return self

    def _build(self, shard: int) -> hnswlib.Index | None:
        rows = np.flatnonzero(self.shard_of_ == shard)
        if rows.size == 0:
            return None
        p = self.params
        graph = hnswlib.Index(space="ip", dim=self.vectors_.shape[1])
        graph.init_index(max_elements=rows.size, ef_construction=p.ef_construction, M=p.M, random_seed=p.seed + shard)
        graph.add_items(self.vectors_[rows], rows, num_threads=1)  # one thread: insertion order, hence the graph, fixed
        graph.set_ef(p.ef_search)
        return graph

    # -- querying ---------------------------------------------------------------------------------------------------
    def _pool(self) -> ThreadPoolExecutor:
        """The threads that query the shards (hnswlib releases the GIL while it searches), started once: a pool per
        query would cost more than a small shard's search. They end when the index is garbage-collected."""
        if getattr(self, "_threads", None) is None:
            self._threads = ThreadPoolExecutor(self.params.threads, thread_name_prefix="ann-shard")
        return self._threads

    @property
    def size(self) -> int:
        return int(self.keys_.size)

    def transform(self, vectors) -> np.ndarray:
        """Vectors in the index's space: centred like the corpus, unit length."""
        X = np.asarray(vectors, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.vectors_.shape[1]:
            raise ValueError(f"vectors: expected (n, {self.vectors_.shape[1]}), got shape {X.shape}")
        return unit_rows(X - self.center_)

    def rows(self, keys, strict: bool = False) -> np.ndarray:
        """Row of each key (-1 for a key not in the index unless `strict`)."""
        return self._ids.rows(np.asarray(keys, np.int64), strict=strict)

    def search(self, unit_queries: np.ndarray, k: int, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows of each query (already in the index's space), merged over the shards: (rows, cosine),
        best first; rows -1 (cosine -inf) past the end when the index holds fewer than k vectors."""
        Q = np.ascontiguousarray(unit_queries, dtype=np.float32)
        k = int(k)
        if k < 1:
            raise ValueError(f"k: expected at least 1, got {k}")
        if Q.shape[0] == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        live = [(s, g) for s, g in enumerate(self.shards_) if g is not None]
        for s, graph in live:  # ef >= k for hnswlib to return k results; 2k for recall (002: efS 1000, k 500)
            graph.set_ef(max(ef or self.params.ef_search, 2 * min(k, int(self._sizes[s]))))

        def one(item: tuple[int, hnswlib.Index]) -> tuple[np.ndarray, np.ndarray]:
            s, graph = item
            labels, dist = graph.knn_query(Q, k=min(k, int(self._sizes[s])), num_threads=1)
            return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

        parts = list(self._pool().map(one, live)) if len(live) > 1 and self.params.threads > 1 else \
            [one(item) for item in live]
        rows = np.concatenate([p[0] for p in parts], axis=1)
        sims = np.concatenate([p[1] for p in parts], axis=1)
        return _pad(*top_k(sims, rows, k), k)

    def exact_search(self, unit_queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The same answer by brute force (the reference ANN recall is measured against)."""
        Q = np.asarray(unit_queries, dtype=np.float32)
        all_rows = np.arange(self.size)
        out_rows, out_sims = [], []
        for lo in range(0, Q.shape[0], QUERY_BLOCK):
            sims = Q[lo:lo + QUERY_BLOCK] @ self.vectors_.T
            r, s = top_k(sims, np.broadcast_to(all_rows, sims.shape), k)
            out_rows.append(r)
            out_sims.append(s)
        if not out_rows:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return _pad(np.concatenate(out_rows), np.concatenate(out_sims), k)

    def query(self, vectors, k: int, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar keys to each raw vector: (keys, cosine), -1 / -inf past the end."""
        Q = self.transform(vectors)
        rows, sims = self.exact_search(Q, k) if exact else self.search(Q, k)
        return np.where(rows >= 0, self.keys_[np.maximum(rows, 0)], -1), sims

    # -- persistence ------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path, source: dict | None = None) -> Path:
        """Write the index to a new folder (written beside it, then renamed into place: a reader never sees half
        an index). `source` names the vectors it was built from; `load` checks it."""
        d = Path(directory)
        if d.exists():
            raise FileExistsError(f"directory: {d} exists; an index is written once, to a new folder")
        tmp = d.with_name(d.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for s, graph in enumerate(self.shards_):
            if graph is not None:
                graph.save_index(str(tmp / f"shard-{s}.bin"))
        np.savez(tmp / "arrays.npz", keys=self.keys_, center=self.center_, shard_of=self.shard_of_,
                 vectors=self.vectors_)
        write_meta(tmp / "ann.json", type(self), FORMAT_VERSION, params=asdict(self.params), size=self.size,
                   dim=int(self.vectors_.shape[1]), source=source)
        os.replace(tmp, d)
        return d

    @classmethod
    def load(cls, directory: str | Path, source: dict | None = None) -> ShardedIndex:
        """The index saved in `directory`; with `source`, refused (StaleIndexError) unless built from it."""
        d = Path(directory)
        meta = read_meta(d / "ann.json", cls, FORMAT_VERSION)
        if source is not None and meta.get("source") != source:
            raise StaleIndexError(f"{d}: built from {meta.get('source')}, but the vectors now published are "
                                  f"{source}; rebuild the index (jobmatch run audience)")
        model = cls(AnnParams(**meta["params"]))
        model.source_ = meta.get("source")
        with np.load(d / "arrays.npz", allow_pickle=False) as z:
            model.keys_, model.center_, model.shard_of_, model.vectors_ = z["keys"], z["center"], z["shard_of"], \
                z["vectors"]
        model._sizes = np.bincount(model.shard_of_, minlength=model.params.shards)
        model.shards_ = []
        for s in range(model.params.shards):
            size = int(model._sizes[s])
            if size == 0:
                model.shards_.append(None)
                continue
            graph = hnswlib.Index(space="ip", dim=meta["dim"])
            graph.load_index(str(d / f"shard-{s}.bin"), max_elements=size)
            graph.set_ef(model.params.ef_search)
            model.shards_.append(graph)
        model._ids = IdIndex(model.keys_, "member_id")
        return model


def _pad(rows: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if rows.shape[1] >= k:
        return rows, sims
    missing = k - rows.shape[1]
    return (np.pad(rows, ((0, 0), (0, missing)), constant_values=-1),
            np.pad(sims, ((0, 0), (0, missing)), constant_values=-np.inf))


__all__ = ["AnnParams", "ShardedIndex", "StaleIndexError", "top_k", "unit_rows"]
