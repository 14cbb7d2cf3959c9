"""Slice (Jain et al., WSDM 2019), a clean-room implementation from the paper (its C++ code is non-commercial).

Training: each label's vector is the normalized mean of its positive points; an HNSW index over the label
vectors shortlists, for every training point, the labels nearest to it; each label's one-vs-all linear
classifier is then trained on its positives plus the points that shortlisted it without having it (hard
negatives) — O(N·D·log L) instead of O(N·D·L). Prediction: shortlist labels by HNSW, then combine each
shortlisted label's classifier probability with its similarity to the point.

The one-vs-all objectives are independent per label, so all classifiers are fit together as one L-BFGS problem
over the (point, label) pairs (L2 on the weights, not on the biases).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import hnswlib
import numpy as np
import torch

from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SliceParams:
    M: int = 32  # HNSW graph degree
    ef_construction: int = 200
    ef_search: int = 200
    shortlist: int = 50  # labels shortlisted per point (the paper's num_nbrs)
    l2: float = 1e-3  # per label: l2 * |w|^2 / 2 against the mean log-loss of its pairs
    classifier_weight: float = 0.8  # score = p_classifier^cw * ((1 + cos) / 2)^(1 - cw)
    max_iter: int = 200
    seed: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def label_vectors(X: np.ndarray, Y: list[list[int]], n_labels: int) -> np.ndarray:
    """Normalized mean of each label's positive points (zero for a label without any)."""
    rows = np.repeat(np.arange(len(Y)), [len(y) for y in Y])
    cols = np.fromiter((l for y in Y for l in y), np.int64)
    sums = np.zeros((n_labels, X.shape[1]))
    np.add.at(sums, cols, _unit(X)[rows])
    return _unit(sums)


