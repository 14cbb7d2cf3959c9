"""Ranking and classification metrics shared by the evaluations."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney statistic (ties count one half)."""
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ndcg_per_group(groups: np.ndarray, relevance: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k of each group with at least one relevant item and two items; returns (group ids, ndcg).

    Gains are 2^rel - 1; ties in score are broken by input order, so a constant score gets no credit for luck.
    """
    groups, relevance, score = np.asarray(groups), np.asarray(relevance, float), np.asarray(score, float)
    order = np.lexsort((np.arange(groups.size), -score, groups))
    g, rel = groups[order], relevance[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, g.size])
    pos = np.arange(g.size) - np.repeat(starts, sizes)
    discount = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)
    dcg = np.add.reduceat((2.0 ** rel - 1) * discount, starts)
    ideal_order = np.lexsort((-rel, g))
    ideal = np.add.reduceat((2.0 ** rel[ideal_order] - 1) * discount, starts)
    keep = (ideal > 0) & (sizes >= 2)
    return g[starts][keep], dcg[keep] / ideal[keep]


def ndcg_by_entity(entity: np.ndarray, groups: np.ndarray, relevance: np.ndarray, score: np.ndarray,
                   k: int) -> float:
    """NDCG@k averaged over groups within each entity (e.g. a hiring project), then over entities."""
    ids, values = ndcg_per_group(groups, relevance, score, k)
    first = {}
    for gid, e in zip(np.asarray(groups).tolist(), np.asarray(entity).tolist()):
        first.setdefault(gid, e)
    owners = np.array([first[g] for g in ids.tolist()])
    if owners.size == 0:
        return float("nan")
    uniq, inv = np.unique(owners, return_inverse=True)
    per_entity = np.bincount(inv, weights=values) / np.bincount(inv)
    return float(per_entity.mean())
