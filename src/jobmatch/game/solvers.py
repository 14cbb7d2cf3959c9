"""Solvers for L2 / Gaussian-prior logistic regression with offsets and weights.

Objective of one model (fixed effect) or of each entity's model (random effect):

    f(b) = sum_i w_i * (softplus(o_i + x_i.b) - y_i * (o_i + x_i.b)) + 1/2 * sum_j lam_j * (b_j - mu_j)^2

with y_i in {0, 1}. `lam`/`mu` express both plain L2 (mu = 0) and the Gaussian prior of incremental training
(mu = previous coefficients, lam = 1 / previous variances). Column 0 of X is the intercept.

`fit_grouped` solves E such problems whose rows are grouped (E = 1 for a fixed effect) by Newton's method with
the exact Hessian and a per-problem backtracking line search. It takes consecutive problems a chunk of rows at a
time, so that their working arrays stay cache-sized whatever the data's size, and within a chunk (`Blocks`,
`newton`) a step costs a handful of whole-array operations whatever the number of problems: per-row margins,
per-problem sums and gradients as one sparse (E, rows) product, and the E Hessians as one sparse product with the
rows' pairwise feature products x_j x_k. A problem too large for a chunk is solved alone, going through its rows
a chunk at a time, its Hessian from BLAS. Problems leave the iteration when f is within `tol` (relative) of its
minimum by Newton's estimate, and once half have left, the rest are carried on alone. `fit_each_scipy` is the
reference the solver is tested against: one L-BFGS fit per entity, as GDMix does.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

# Rows are taken this many bytes of working arrays at a time: small enough to stay in cache, and below glibc's
# mmap threshold, so temporaries are reused rather than mapped and faulted in afresh on every operation.
CHUNK_BYTES = 16 << 20
# `fit_grouped` callers keep the chunks' pair products between fits while they take no more than this
PAIR_CACHE_BYTES = 512 << 20


# Per-row terms of the logistic loss for 0/1 y, from the signed margin u = (1 - 2y) z and e = exp(-|z|): the loss
# softplus(z) - y z = softplus(u), the residual p - y = (1 - 2y) sigmoid(u) and the curvature p (1 - p). Written
# so that nothing cancels far in the tails (1 - p computed as 1 - p is 0 in float32 once z > 17, which stalls
# Newton on separable rows), and so that a step's loss and the next step's derivatives share one exp.

def _loss(u: np.ndarray, e: np.ndarray) -> np.ndarray:
    return np.log1p(e) + np.maximum(u, 0)


def _residual_and_curvature(u: np.ndarray, e: np.ndarray, sign: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = 1 / (1 + e)
    ea = e * a
    return sign * np.where(u >= 0, a, ea), ea * a


def log_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """softplus(z) - y z per row, for 0/1 y."""
    return _loss((1 - 2 * y) * z, np.exp(-np.abs(z)))


def residual_and_curvature(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p - y, p (1 - p)) per row with p = sigmoid(z), for 0/1 y."""
    sign = 1 - 2 * y
    return _residual_and_curvature(sign * z, np.exp(-np.abs(z)), sign)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def objective(b: np.ndarray, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray, lam: np.ndarray,
              mu: np.ndarray) -> float:
    return float(w @ log_loss(o + X @ b, y) + 0.5 * lam @ (b - mu) ** 2)


def _obj_grad(b, X, y, w, o, lam, mu):
    z = o + X @ b
    r = w * residual_and_curvature(z, y)[0]
    return float(w @ log_loss(z, y) + 0.5 * lam @ (b - mu) ** 2), X.T @ r + lam * (b - mu)


