"""Slice (Jain et al., WSDM 2019), a clean-room implementation from the paper (its C++ code is non-commercial).

Training: each label's vector is the normalized mean of its positive points; a label index over those vectors
(HNSW for dense features, a k-means label tree for sparse ones) shortlists, for every training point, the labels
nearest to it; each label's one-vs-all linear classifier is then trained on its positives plus the points that
shortlisted it without having it (hard negatives), O(N·log L) pairs instead of O(N·L). Prediction: shortlist
labels, then combine each shortlisted label's classifier score with its similarity to the point.

The classifiers are squared-hinge linear SVMs solved by liblinear's dual coordinate descent (scikit-learn's
LinearSVC), PECOS XR-Linear's default loss and solver. Each label's objective is |w|²/2 + C × the *sum* of its
pairs' losses (liblinear's convention), so a longer shortlist adds negatives without changing the regularization.
Unset hyperparameters (C, classifier weight, prediction shortlist) are chosen on a validation split of the
training points, never on test data.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import hnswlib
import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from jobmatch.persist import read_meta, write_meta
from jobmatch.xmc.tree import LabelTree, unit_rows

FORMAT_VERSION = 2
CLASSIFIER_WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)  # tried on the validation split when classifier_weight is None
BATCH_ELEMENTS = 1 << 22  # prediction works on batches of about this many gathered weights (16 MB of float32)
CHUNK_NNZ = 1 << 20  # liblinear solves labels in chunks of about this many design-matrix nonzeros ...
CHUNK_WEIGHTS = 1 << 24  # ... and at most this many weights


@dataclass(frozen=True)
class SliceParams:
    M: int = 32  # HNSW graph degree (dense features)
    ef_construction: int = 200
    ef_search: int = 200
    leaf_size: int = 100  # labels per cluster of the label tree (sparse features)
    beam: int = 10  # clusters searched per point in the label tree
    shortlist: int = 20  # labels shortlisted per training point: its hard negatives (the paper's num_nbrs)
    C: float | None = None  # per label: |w|^2 / 2 + C * sum of squared hinge losses; None: chosen on validation
    C_grid: tuple[float, ...] = (0.5, 2.0)
    classifier_weight: float | None = None  # score = sigmoid(margin)^cw * ((1 + cos) / 2)^(1 - cw); None: chosen
    predict_shortlist: int | None = None  # labels scored per point at prediction; None: chosen (at most shortlist)
    validation: float = 0.2  # share of the training points held out to choose what is None
    tol: float = 0.1  # liblinear's stopping tolerance (PECOS's default)
    max_iter: int = 100
    n_jobs: int = 1  # processes solving label chunks; any value gives the same model
    seed: int = 0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def unit_features(X: np.ndarray | sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    return unit_rows(X) if sp.issparse(X) else _unit(X)


def check_features(X, n_features: int | None = None) -> np.ndarray | sp.csr_matrix:
    """X as float32 C-contiguous or CSR, after checking its shape, feature count and values."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32)
        values = X.data
    else:
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X: expected a 2-D (points x features) array, got shape {X.shape}")
        X = np.ascontiguousarray(X, dtype=np.float32)
        values = X.ravel()
    if X.shape[0] == 0:
        raise ValueError("X: no rows")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X: {X.shape[1]} features, the model was fit on {n_features}")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        row = np.searchsorted(X.indptr, bad[0], side="right") - 1 if sp.issparse(X) else bad[0] // X.shape[1]
        raise ValueError(f"X: NaN or infinity in row {row}")
    return X