def _linear_lbfgs(n_labels: int, dim: int, max_iter: int) -> tuple[torch.Tensor, torch.Tensor, torch.optim.LBFGS]:
    """Zero-initialized per-label weights and biases with a full-batch L-BFGS over them."""
    w = torch.zeros((n_labels, dim), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_labels, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=1e-7, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")
    return w, b, opt


def _csr_pattern(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int
                 ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The CSR structure of (row, col) pairs already sorted by row, built once; call it with values for a matrix."""
    indptr = torch.from_numpy(np.searchsorted(rows, np.arange(n_rows + 1)))
    indices = torch.from_numpy(cols)

    def with_values(values: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # torch flags all sparse CSR support as beta; the two products used are tested
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            return torch.sparse_csr_tensor(indptr, indices, values, (n_rows, n_cols), check_invariants=False)

    return with_values


def fit_one_vs_all(X: np.ndarray, pairs_point: np.ndarray, pairs_label: np.ndarray, target: np.ndarray,
                   n_labels: int, l2: float, max_iter: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label logistic regressions on (point, label, 0/1) pairs; each label's loss is its mean over its pairs.

    The pairs are a sparse (point x label) pattern, so a loss evaluation is O(pairs x dim): the logits are a
    sampled dense-dense product on the pattern and the weight gradient a sparse-dense product on its transpose.
    """
    torch.manual_seed(seed)
    by_point = np.lexsort((pairs_label, pairs_point))
    pt, lab, y = pairs_point[by_point], pairs_label[by_point], torch.from_numpy(target[by_point].astype(np.float64))
    by_label = np.lexsort((pt, lab))  # the transpose's order, as a permutation of the by-point pairs
    pattern = _csr_pattern(pt, lab, X.shape[0], n_labels)(torch.zeros(pt.size, dtype=torch.float64))
    transpose = _csr_pattern(lab[by_label], pt[by_label], n_labels, X.shape[0])
    by_label_t = torch.from_numpy(by_label)
    Xt = torch.from_numpy(np.ascontiguousarray(X, np.float64))
    lab_t = torch.from_numpy(lab)
    scale = (1.0 / torch.bincount(lab_t, minlength=n_labels).clamp(min=1).double())[lab_t]
    w, b, opt = _linear_lbfgs(n_labels, X.shape[1], max_iter)

    @torch.no_grad()
    def closure():
        z = torch.sparse.sampled_addmm(pattern, Xt, w.T, beta=0.0).values() + b[lab_t]
        loss = ((torch.nn.functional.softplus(z) - y * z) * scale).sum() + 0.5 * l2 * (w * w).sum()
        r = (torch.sigmoid(z) - y) * scale
        w.grad = transpose(r[by_label_t]) @ Xt + l2 * w
        b.grad = torch.zeros(n_labels, dtype=torch.float64).index_add_(0, lab_t, r)
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


class Slice:
    def __init__(self, params: SliceParams = SliceParams()):
        self.params = params

    def _index(self, vectors: np.ndarray) -> hnswlib.Index:
        p = self.params
        index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        index.init_index(max_elements=vectors.shape[0], ef_construction=p.ef_construction, M=p.M, random_seed=p.seed)
        index.add_items(vectors, np.arange(vectors.shape[0]), num_threads=1)  # one thread: a deterministic graph
        index.set_ef(max(p.ef_search, p.shortlist))
        return index

    def shortlist(self, X: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine similarities) of the k labels nearest to each point."""
        k = min(k or self.params.shortlist, self.n_labels_)
        labels, dist = self.index_.knn_query(_unit(X), k=k, num_threads=1)
        return labels.astype(np.int64), 1.0 - dist

    def fit(self, X: np.ndarray, Y: list[list[int]], n_labels: int) -> Slice:
        self.n_labels_ = n_labels
        self.label_vectors_ = label_vectors(X, Y, n_labels)
        self.index_ = self._index(self.label_vectors_)
        near, _ = self.shortlist(X)
        pos_point = np.repeat(np.arange(len(Y)), [len(y) for y in Y])
        pos_label = np.fromiter((l for y in Y for l in y), np.int64)
        # hard negatives: shortlisted labels the point does not have
        neg_point = np.repeat(np.arange(len(Y)), near.shape[1])
        neg_label = near.ravel()
        is_pos = np.isin(neg_point * n_labels + neg_label, pos_point * n_labels + pos_label)
        neg_point, neg_label = neg_point[~is_pos], neg_label[~is_pos]
        self.w_, self.b_ = fit_one_vs_all(
            _unit(X), np.concatenate([pos_point, neg_point]), np.concatenate([pos_label, neg_label]),
            np.r_[np.ones(pos_point.size), np.zeros(neg_point.size)], n_labels, self.params.l2,
            self.params.max_iter, self.params.seed)
        return self

    def predict(self, X: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, scores) per point, best first, from the shortlist."""
        labels, sim = self.shortlist(X, max(k, self.params.shortlist))
        Xu = _unit(X)
        logits = np.einsum("nd,nkd->nk", Xu, self.w_[labels]) + self.b_[labels]
        prob = 1.0 / (1.0 + np.exp(-logits))
        cw = self.params.classifier_weight
        score = prob ** cw * ((1.0 + sim) / 2.0) ** (1.0 - cw)
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(labels, order, 1), np.take_along_axis(score, order, 1)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "slice.json", type(self), FORMAT_VERSION, params=asdict(self.params), n_labels=self.n_labels_)
        np.savez(d / "slice.npz", label_vectors=self.label_vectors_, w=self.w_, b=self.b_)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Slice:
        d = Path(directory)
        meta = read_meta(d / "slice.json", cls, FORMAT_VERSION)
        model = cls(SliceParams(**meta["params"]))
        model.n_labels_ = meta["n_labels"]
        with np.load(d / "slice.npz", allow_pickle=False) as z:
            model.label_vectors_, model.w_, model.b_ = z["label_vectors"], z["w"], z["b"]
        model.index_ = model._index(model.label_vectors_)  # rebuilt: deterministic given the vectors and seed
        return model


def exact_one_vs_all(X: np.ndarray, Y: list[list[int]], n_labels: int, l2: float = 1e-3, max_iter: int = 200,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The reference Slice approximates: every label trained against all points (the same per-label objective,
    computed densely since every (point, label) pair is present)."""
    torch.manual_seed(seed)
    Xt = torch.from_numpy(_unit(X).astype(np.float64))
    target = torch.zeros((len(Y), n_labels), dtype=torch.float64)
    for i, y in enumerate(Y):
        target[i, list(y)] = 1.0
    w, b, opt = _linear_lbfgs(n_labels, X.shape[1], max_iter)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(Xt @ w.T + b, target, reduction="mean")
        total = loss * n_labels + 0.5 * l2 * (w * w).sum()  # = sum over labels of each label's mean loss
        total.backward()
        return total

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()
