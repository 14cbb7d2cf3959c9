"""Extreme multi-label metrics (002 §5.1): precision@k, semantic similarity@k, suggestion coverage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def precision_at_k(pred: np.ndarray, truth: Sequence[set[int]], k: int) -> float:
    """Mean over points of |top-k ∩ truth| / k; `pred` holds label ids best first, -1 for no prediction."""
    hits = [len(set(p[:k].tolist()) & t) for p, t in zip(pred, truth)]
    return float(np.mean(hits) / k) if hits else float("nan")


def semantic_similarity_at_k(pred: np.ndarray, truth: Sequence[set[int]], label_vectors: np.ndarray, k: int) -> float:
    """002 equation 2: mean over points of the mean over the top k of the best cosine with any true label."""
    unit = label_vectors / np.maximum(np.linalg.norm(label_vectors, axis=1, keepdims=True), 1e-12)
    scores = []
    for p, t in zip(pred, truth):
        if not t:
            continue
        top = [x for x in p[:k].tolist() if x >= 0]
        sims = unit[top] @ unit[sorted(t)].T if top else np.zeros((0, len(t)))
        scores.append(float(np.concatenate([sims.max(axis=1), np.zeros(k - len(top))]).mean()))
    return float(np.mean(scores)) if scores else float("nan")


def coverage(pred: np.ndarray, n_labels: int, k: int = 100) -> float:
    """Unique labels among every point's top k, over the label count (002's Suggestion Coverage)."""
    top = pred[:, :k]
    return float(np.unique(top[top >= 0]).size / n_labels)