def fit_lbfgs(X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray, lam: np.ndarray, mu: np.ndarray,
              x0: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 2000,
              ftol: float = 1e-15) -> tuple[np.ndarray, np.ndarray]:
    """One model by L-BFGS; returns (coefficients, variances = 1 / diag(Hessian)).

    Stops when the largest gradient entry is below `tol` or the objective changes by less than `ftol` relative.
    """
    x0 = np.zeros(X.shape[1]) if x0 is None else x0
    res = minimize(_obj_grad, x0, args=(X, y, w, o, lam, mu), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": ftol, "gtol": tol, "maxcor": 20})
    b = res.x
    diag_h = ((w * residual_and_curvature(o + X @ b, y)[1])[:, None] * X * X).sum(axis=0) + lam
    return b, 1.0 / np.maximum(diag_h, 1e-12)


def fit_each_scipy(entity: np.ndarray, n_entities: int, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray,
                   lam: np.ndarray, mu: np.ndarray, x0: np.ndarray | None = None,
                   max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Reference: a Python loop of one scipy L-BFGS fit per entity. `lam`, `mu`, `x0` are (E, d)."""
    order = np.argsort(entity, kind="stable")
    bounds = np.searchsorted(entity[order], np.arange(n_entities + 1))
    coef = np.zeros((n_entities, X.shape[1]))
    var = np.zeros_like(coef)
    for e in range(n_entities):
        rows = order[bounds[e]:bounds[e + 1]]
        coef[e], var[e] = fit_lbfgs(X[rows], y[rows], w[rows], o[rows], lam[e], mu[e],
                                    None if x0 is None else x0[e], max_iter=max_iter)
    return coef, var


def pair_products(X: np.ndarray) -> np.ndarray:
    """(n, d(d+1)/2): x_j * x_k of every row for j <= k, in `np.triu_indices(d)` order."""
    n, d = X.shape
    # built column-major, where each product is one long contiguous multiply: with the two transposes, faster
    # than row-major's short rows
    columns = np.ascontiguousarray(X.T)
    out = np.empty((d * (d + 1) // 2, n), X.dtype)
    at = 0
    for j in range(d):
        np.multiply(columns[j], columns[j:], out=out[at:at + d - j])
        at += d - j
    return np.ascontiguousarray(out.T)


def rows_of_blocks(indptr: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """The rows of `blocks` (ascending block indices), in order."""
    starts, sizes = indptr[blocks], indptr[blocks + 1] - indptr[blocks]
    firsts = np.cumsum(sizes) - sizes
    return np.arange(sizes.sum()) + np.repeat(starts - firsts, sizes)


class Blocks:
    """The rows of E independent problems: block e owns rows indptr[e]:indptr[e + 1] (none empty) of X, y, w.

    X's dtype is the working precision of the per-row arithmetic; sums over rows and the solves are float64.
    Several blocks hold their rows' pair products for the Hessians (so they should be chunk-sized: see
    `fit_grouped`); a single block goes through its rows a chunk at a time and takes its Hessian from BLAS.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, w: np.ndarray, indptr: np.ndarray, pairs: bool = True):
        self.X = X
        self.y = y.astype(X.dtype, copy=False)
        self.w = w.astype(X.dtype, copy=False)
        self.sign = 1 - 2 * self.y
        self.indptr = np.asarray(indptr, np.int64)
        self.n_blocks = self.indptr.size - 1
        n, d = X.shape
        self.block = None if self.n_blocks == 1 else np.repeat(np.arange(self.n_blocks), np.diff(self.indptr))
        self._pairs = pair_products(X) if pairs and self.block is not None else None
        iu, ju = np.triu_indices(d)
        packed_at = np.zeros((d, d), np.int64)  # where x_j x_k of the full (d, d) matrix is in the packed triangle
        packed_at[iu, ju] = packed_at[ju, iu] = np.arange(iu.size)
        self._full = packed_at.ravel()
        # scipy keeps int32 indices when they fit; giving it int32 spares a conversion on every sparse product
        index = np.int32 if n < np.iinfo(np.int32).max else np.int64
        self._cols, self._ptr = np.arange(n, dtype=index), self.indptr.astype(index)
        step = max(1, CHUNK_BYTES // (4 * d * X.itemsize))
        self._chunks = [slice(lo, lo + step) for lo in range(0, n, step)] if self.block is None else [slice(None)]

    def subset(self, blocks: np.ndarray, pairs: bool = True) -> tuple[Blocks, np.ndarray | slice]:
        """Blocks `blocks` alone (with their pair products if `pairs`); returns them and their rows here."""
        if blocks.size == self.n_blocks:
            return self, slice(None)
        rows = rows_of_blocks(self.indptr, blocks)
        sizes = self.indptr[blocks + 1] - self.indptr[blocks]
        sub = Blocks(self.X[rows], self.y[rows], self.w[rows], np.r_[0, np.cumsum(sizes)], pairs=False)
        if pairs and self._pairs is not None and sub.block is not None:
            sub._pairs = self._pairs[rows]
        return sub, rows

    def per_row(self, values: np.ndarray) -> np.ndarray:
        """A per-block array spread to the blocks' rows."""
        return np.broadcast_to(values, self.X.shape[:1]) if self.block is None else values[self.block]

    def scores(self, b: np.ndarray) -> np.ndarray:
        """x_i . b_block(i) for every row; b is (E, d)."""
        b = b.astype(self.X.dtype)
        if self.block is not None:
            return np.einsum("nd,nd->n", self.X, b[self.block])
        out = np.empty(self.X.shape[0], self.X.dtype)
        for c in self._chunks:
            np.matmul(self.X[c], b[0], out=out[c])
        return out

    def margins(self, b: np.ndarray, o: np.ndarray) -> np.ndarray:
        """o_i + x_i . b_block(i) for every row."""
        out = self.scores(b)
        out += o
        return out

    def _by_block(self, values: np.ndarray) -> sp.csr_array:
        """The (E, rows) matrix whose products with row-wise arrays sum them per block, weighted by `values`."""
        return sp.csr_array((values, self._cols, self._ptr), shape=(self.n_blocks, self.X.shape[0]))

    def objectives(self, z: np.ndarray, b: np.ndarray, lam: np.ndarray,
                   mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f of every block at coefficients b (E, d), given the rows' margins z; and e = exp(-|z|) per row."""
        e = np.exp(-np.abs(z))
        if self.block is None:
            loss = np.array([sum(float(self.w[c] @ _loss(self.sign[c] * z[c], e[c])) for c in self._chunks)])
        else:
            loss = np.add.reduceat(self.w * _loss(self.sign * z, e), self.indptr[:-1], dtype=np.float64)
        return loss + 0.5 * (lam * (b - mu) ** 2).sum(axis=1), e

    def _terms(self, z: np.ndarray, e: np.ndarray, c: slice) -> tuple[np.ndarray, np.ndarray]:
        """Weighted residuals and curvatures of rows c."""
        r, s = _residual_and_curvature(self.sign[c] * z[c], e[c], self.sign[c])
        return self.w[c] * r, self.w[c] * s

    def gradients(self, z: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Gradients (E, d) of the data terms of f given the rows' margins z and e from `objectives`, and the rows'
        curvatures for `hessians` (None for a single block, which recomputes them a chunk at a time)."""
        if self.block is None:
            g = sum(self.X[c].T @ self._terms(z, e, c)[0] for c in self._chunks)
            return np.asarray(g, np.float64)[None], None
        r, s = self._terms(z, e, slice(None))
        return (self._by_block(r) @ self.X).astype(np.float64), s

    def hessians(self, z: np.ndarray, e: np.ndarray, s: np.ndarray | None) -> np.ndarray:
        """Hessians (E, d, d) of the data terms of f, given what `gradients` was given and returned."""
        d = self.X.shape[1]
        if self.block is None:
            h = np.zeros((d, d))
            for c in self._chunks:
                xs = self.X[c] * np.sqrt(self._terms(z, e, c)[1])[:, None]
                h += xs.T @ xs  # numpy takes A.T @ A to BLAS syrk
            return h[None]
        pairs = self._pairs if self._pairs is not None else pair_products(self.X)
        packed = (self._by_block(s) @ pairs).astype(np.float64)
        return packed[:, self._full].reshape(self.n_blocks, d, d)

    def diagonals(self, z: np.ndarray) -> np.ndarray:
        """The diagonals of the Hessians (E, d) of the data terms of f, given the rows' margins z."""
        e = np.exp(-np.abs(z))
        if self.block is None:
            return np.array([sum((self.X[c] ** 2).T @ self._terms(z, e, c)[1] for c in self._chunks)], np.float64)
        return (self._by_block(self._terms(z, e, slice(None))[1]) @ self.X ** 2).astype(np.float64)


def newton(blocks: Blocks, o: np.ndarray, lam: np.ndarray, mu: np.ndarray, b0: np.ndarray, tol: float = 1e-9,
           max_iter: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimize every block's f from b0 (E, d); `o` is per row.

    Returns the coefficients, the variances 1 / diag(Hessian) (both (E, d)) and the rows' scores x_i . b.

    A block is finished when f is within `tol` (relative) of its minimum by Newton's estimate g' H^-1 g / 2, or
    by the bound g' diag(lam)^-1 g / 2 (H >= diag(lam)), which needs no Hessian: a warm-started block usually
    finishes on it, so the step that would only confirm convergence costs a gradient rather than a solve.
    """
    o = o.astype(blocks.X.dtype, copy=False)
    # rounding in the working precision can make a good step near the optimum look slightly worse
    slack = 10 * np.finfo(blocks.X.dtype).eps
    diag = np.arange(b0.shape[1])
    b = b0.astype(np.float64)
    todo = np.arange(b.shape[0])  # the blocks still iterating; `part` holds just their rows once it is compacted
    part, o_part = blocks, o
    z = part.margins(b, o_part)
    f, e = part.objectives(z, b, lam, mu)
    finished = np.zeros(todo.size, bool)
    for _ in range(max_iter):
        b_t, lam_t, mu_t = b[todo], lam[todo], mu[todo]
        g, s = part.gradients(z, e)
        g += lam_t * (b_t - mu_t)
        with np.errstate(divide="ignore", invalid="ignore"):  # lam = 0 (an unshrunk intercept): no bound
            bound = np.where(lam_t > 0, g * g / lam_t, np.inf).sum(axis=1)
        finished |= 0.5 * bound <= tol * np.maximum(np.abs(f), 1.0)
        if finished.all():
            break
        if finished.sum() >= todo.size / 2:  # carry on with the rest alone
            keep = np.flatnonzero(~finished)
            part, rows = part.subset(keep)
            o_part, z, e, f, g = o_part[rows], z[rows], e[rows], f[keep], g[keep]
            todo, finished = todo[keep], finished[keep]
            s = None if s is None else s[rows]
            b_t, lam_t, mu_t = b[todo], lam[todo], mu[todo]
        h = part.hessians(z, e, s)
        h[:, diag, diag] += lam_t + 1e-12
        with _blas().limit(limits=1):  # E small solves: threads only add overhead (and contention when busy)
            step = np.linalg.solve(h, g[..., None])[..., 0]
        step[finished] = 0.0
        decrement = (g * step).sum(axis=1)  # Newton's estimate of twice the distance to the minimum
        finished |= 0.5 * decrement <= tol * np.maximum(np.abs(f), 1.0)  # the step is still taken below
        trial = b_t - step
        z_trial = part.margins(trial, o_part)
        f_trial, e_trial = part.objectives(z_trial, trial, lam_t, mu_t)
        ok = f_trial <= f - 1e-4 * decrement + slack * np.abs(f)
        bad = np.flatnonzero(~ok & ~finished)
        if bad.size:  # the rare full steps that did not decrease f: backtrack on those blocks' rows alone
            sub, rows = part.subset(bad, pairs=False)
            pending, alpha = np.ones(bad.size, bool), 1.0
            while pending.any() and alpha > 1e-10:
                alpha /= 2
                t = b_t[bad] - alpha * step[bad]
                z_sub = sub.margins(t, o_part[rows])
                f_sub, e_sub = sub.objectives(z_sub, t, lam_t[bad], mu_t[bad])
                accept = pending & (f_sub <= f[bad] - 1e-4 * alpha * decrement[bad] + slack * np.abs(f[bad]))
                trial[bad[accept]], f_trial[bad[accept]], ok[bad[accept]] = t[accept], f_sub[accept], True
                accepted_rows = sub.per_row(accept)
                z_trial[rows] = np.where(accepted_rows, z_sub, z_trial[rows])
                e_trial[rows] = np.where(accepted_rows, e_sub, e_trial[rows])
                pending &= ~accept
            finished[bad[pending]] = True  # no step decreases f in rounding: as good as it gets
        b[todo] = np.where(ok[:, None], trial, b_t)
        ok_rows = part.per_row(ok)
        z, e, f = np.where(ok_rows, z_trial, z), np.where(ok_rows, e_trial, e), np.where(ok, f_trial, f)
    scores = blocks.scores(b)
    return b, 1.0 / np.maximum(blocks.diagonals(o + scores) + lam, 1e-12), scores


def pair_bytes(X: np.ndarray) -> int:
    """The size of the pair products of X's rows."""
    return X.shape[0] * X.shape[1] * (X.shape[1] + 1) // 2 * X.itemsize


def fit_grouped(X: np.ndarray, y: np.ndarray, w: np.ndarray, indptr: np.ndarray, o: np.ndarray, lam: np.ndarray,
                mu: np.ndarray, b0: np.ndarray, tol: float = 1e-9, max_iter: int = 50,
                cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E problems whose rows are grouped: problem e owns rows indptr[e]:indptr[e + 1] (none empty) of X, y, w, o.

    `lam`, `mu`, `b0` are (E, d); X's dtype is the working precision. Returns the coefficients and variances
    1 / diag(Hessian), both (E, d), and the rows' scores x_i . b_e (in X's dtype). Consecutive problems are
    solved together a chunk of about CHUNK_BYTES of pair products at a time; a problem larger than that is solved
    alone, its rows taken a chunk at a time.
    `cache`: a dict kept by the caller to reuse the chunks (and their pair products) in the next fit of the same
    rows with other offsets or priors, as coordinate descent does.
    """
    y, w = y.astype(X.dtype, copy=False), w.astype(X.dtype, copy=False)
    d = X.shape[1]
    rows_per_chunk = max(1, CHUNK_BYTES // (d * (d + 1) // 2 * X.itemsize))
    coef, var, scores = np.empty(b0.shape), np.empty(b0.shape), np.empty(X.shape[0], X.dtype)
    first = 0
    while first < b0.shape[0]:
        last = max(first + 1, int(np.searchsorted(indptr, indptr[first] + rows_per_chunk, side="right")) - 1)
        rows = slice(indptr[first], indptr[last])
        blocks = cache.get(first) if cache is not None else None
        if blocks is None:
            blocks = Blocks(X[rows], y[rows], w[rows], indptr[first:last + 1] - indptr[first])
            if cache is not None:
                cache[first] = blocks
        coef[first:last], var[first:last], scores[rows] = newton(blocks, o[rows], lam[first:last], mu[first:last],
                                                                 b0[first:last], tol, max_iter)
        first = last
    return coef, var, scores


def fit_batched(entity: np.ndarray, n_entities: int, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray,
                lam: np.ndarray, mu: np.ndarray, x0: np.ndarray | None = None, tol: float = 1e-9,
                max_iter: int = 50, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """All entities' models at once; `entity` holds codes 0..n_entities-1 per row, `lam`, `mu`, `x0` are (E, d).

    An entity without rows keeps its prior: coefficients mu, variances 1 / lam.
    """
    counts = np.bincount(entity, minlength=n_entities)
    present = np.flatnonzero(counts)
    order = np.argsort(entity, kind="stable")
    coef = mu.astype(np.float64)
    var = 1.0 / np.maximum(lam, 1e-12)
    start = np.zeros((present.size, X.shape[1])) if x0 is None else x0[present]
    coef[present], var[present], _ = fit_grouped(X[order].astype(dtype, copy=False), y[order], w[order],
                                                 np.r_[0, np.cumsum(counts[present])], o[order], lam[present],
                                                 mu[present], start, tol, max_iter)
    return coef, var
