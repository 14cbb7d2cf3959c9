"""Vectorized id -> row lookups for opaque int64 (or string) ids."""

from __future__ import annotations

import numpy as np


class IdIndex:
    """Vectorized id -> row lookups (sorted ids + searchsorted); errors name the field and the unknown id."""

    def __init__(self, ids: np.ndarray, field: str):
        self.order = np.argsort(ids, kind="stable")
        self.sorted = np.asarray(ids)[self.order]
        self.field = field

    def rows(self, ids, strict: bool = True) -> np.ndarray:
        ids = np.asarray(ids, dtype=self.sorted.dtype)
        pos = np.clip(np.searchsorted(self.sorted, ids), 0, max(self.sorted.size - 1, 0))
        found = self.sorted[pos] == ids if self.sorted.size else np.zeros(ids.size, bool)
        if strict and not found.all():
            raise ValueError(f"{self.field}: unknown {self.field.removesuffix('_id')} {ids[~found][0]}")
        return np.where(found, self.order[pos], -1)
