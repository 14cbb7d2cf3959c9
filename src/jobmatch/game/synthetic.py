"""Data drawn from a known mixed model, for tests, benchmarks and examples: the right answer is known."""

from __future__ import annotations

import numpy as np


def known_mixed_model(n_members: int = 300, n_jobs: int = 200, rows: int = 40_000, seed: int = 0,
                      member_scale: float = 1.0, job_scale: float = 1.0) -> tuple[dict[str, np.ndarray], dict]:
    """Rows (member, job) with global features g1..g3, job features j1..j2 and member features m1..m2.

    logit = global . [1, g] + beta_member . [1, j] + beta_job . [1, m]; returns (columns, true coefficients).
    """
    rng = np.random.default_rng(seed)
    member = rng.integers(n_members, size=rows)
    job = rng.integers(n_jobs, size=rows)
    g = rng.normal(size=(rows, 3))
    j_feat = rng.normal(size=(n_jobs, 2))
    m_feat = rng.normal(size=(n_members, 2))
    true_global = np.array([-0.5, 1.0, -0.7, 0.4])
    true_member = rng.normal(0, member_scale, size=(n_members, 3))
    true_job = rng.normal(0, job_scale, size=(n_jobs, 3))
    xj = np.column_stack([np.ones(rows), j_feat[job]])
    xm = np.column_stack([np.ones(rows), m_feat[member]])
    logit = (np.column_stack([np.ones(rows), g]) @ true_global + (xj * true_member[member]).sum(1)
             + (xm * true_job[job]).sum(1))
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    cols = {"response": y, "member_id": member.astype(np.int64), "job_id": job.astype(np.int64),
            "g1": g[:, 0], "g2": g[:, 1], "g3": g[:, 2], "j1": j_feat[job, 0], "j2": j_feat[job, 1],
            "m1": m_feat[member, 0], "m2": m_feat[member, 1]}
    return cols, {"global": true_global, "member": true_member, "job": true_job}


def ratings_like(n_users: int = 943, n_items: int = 1682, rows: int = 100_000, n_genres: int = 19,
                 n_occupations: int = 21, seed: int = 0) -> dict[str, np.ndarray]:
    """A ratings table laid out like MovieLens-100k, drawn from a known GAME model, in float32 like most Parquet.

    Columns: user_id, item_id (int64), liked (0/1); item features genre0.., item_age (years since release): what
    a per-user model sees; user features age (years), female, occupation0.. (one-hot), tenure (years): what a
    per-item model sees. With the defaults that is 20 item and 24 user features, 44 for a global model on both.
    Features are on their raw scales, as they come: one-hot flags beside ages in years (and the one-hot
    occupations sum to the intercept), which makes first-order solvers slow. Users' activity is log-normal and
    items' popularity Zipf-like, so a few entities have hundreds of rows and many a handful, as in real ratings.
    logit = intercept + global . [u, i] + [1, i] . b_user[user] + [1, u] . b_item[item], on standardized features.
    """
    rng = np.random.default_rng(seed)
    user_x = np.column_stack([rng.normal(33, 12, n_users).clip(7, 75), rng.random(n_users) < 0.3,
                              np.eye(n_occupations)[rng.choice(n_occupations, n_users, p=_zipf(n_occupations))],
                              rng.gamma(2.0, 1.5, n_users)]).astype(np.float32)
    item_x = np.column_stack([rng.random((n_items, n_genres)) < rng.uniform(0.03, 0.4, n_genres),
                              rng.gamma(2.0, 8.0, n_items)]).astype(np.float32)
    user_z = (user_x - user_x.mean(0)) / (user_x.std(0) + 1e-9)
    item_z = (item_x - item_x.mean(0)) / (item_x.std(0) + 1e-9)
    user = rng.choice(n_users, rows, p=_normalized(rng.lognormal(0.0, 0.8, n_users)))
    item = rng.permutation(n_items)[rng.choice(n_items, rows, p=_zipf(n_items, 10.0))]
    d_u, d_i = user_x.shape[1], item_x.shape[1]
    b_global = rng.normal(0, 0.5 / np.sqrt(d_u + d_i), d_u + d_i)
    b_user = np.column_stack([rng.normal(0, 0.8, n_users), rng.normal(0, 0.35, (n_users, d_i))])
    b_item = np.column_stack([rng.normal(0, 0.8, n_items), rng.normal(0, 0.15, (n_items, d_u))])
    logit = np.full(rows, -0.2)
    # in slices, so that 10M-row tables need no (rows, features) float64 temporaries
    for lo in range(0, rows, 1 << 20):
        s = slice(lo, lo + (1 << 20))
        u, i = user[s], item[s]
        logit[s] += user_z[u] @ b_global[:d_u] + item_z[i] @ b_global[d_u:]
        logit[s] += b_user[u, 0] + np.einsum("nd,nd->n", item_z[i], b_user[u, 1:])
        logit[s] += b_item[i, 0] + np.einsum("nd,nd->n", user_z[u], b_item[i, 1:])
    cols: dict[str, np.ndarray] = {"user_id": user.astype(np.int64), "item_id": item.astype(np.int64),
                                   "liked": (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)}
    names = ["age", "female"] + [f"occupation{k}" for k in range(n_occupations)] + ["tenure"]
    cols.update({name: user_x[user, k] for k, name in enumerate(names)})
    cols.update({name: item_x[item, k] for k, name in enumerate([f"genre{k}" for k in range(n_genres)] + ["item_age"])})
    return cols


def ratings_features(n_genres: int = 19, n_occupations: int = 21) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(user features, item features) of `ratings_like` with these counts."""
    return (("age", "female", *(f"occupation{k}" for k in range(n_occupations)), "tenure"),
            (*(f"genre{k}" for k in range(n_genres)), "item_age"))


def _normalized(p: np.ndarray) -> np.ndarray:
    return p / p.sum()


def _zipf(n: int, shift: float = 1.0) -> np.ndarray:
    return _normalized(1.0 / (np.arange(n) + shift) ** 0.9)
