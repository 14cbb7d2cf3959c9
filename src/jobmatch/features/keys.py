"""Grouping on tuples of opaque ids.

Entity ids are opaque int64 (any value, up to 2^63 - 1) or strings, so composite keys are never built by
arithmetic on ids (`project << 24 | member` overflows or collides). Instead each column is factorized to dense
codes 0..n-1 (np.unique), and the dense codes are combined: the product of the distinct-value counts always fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dense_codes(*columns: np.ndarray) -> np.ndarray:
    """One int64 per row such that rows are equal exactly when all their columns are equal."""
    if not columns:
        raise ValueError("dense_codes: at least one column is needed")
    key = np.zeros(len(columns[0]), np.int64)
    for col in columns:
        uniq, inv = np.unique(np.asarray(col), return_inverse=True)
        key = key * max(uniq.size, 1) + inv.ravel()
        # renumber after each column so the running key stays below the number of distinct rows
        _, key = np.unique(key, return_inverse=True)
        key = key.ravel().astype(np.int64)
    return key


def joint_codes(left: Sequence[np.ndarray], right: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`dense_codes` over the rows of two tables at once, so codes are comparable between them."""
    if len(left) != len(right):
        raise ValueError("joint_codes: both sides need the same columns")
    n = len(left[0]) if left else 0
    both = dense_codes(*(np.concatenate([np.asarray(a), np.asarray(b)]) for a, b in zip(left, right)))
    return both[:n], both[n:]


def rows_in(rows: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> np.ndarray:
    """Mask of the rows of `rows` that also occur in `reference` (tuples of aligned columns)."""
    a, b = joint_codes(rows, reference)
    return np.isin(a, b)
