"""Data drawn from a known mixed model, for tests and benchmarks: the right answer is known."""

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