def check_labels(Y, n_rows: int, n_labels: int | None = None) -> sp.csr_matrix:
    """Y as a (points x labels) 0/1 CSR matrix with sorted indices, from a CSR matrix or lists of label ids."""
    if isinstance(Y, np.ndarray):
        raise TypeError(f"Y: a dense {Y.shape} array is ambiguous (label ids or 0/1 indicators?); pass "
                         "scipy.sparse.csr_matrix(Y) for an indicator matrix or a list of label-id lists")
    if sp.issparse(Y):
        Y = sp.csr_matrix(Y, dtype=np.float32)
        if n_labels is not None and n_labels != Y.shape[1]:
            raise ValueError(f"Y: n_labels={n_labels} but the indicator matrix has {Y.shape[1]} columns")
        Y.eliminate_zeros()
        if np.any(Y.data != 1):
            raise ValueError(f"Y: an indicator matrix holds 0/1, found {Y.data[Y.data != 1][0]}")
    else:
        lengths = np.array([len(y) for y in Y], np.int64)
        ids = np.fromiter((label for y in Y for label in y), np.int64, int(lengths.sum()))
        if n_labels is None:
            n_labels = int(ids.max()) + 1 if ids.size else 0
        out = np.flatnonzero((ids < 0) | (ids >= n_labels))
        if out.size:
            row = np.searchsorted(np.cumsum(lengths), out[0], side="right")
            raise ValueError(f"Y: label id {ids[out[0]]} in row {row} is outside 0..{n_labels - 1} "
                             f"(n_labels={n_labels})")
        Y = sp.csr_matrix((np.ones(ids.size, np.float32), ids, np.r_[0, np.cumsum(lengths)]),
                          shape=(len(lengths), n_labels))
        Y.sum_duplicates()
        Y.data[:] = 1
    if Y.shape[0] != n_rows:
        raise ValueError(f"Y: {Y.shape[0]} rows for {n_rows} rows of X")
    if Y.shape[1] == 0:
        raise ValueError("Y: no labels (n_labels=0)")
    Y.sort_indices()
    return Y


def label_vectors(Xu: np.ndarray | sp.csr_matrix, Y: sp.csr_matrix) -> np.ndarray | sp.csr_matrix:
    """Normalized mean of each label's (unit) positive points; zero for a label without any."""
    sums = Y.T @ Xu
    return unit_rows(sp.csr_matrix(sums)) if sp.issparse(Xu) else _unit(np.asarray(sums))


def _solve_chunk(Xa: sp.csr_matrix, point: np.ndarray, label: np.ndarray, target: np.ndarray, n_local: int,
                 C: float, tol: float, max_iter: int, seed: int) -> np.ndarray:
    """One liblinear problem for labels 0..n_local-1 of a chunk: pair (i, l) is point i's row moved into column block
    l, so each label has its own weights and the labels' objectives stay independent; returns (n_local, width)."""
    width = Xa.shape[1]
    A = Xa[point]
    n_cols = (n_local + 1) * width
    # two anchor pairs of opposite classes in a column block of their own: liblinear needs both classes, and an
    # unshared block leaves every label's problem unchanged
    indices = np.r_[A.indices + np.repeat(label * width, np.diff(A.indptr)), n_local * width, n_local * width]
    A = sp.csr_matrix((np.r_[A.data, 1.0, 1.0], indices.astype(np.int32), np.r_[A.indptr, A.nnz + 1, A.nnz + 2]),
                      shape=(point.size + 2, n_cols))
    svm = LinearSVC(C=C, tol=tol, max_iter=max_iter, fit_intercept=False, random_state=seed)
    svm.fit(A, np.r_[target.astype(np.int64), 1, 0])
    return svm.coef_.reshape(-1)[:n_local * width].reshape(n_local, width)


