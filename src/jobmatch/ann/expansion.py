"""Audience expansion (002 §4.3, §5.4): from an anchor set of exact matches to the job-seekers most like them.

The seed set (the best-matching anchors) becomes one query vector, either
  * `mean`: the mean of the seeds' unit vectors, or
  * `prf` (pseudo-relevance feedback): each seed's own top `prf_k` neighbours are retrieved first, and the query is
    the mean of the seeds *and* those neighbours — a noisy seed pulls the query less once its neighbourhood votes;
then up to `k` nearest neighbours with a cosine of at least `threshold` are retrieved (002: 500 above 0.80) and
merged after the anchors, which stay first: exact matches are precise, the expansion adds recall.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobmatch.ann.index import ShardedIndex, unit_rows

METHODS = ("mean", "prf")


@dataclass(frozen=True)
class ExpansionParams:
    method: str = "mean"
    k: int = 500
    threshold: float = 0.8
    prf_k: int = 5
    seeds: int | None = None  # at most this many anchors (the best matches first) form the seed set; None: all

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if self.k < 1 or self.prf_k < 1 or (self.seeds is not None and self.seeds < 1):
            raise ValueError(f"k, prf_k and seeds: expected positive integers, got {self.k}, {self.prf_k}, "
                             f"{self.seeds}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold: expected a cosine in [-1, 1], got {self.threshold}")


def query_vectors(index: ShardedIndex, seed_rows: Sequence[np.ndarray], method: str = "mean", prf_k: int = 5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One unit query vector per seed set (rows of `index`; -1 entries ignored) and a mask of the sets that had
    any seed (the others get a zero vector)."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    sets = [np.unique(r[r >= 0]) for r in (np.asarray(r, np.int64) for r in seed_rows)]
    flat = np.concatenate(sets) if sets else np.zeros(0, np.int64)
    if method == "prf" and flat.size:
        neighbours = index.search(index.vectors_[flat], prf_k + 1)[0]  # + 1: a seed is its own nearest neighbour
        bounds = np.cumsum([0] + [s.size for s in sets])
        sets = [np.union1d(s, nb[nb >= 0]) for s, nb in
                ((s, neighbours[lo:hi].ravel()) for s, lo, hi in zip(sets, bounds[:-1], bounds[1:]))]
    has = np.array([s.size > 0 for s in sets], bool)
    Q = np.zeros((len(sets), index.vectors_.shape[1]), np.float32)
    for i, s in enumerate(sets):
        if s.size:
            Q[i] = index.vectors_[s].mean(0)
    Q[has] = unit_rows(Q[has])
    return Q, has


def expand(index: ShardedIndex, seed_rows: Sequence[np.ndarray], params: ExpansionParams = ExpansionParams(),
           exact: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per seed set: the expanded members' index rows and cosines to the query, best first (empty without seeds)."""
    seeds = [r[r >= 0][:params.seeds] for r in (np.asarray(r, np.int64) for r in seed_rows)]
    Q, has = query_vectors(index, seeds, params.method, params.prf_k)
    out = [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in seeds]
    if has.any():
        rows, sims = (index.exact_search if exact else index.search)(Q[has], params.k)
        for i, r, s in zip(np.flatnonzero(has).tolist(), rows, sims):
            keep = (r >= 0) & (s >= params.threshold)
            out[i] = (r[keep], s[keep])
    return out


def merge_audience(anchors: np.ndarray, expanded: np.ndarray) -> np.ndarray:
    """The anchors in their order, then the expanded members not among them, in theirs."""
    anchors = np.asarray(anchors, np.int64)
    expanded = np.asarray(expanded, np.int64)
    return np.concatenate([anchors, expanded[~np.isin(expanded, anchors)]])


__all__ = ["ExpansionParams", "METHODS", "expand", "merge_audience", "query_vectors"]
