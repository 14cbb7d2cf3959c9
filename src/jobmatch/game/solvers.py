"""Solvers for L2 / Gaussian-prior logistic regression with offsets and weights.

Objective of one model (fixed effect) or of each entity's model (random effect):

    f(b) = sum_i w_i * (softplus(o_i + x_i.b) - y_i * (o_i + x_i.b)) + 1/2 * sum_j lam_j * (b_j - mu_j)^2

`lam`/`mu` express both plain L2 (mu = 0) and the Gaussian prior of incremental training (mu = previous
coefficients, lam = 1 / previous variances). Column 0 of X is the intercept.

`fit_batched` solves many small entity models at once: entities are bucketed by sample count, padded to the
bucket's size with zero weights, and all of a bucket's Newton steps are taken together with batched (E, d, d)
solves and a per-entity backtracking line search. `fit_each_scipy` is the reference it is tested against:
one L-BFGS fit per entity, as GDMix does.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit


def softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def objective(b: np.ndarray, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray, lam: np.ndarray,
              mu: np.ndarray) -> float:
    z = o + X @ b
    return float(w @ (softplus(z) - y * z) + 0.5 * lam @ (b - mu) ** 2)


def _obj_grad(b, X, y, w, o, lam, mu):
    z = o + X @ b
    r = w * (expit(z) - y)
    return float(w @ (softplus(z) - y * z) + 0.5 * lam @ (b - mu) ** 2), X.T @ r + lam * (b - mu)


def fit_lbfgs(X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray, lam: np.ndarray, mu: np.ndarray,
              x0: np.ndarray | None = None, tol: float = 1e-9, max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """One model by L-BFGS; returns (coefficients, variances = 1 / diag(Hessian))."""
    x0 = np.zeros(X.shape[1]) if x0 is None else x0
    res = minimize(_obj_grad, x0, args=(X, y, w, o, lam, mu), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "ftol": 1e-15, "gtol": tol, "maxcor": 20})
    b = res.x
    p = expit(o + X @ b)
    diag_h = ((w * p * (1 - p))[:, None] * X * X).sum(axis=0) + lam
    return b, 1.0 / np.maximum(diag_h, 1e-12)


def fit_each_scipy(entity: np.ndarray, n_entities: int, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray,
                   lam: np.ndarray, mu: np.ndarray, x0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reference: a Python loop of one scipy L-BFGS fit per entity. `lam`, `mu`, `x0` are (E, d)."""
    order = np.argsort(entity, kind="stable")
    bounds = np.searchsorted(entity[order], np.arange(n_entities + 1))
    coef = np.zeros((n_entities, X.shape[1]))
    var = np.zeros_like(coef)
    for e in range(n_entities):
        rows = order[bounds[e]:bounds[e + 1]]
        coef[e], var[e] = fit_lbfgs(X[rows], y[rows], w[rows], o[rows], lam[e], mu[e],
                                    None if x0 is None else x0[e])
    return coef, var


def _bucket_sizes(counts: np.ndarray) -> np.ndarray:
    """Padded size per entity: the next power of two (at least 4), so padding wastes at most half."""
    return np.maximum(4, 2 ** np.ceil(np.log2(np.maximum(counts, 1)))).astype(np.int64)


def fit_batched(entity: np.ndarray, n_entities: int, X: np.ndarray, y: np.ndarray, w: np.ndarray, o: np.ndarray,
                lam: np.ndarray, mu: np.ndarray, x0: np.ndarray | None = None, tol: float = 1e-10,
                max_iter: int = 50, max_cells: int = 20_000_000) -> tuple[np.ndarray, np.ndarray]:
    """All entities' models by batched Newton; `entity` holds codes 0..n_entities-1 per row."""
    d = X.shape[1]
    coef = np.zeros((n_entities, d)) if x0 is None else x0.astype(float).copy()
    var = np.zeros((n_entities, d))
    order = np.argsort(entity, kind="stable")
    counts = np.bincount(entity, minlength=n_entities)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    size = _bucket_sizes(counts)
    for n_pad in np.unique(size[counts > 0]):
        ents = np.flatnonzero((size == n_pad) & (counts > 0))
        chunk = max(1, max_cells // (int(n_pad) * d))
        for lo in range(0, ents.size, chunk):
            e = ents[lo:lo + chunk]
            # gather each entity's rows into (E, n_pad) slots; padded slots have zero weight
            slot = np.arange(n_pad)[None, :]
            valid = slot < counts[e][:, None]
            idx = order[np.minimum(starts[e][:, None] + slot, entity.size - 1)]
            Xb = np.where(valid[..., None], X[idx], 0.0)
            yb, ob = y[idx], np.where(valid, o[idx], 0.0)
            wb = np.where(valid, w[idx], 0.0)
            coef[e], var[e] = _newton(Xb, yb, wb, ob, lam[e], mu[e], coef[e], tol, max_iter)
    return coef, var


def _batched_obj(b, X, y, w, o, lam, mu):
    z = o + np.matmul(X, b[..., None])[..., 0]
    return (w * (softplus(z) - y * z)).sum(axis=1) + 0.5 * (lam * (b - mu) ** 2).sum(axis=1)


def _newton(X, y, w, o, lam, mu, b, tol, max_iter):
    """Newton steps for a bucket (E entities, n padded rows, d coefficients); batched BLAS throughout."""
    Xt = X.transpose(0, 2, 1)
    eye = np.eye(b.shape[1])
    limit = tol * np.maximum(1.0, w.sum(axis=1))
    f = _batched_obj(b, X, y, w, o, lam, mu)
    for _ in range(max_iter):
        p = expit(o + np.matmul(X, b[..., None])[..., 0])
        g = np.matmul(Xt, (w * (p - y))[..., None])[..., 0] + lam * (b - mu)
        # converged: gradient small relative to the entity's total weight (Newton gets there in a few steps)
        done = np.abs(g).max(axis=1) <= limit
        if done.all():
            break
        h = np.matmul(Xt, X * (w * p * (1 - p))[..., None]) + lam[:, :, None] * eye + 1e-12 * eye
        step = np.linalg.solve(h, g[..., None])[..., 0]
        step[done] = 0.0
        decrement = (g * step).sum(axis=1)
        trial = b - step
        f_trial = _batched_obj(trial, X, y, w, o, lam, mu)
        slack = 1e-12 * np.abs(f)  # near the optimum, rounding alone can make a good step look worse
        ok = done | (f_trial <= f - 1e-4 * decrement + slack)
        b = np.where(ok[:, None], trial, b)
        f = np.where(ok, f_trial, f)
        # the rare full steps that did not decrease the objective: backtrack on just those entities
        bad = np.flatnonzero(~ok)
        alpha = 0.5
        while bad.size and alpha > 1e-10:
            t = b[bad] - alpha * step[bad]
            ft = _batched_obj(t, X[bad], y[bad], w[bad], o[bad], lam[bad], mu[bad])
            accept = ft <= f[bad] - 1e-4 * alpha * decrement[bad] + slack[bad]
            b[bad[accept]], f[bad[accept]] = t[accept], ft[accept]
            bad, alpha = bad[~accept], alpha / 2
    p = expit(o + np.matmul(X, b[..., None])[..., 0])
    diag_h = np.matmul((X * X).transpose(0, 2, 1), (w * p * (1 - p))[..., None])[..., 0] + lam
    return b, 1.0 / np.maximum(diag_h, 1e-12)
