"""XML problems with known structure, dense (labels are directions) and sparse (labels are bags of keywords)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


def synthetic_xml(n_points: int = 3000, n_labels: int = 200, dim: int = 32, max_labels: int = 3, noise: float = 0.35,
                  seed: int = 0) -> tuple[np.ndarray, list[list[int]]]:
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(n_labels, dim))
    popularity = rng.zipf(1.6, n_labels).astype(float)  # a head and a long tail of labels
    p = popularity / popularity.sum()
    Y = [sorted(set(rng.choice(n_labels, rng.integers(1, max_labels + 1), p=p).tolist())) for _ in range(n_points)]
    X = np.stack([protos[y].sum(0) / np.sqrt(len(y)) for y in Y]) + noise * rng.normal(size=(n_points, dim)) * np.sqrt(dim) / 4
    return X.astype(np.float32), Y


@dataclass(frozen=True)
class BowProblem:
    X: sp.csr_matrix  # (points, words) binary TF-IDF, unit rows
    Y: sp.csr_matrix  # (points, labels) 0/1 indicators
    keywords: np.ndarray  # (labels, keywords per label) word ids each label draws its signal words from
    group: np.ndarray  # (labels,) the group a label belongs to; labels in a group share half their keywords


def sparse_bow_xml(n_points: int = 4000, n_features: int = 5000, n_labels: int = 500, max_labels: int = 3,
                   words: int = 60, signal: float = 0.12, keywords: int = 20, group_size: int = 8,
                   seed: int = 0) -> BowProblem:
    """Documents as bags of words: each label has `keywords` signal words, half of them shared with the other labels
    of its group (so labels in a group are confusable); a document holds 1..max_labels labels (Zipf popularity,
    the extra ones mostly from the first one's group) and about `words` tokens, a `signal` share of them drawn
    from its labels' keywords and the rest from a Zipf background over the whole vocabulary.
    """
    rng = np.random.default_rng(seed)
    n_groups = -(-n_labels // group_size)
    group = rng.permutation(np.arange(n_labels) % n_groups)
    half = keywords // 2
    shared = rng.choice(n_features, (n_groups, half))
    kw = np.concatenate([shared[group], rng.choice(n_features, (n_labels, keywords - half))], axis=1)
    kw_weight = rng.dirichlet(np.ones(keywords), n_labels)
    background = 1.0 / (np.arange(n_features) + 10.0) ** 1.1
    background_cdf = np.cumsum(rng.permutation(background)) / background.sum()
    popularity = 1.0 / (np.arange(n_labels) + 5.0)  # a head and a long tail of labels
    popularity_cdf = np.cumsum(rng.permutation(popularity)) / popularity.sum()

    def draw(cdf: np.ndarray, size: int | None = None) -> np.ndarray:
        return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), cdf.size - 1)

    members = [np.flatnonzero(group == g) for g in range(n_groups)]

    rows, cols, label_rows = [], [], []
    for i in range(n_points):
        first = int(draw(popularity_cdf))
        labels = {first}
        for _ in range(rng.integers(0, max_labels)):
            labels.add(rng.choice(members[group[first]]) if rng.random() < 0.7 else int(draw(popularity_cdf)))
        labels = np.array(sorted(labels))
        n_words = 10 + rng.poisson(words - 10)
        n_signal = rng.binomial(n_words, signal)
        by_label = rng.choice(labels, n_signal)
        slot = np.minimum((kw_weight[by_label].cumsum(1) < rng.random((n_signal, 1))).sum(1), keywords - 1)
        doc = np.unique(np.concatenate([kw[by_label, slot], draw(background_cdf, n_words - n_signal)]))
        rows.append(np.full(doc.size, i))
        cols.append(doc)
        label_rows.append(labels)
    X = sp.csr_matrix((np.ones(sum(c.size for c in cols), np.float32), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_points, n_features))
    idf = np.log((1.0 + n_points) / (1.0 + np.bincount(X.indices, minlength=n_features))) + 1.0
    X = sp.csr_matrix(X @ sp.diags(idf.astype(np.float32)))
    X = sp.csr_matrix(sp.diags(1.0 / np.sqrt(np.asarray(X.multiply(X).sum(1)).ravel())) @ X, dtype=np.float32)
    Y = sp.csr_matrix((np.ones(sum(ls.size for ls in label_rows), np.float32), np.concatenate(label_rows),
                       np.cumsum([0] + [ls.size for ls in label_rows])), shape=(n_points, n_labels))
    return BowProblem(X, Y, kw, group)
