"""An XML problem with known structure: labels are directions; a point mixes its labels' directions."""

from __future__ import annotations

import numpy as np


def synthetic_xml(n_points: int = 3000, n_labels: int = 200, dim: int = 32, max_labels: int = 3, noise: float = 0.35,
                  seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(n_labels, dim))
    popularity = rng.zipf(1.6, n_labels).astype(float)  # a head and a long tail of labels
    p = popularity / popularity.sum()
    Y = [sorted(set(rng.choice(n_labels, rng.integers(1, max_labels + 1), p=p).tolist())) for _ in range(n_points)]
    X = np.stack([protos[y].sum(0) / np.sqrt(len(y)) for y in Y]) + noise * rng.normal(size=(n_points, dim)) * np.sqrt(dim) / 4
    return X.astype(np.float32), Y