def fit_pairs(Xu: np.ndarray | sp.csr_matrix, point: np.ndarray, label: np.ndarray, target: np.ndarray,
              n_labels: int, C: float, tol: float = 0.1, max_iter: int = 100, seed: int = 0, n_jobs: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
    """Per-label squared-hinge SVMs on (point, label, 0/1 target) pairs sorted by label: label l minimizes
    |w_l|^2 / 2 + b_l^2 / 2 + C * sum over its pairs of max(0, 1 - y (w_l . x + b_l))^2 (liblinear, with the bias
    a feature of value 1, as LinearSVC's default). Returns float32 W (labels x features) and b; zero for a label
    without pairs.

    Labels are solved in chunks of about CHUNK_NNZ nonzeros, one liblinear call each, so the Python overhead is
    per chunk rather than per label; chunks depend only on the data, so n_jobs does not change the result.
    """
    n, dim = Xu.shape
    width = dim + 1
    Xa = sp.hstack([sp.csr_matrix(Xu, dtype=np.float64), np.ones((n, 1))], format="csr")
    start = np.searchsorted(label, np.arange(n_labels + 1))
    nnz_before = np.r_[0, np.cumsum(np.diff(Xa.indptr)[point])][start[:-1]]
    key = np.maximum(nnz_before // CHUNK_NNZ, np.arange(n_labels) // max(1, CHUNK_WEIGHTS // width))
    bounds = np.r_[0, np.flatnonzero(np.diff(key)) + 1, n_labels]
    chunks = [(lo, hi) for lo, hi in itertools.pairwise(bounds) if start[hi] > start[lo]]
    with warnings.catch_warnings():  # max_iter caps the passes, as PECOS does; stopping there is intended
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        solved = Parallel(n_jobs=n_jobs)(
            delayed(_solve_chunk)(Xa, point[start[lo]:start[hi]], label[start[lo]:start[hi]] - lo,
                                  target[start[lo]:start[hi]], hi - lo, C, tol, max_iter, seed) for lo, hi in chunks)
    W = np.zeros((n_labels, width), np.float32)
    for (lo, hi), w in zip(chunks, solved):
        W[lo:hi] = w
    return np.ascontiguousarray(W[:, :dim]), W[:, dim].copy()


def pair_margins(Xu: np.ndarray | sp.csr_matrix, labels: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """w_l . x + b_l for every (row, labels[row, j]); entries with label -1 are meaningless (callers mask them)."""
    safe = np.maximum(labels, 0)
    if not sp.issparse(Xu):
        return np.einsum("nd,nsd->ns", Xu, W[safe]) + b[safe]
    n, s = labels.shape
    per_pair = np.repeat(np.diff(Xu.indptr), s)
    pair = np.repeat(np.arange(n * s), per_pair)
    position = np.repeat(np.repeat(Xu.indptr[:-1], s) - (np.cumsum(per_pair) - per_pair), per_pair) + \
        np.arange(pair.size)
    products = W[safe.ravel()[pair], Xu.indices[position]] * Xu.data[position]
    return np.bincount(pair, weights=products, minlength=n * s).reshape(n, s).astype(np.float32) + b[safe]


def combine(margins: np.ndarray, sims: np.ndarray, labels: np.ndarray, classifier_weight: float) -> np.ndarray:
    """Slice's score, sigmoid(margin)^cw * ((1 + cos) / 2)^(1 - cw); -1 where there is no label."""
    closeness = np.clip((1.0 + sims) / 2.0, 0.0, 1.0)
    score = expit(margins) ** classifier_weight * closeness ** (1.0 - classifier_weight)
    return np.where(labels >= 0, score, -1.0)


class Slice:
    def __init__(self, params: SliceParams | None = None, **overrides):
        self.params = replace(params or SliceParams(), **overrides)

    def get_params(self, deep: bool = True) -> dict:
        return asdict(self.params)

    def set_params(self, **params) -> Slice:
        self.params = replace(self.params, **params)
        return self

    # --- label shortlist -------------------------------------------------------------------------------------
    def _hnsw(self, vectors: np.ndarray) -> hnswlib.Index:
        p = self.params
        index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
        index.init_index(max_elements=vectors.shape[0], ef_construction=p.ef_construction, M=p.M, random_seed=p.seed)
        index.add_items(vectors, np.arange(vectors.shape[0]), num_threads=1)  # one thread: a deterministic graph
        index.set_ef(max(p.ef_search, p.shortlist))
        return index

    def _fit_shortlist(self, Xu: np.ndarray | sp.csr_matrix, Y: sp.csr_matrix) -> Slice:
        p = self.params
        self.n_labels_ = Y.shape[1]
        self.label_vectors_ = label_vectors(Xu, Y)
        self.index_ = LabelTree(p.leaf_size, p.beam, p.seed).fit(self.label_vectors_) if sp.issparse(Xu) \
            else self._hnsw(self.label_vectors_)
        return self

    def _candidates(self, Xu: np.ndarray | sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosines) of each unit row's k nearest labels, nearest first; label -1 past the last one."""
        if isinstance(self.index_, LabelTree):
            return self.index_.query(Xu, k)
        found = min(k, self.n_labels_)
        labels, dist = self.index_.knn_query(Xu, k=found, num_threads=1)
        pad = ((0, 0), (0, k - found))
        return np.pad(labels.astype(np.int64), pad, constant_values=-1), \
            np.pad(1.0 - dist, pad, constant_values=-np.inf)

    @staticmethod
    def _batches(Xu: np.ndarray | sp.csr_matrix, per_pair: int, k: int):
        """Row batches holding about BATCH_ELEMENTS gathered values for k pairs of per_pair values per row."""
        step = max(1, BATCH_ELEMENTS // max(1, k * per_pair))
        return (Xu[lo:lo + step] for lo in range(0, Xu.shape[0], step))

    def _inputs(self, X) -> np.ndarray | sp.csr_matrix:
        """X checked against the fitted model (before any index sees it), as unit rows of the kind it was fit on."""
        X = check_features(X, self.n_features_in_)
        if isinstance(self.index_, LabelTree) != sp.issparse(X):
            X = sp.csr_matrix(X) if isinstance(self.index_, LabelTree) else X.toarray()
        return unit_features(X)

    def _scored(self, Xu: np.ndarray | sp.csr_matrix, k: int, W: np.ndarray, b: np.ndarray):
        """(labels, cosines, margins) of each row's k shortlisted labels, in bounded-memory batches."""
        per_pair = max(1, Xu.nnz // Xu.shape[0]) if sp.issparse(Xu) else Xu.shape[1]
        parts = []
        for batch in self._batches(Xu, per_pair, k):
            labels, sims = self._candidates(batch, k)
            parts.append((labels, sims, pair_margins(batch, labels, W, b)))
        return tuple(np.concatenate(columns) for columns in zip(*parts))

    def shortlist(self, X, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine similarities) of the k labels nearest to each point (-1 past the last label)."""
        Xu = self._inputs(X)
        k = k or self.params.shortlist
        parts = [self._candidates(batch, k) for batch in self._batches(Xu, 1, k)]
        return np.concatenate([a for a, _ in parts]), np.concatenate([s for _, s in parts])

    def _training_pairs(self, Xu: np.ndarray | sp.csr_matrix, Y: sp.csr_matrix
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, label, 0/1) pairs sorted by label then point: every positive, and every shortlisted label the
        point does not have (its hard negatives)."""
        n, n_labels = Y.shape
        near = np.concatenate([self._candidates(batch, min(self.params.shortlist, n_labels))[0]
                               for batch in self._batches(Xu, 1, self.params.shortlist)])
        rows = np.repeat(np.arange(n), near.shape[1])[near.ravel() >= 0]
        positive = Y.tocsc()  # its (label, point) keys come out sorted
        pos_key = np.repeat(np.arange(n_labels), np.diff(positive.indptr)) * n + positive.indices
        key = np.union1d(near.ravel()[near.ravel() >= 0] * n + rows, pos_key)
        label, point = np.divmod(key, n)
        return point, label, np.isin(key, pos_key, assume_unique=True)

    # --- fit -------------------------------------------------------------------------------------------------
    def fit(self, X, Y, n_labels: int | None = None) -> Slice:
        """X: (points x features) dense or CSR; Y: a (points x labels) 0/1 CSR matrix or lists of label ids (then
        n_labels, default max id + 1, sets the label count)."""
        X = check_features(X)
        Y = check_labels(Y, X.shape[0], n_labels)
        p = self.params
        Xu = unit_features(X)
        self.n_features_in_ = X.shape[1]
        self.selection_ = self._select(Xu, Y) if None in (p.C, p.classifier_weight, p.predict_shortlist) else \
            {"C": p.C, "classifier_weight": p.classifier_weight, "predict_shortlist": p.predict_shortlist}
        self._fit_shortlist(Xu, Y)
        point, label, target = self._training_pairs(Xu, Y)
        self.W_, self.b_ = fit_pairs(Xu, point, label, target, Y.shape[1], self.selection_["C"], p.tol, p.max_iter,
                                     p.seed, p.n_jobs)
        return self

    def _select(self, Xu: np.ndarray | sp.csr_matrix, Y: sp.csr_matrix) -> dict:
        """The unset hyperparameters with the best P@1 on a held-out share of the training points, the classifiers
        fit on the rest (C by refitting; classifier weight and prediction shortlist by rescoring)."""
        p = self.params
        n = Xu.shape[0]
        n_val = round(n * p.validation)
        if not 0 < n_val < n:
            raise ValueError(f"validation: {p.validation} of {n} points leaves no validation or no training point")
        order = np.random.default_rng(p.seed).permutation(n)
        held, kept = np.sort(order[:n_val]), np.sort(order[n_val:])
        probe = Slice(p)._fit_shortlist(Xu[kept], Y[kept])
        point, label, target = probe._training_pairs(Xu[kept], Y[kept])
        width = min(p.shortlist, Y.shape[1])
        lists = (p.predict_shortlist,) if p.predict_shortlist is not None else \
            tuple(sorted({max(1, width // 4), max(1, width // 2), width}, reverse=True))
        truth = Y[held]
        best = {"validation_p@1": -1.0}
        for C in (p.C,) if p.C is not None else p.C_grid:
            W, b = fit_pairs(Xu[kept], point, label, target, Y.shape[1], C, p.tol, p.max_iter, p.seed, p.n_jobs)
            labels, sims, margins = probe._scored(Xu[held], max(lists), W, b)
            for cw in (p.classifier_weight,) if p.classifier_weight is not None else CLASSIFIER_WEIGHTS:
                score = combine(margins, sims, labels, cw)
                for s in lists:
                    top = labels[np.arange(n_val), np.argmax(score[:, :s], axis=1)]
                    p1 = float(np.mean(np.asarray(truth[np.arange(n_val), np.maximum(top, 0)]).ravel() * (top >= 0)))
                    if p1 > best["validation_p@1"]:
                        best = {"C": C, "classifier_weight": cw, "predict_shortlist": s, "validation_p@1": p1}
        return best

    # --- predict ---------------------------------------------------------------------------------------------
    def predict_topk(self, X, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, scores) per point, best first, from its shortlist; label -1 and score 0 past the last."""
        if k < 1:
            raise ValueError(f"k: expected at least 1, got {k}")
        Xu = self._inputs(X)
        labels, sims, margins = self._scored(Xu, max(k, self.selection_["predict_shortlist"]), self.W_, self.b_)
        score = combine(margins, sims, labels, self.selection_["classifier_weight"])
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        labels, score = np.take_along_axis(labels, order, 1), np.take_along_axis(score, order, 1)
        return labels, np.maximum(score, 0.0)

    def predict(self, X, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Same as predict_topk (the call shape the intent flows use)."""
        return self.predict_topk(X, k)

    # --- persistence -----------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sparse = isinstance(self.index_, LabelTree)
        write_meta(d / "slice.json", type(self), FORMAT_VERSION, params=asdict(self.params), n_labels=self.n_labels_,
                   n_features=self.n_features_in_, sparse=sparse, selection=self.selection_)
        V = self.label_vectors_
        vectors = {"vectors_data": V.data, "vectors_indices": V.indices, "vectors_indptr": V.indptr,
                   "tree_assign": self.index_.assign_} if sparse else {"vectors": V}
        np.savez(d / "slice.npz", W=self.W_, b=self.b_, **vectors)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Slice:
        d = Path(directory)
        meta = read_meta(d / "slice.json", cls, FORMAT_VERSION)
        params = SliceParams(**{**meta["params"], "C_grid": tuple(meta["params"]["C_grid"])})
        model = cls(params)
        model.n_labels_, model.n_features_in_, model.selection_ = meta["n_labels"], meta["n_features"], \
            meta["selection"]
        with np.load(d / "slice.npz", allow_pickle=False) as z:
            model.W_, model.b_ = z["W"], z["b"]
            if meta["sparse"]:
                model.label_vectors_ = sp.csr_matrix(
                    (z["vectors_data"], z["vectors_indices"], z["vectors_indptr"]),
                    shape=(meta["n_labels"], meta["n_features"]))
                # rebuilt from the saved clusters: identical centroids, so identical shortlists
                model.index_ = LabelTree.from_assignment(model.label_vectors_, z["tree_assign"], params.leaf_size,
                                                         params.beam, params.seed)
            else:
                model.label_vectors_ = z["vectors"]
                model.index_ = model._hnsw(model.label_vectors_)  # deterministic given the vectors and seed
        return model


def exact_one_vs_all(X, Y, n_labels: int | None = None, C: float = 1.0, tol: float = 0.1, max_iter: int = 100,
                     seed: int = 0, n_jobs: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The reference Slice approximates: every label's classifier trained against every point (the same per-label
    objective as Slice's, with all (point, label) pairs present)."""
    X = check_features(X)
    Y = check_labels(Y, X.shape[0], n_labels)
    n, L = Y.shape
    label, point = np.divmod(np.arange(n * L), n)
    target = np.asarray(Y.T.todense()).ravel() > 0
    return fit_pairs(unit_features(X), point, label, target, L, C, tol, max_iter, seed, n_jobs)
