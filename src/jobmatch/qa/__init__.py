"""Qualified Applicant (001) features: what the global, per-member and per-job models see.

global (member x job):   match features of the pair (occupation, title, skills, seniority gap, location, ...)
per-member (job side):   the job's seniority, remote flag and a low-rank embedding of its skills
per-job (member side):   the member's seniority, open-to-work flag and the same embedding of their skills
The skill embedding is a truncated SVD of the member/job x skill matrix (one space for both), so the
per-entity models stay small (a handful of coefficients each).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from jobmatch.game.model import Coordinate, GameModel
from jobmatch.features import PAIR_FEATURES, IdIndex, PairFeaturizer, rows_in

GLOBAL_FEATURES = PAIR_FEATURES


class QAFeaturizer:
    """`skill_basis` (skill -> its row of the embedding), when given, fixes the skill embedding: the one a model
    was trained with is published beside its coefficients so that serving computes the same features even after
    the job and member tables have changed. Skills it does not know embed to zero."""

    def __init__(self, jobs: pa.Table, members: pa.Table, projects: pa.Table, rank: int = 6, seed: int = 0,
                 skill_basis: dict[str, list[float]] | None = None):
        self.pairs = PairFeaturizer(jobs, members, projects)
        self.project_of_job = dict(zip(projects["job_id"].to_pylist(), projects["project_id"].to_pylist()))
        self._project_index = IdIndex(projects["project_id"].to_numpy(), "project_id")
        self._project_job_ids = projects["job_id"].to_numpy()
        if skill_basis is None:
            stacked = sp.vstack([self.pairs.member_skills, self.pairs.job_skills]).astype(np.float64)
            norms = np.sqrt(np.maximum(np.asarray(stacked.sum(axis=1)).ravel(), 1.0))
            stacked = sp.diags(1.0 / norms) @ stacked
            k = min(rank, min(stacked.shape) - 1)
            v0 = np.random.default_rng(seed).normal(size=min(stacked.shape))
            _, _, vt = svds(stacked, k=k, v0=v0)
            vt = vt[::-1]  # largest singular values first
            vt *= np.sign(vt[:, :1] + 1e-12)  # a fixed sign per component, for reproducible features
            self._basis = vt.T
        else:
            k = len(next(iter(skill_basis.values()))) if skill_basis else rank
            self._basis = np.array([skill_basis.get(s, [0.0] * k) for s in self.pairs.skill_names], np.float64
                                   ).reshape(len(self.pairs.skill_names), k)
        self.rank = k
        self.job_features = ("job_seniority", "job_remote") + tuple(f"job_skill_{i}" for i in range(k))
        self.member_features = ("member_seniority", "open_to_work") + tuple(f"member_skill_{i}" for i in range(k))

    def skill_basis(self) -> dict[str, list[float]]:
        """The skill embedding as a JSON-able record, to publish with a model trained on these features."""
        return {name: [float(x) for x in row] for name, row in zip(self.pairs.skill_names, self._basis)}

    def _embed(self, matrix: sp.csr_matrix) -> np.ndarray:
        norms = np.sqrt(np.maximum(np.asarray(matrix.sum(axis=1)).ravel(), 1.0))
        return np.asarray(matrix @ self._basis) / norms[:, None]

    def features(self, project_ids: np.ndarray, member_ids: np.ndarray) -> dict[str, np.ndarray]:
        """Columns for aligned (project, member) arrays: ids plus every feature the QA models use."""
        project_ids, member_ids = np.asarray(project_ids), np.asarray(member_ids)
        j, m = self.pairs.job_rows(project_ids), self.pairs.member_rows(member_ids)
        pair = self.pairs.features(project_ids, member_ids)
        cols: dict[str, np.ndarray] = {
            "project_id": project_ids.astype(np.int64), "member_id": member_ids.astype(np.int64),
            "job_id": self._project_job_ids[self._project_index.rows(project_ids)].astype(np.int64)}
        cols.update({name: pair[:, i] for i, name in enumerate(GLOBAL_FEATURES)})
        job_emb = self._embed(self.pairs.job_skills[j])
        mem_emb = self._embed(self.pairs.member_skills[m])
        cols["job_seniority"] = self.pairs.job_sen[j] - 3.0
        cols["job_remote"] = self.pairs.job_remote[j]
        cols["member_seniority"] = self.pairs.member_sen[m] - 3.0
        cols["open_to_work"] = self.pairs.open_to_work[m]
        for i in range(self.rank):
            cols[f"job_skill_{i}"] = job_emb[:, i]
            cols[f"member_skill_{i}"] = mem_emb[:, i]
        return cols


def qa_coordinates(f: QAFeaturizer, l2_global: float = 1.0, l2_member: float = 2.0, l2_job: float = 2.0,
                   min_samples: int = 2) -> list[Coordinate]:
    """global on pair features; per-member on job features; per-job on member features."""
    return [Coordinate("global", "fixed", tuple(GLOBAL_FEATURES), l2=l2_global),
            Coordinate("member", "random", f.job_features, l2=l2_member, entity="member_id", min_samples=min_samples),
            Coordinate("job", "random", f.member_features, l2=l2_job, entity="job_id", min_samples=min_samples)]


def subset_rows(cols: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in cols.items()}


def label_keys(rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(project, member, label) columns: an application whose label changes counts as new."""
    return rows["project_id"], rows["member_id"], rows["response"]


def new_labels(rows: dict[str, np.ndarray], seen: tuple[np.ndarray, ...]) -> np.ndarray:
    """Mask of the rows whose (application, label) is not in `seen` (a previous `label_keys`)."""
    return ~rows_in(label_keys(rows), seen)


def catch_up_rows(rows: dict[str, np.ndarray], new: np.ndarray, prior: GameModel) -> np.ndarray:
    """The rows an incremental update fits: the new labels, plus the older rows of every entity that has a new label
    but no model in the prior yet. Such an entity had fewer than min_samples rows before; fitting today's rows alone
    would leave a member whose labels arrive one a day without a model for good, where a full retrain fits it as
    soon as it has min_samples."""
    fit = new.copy()
    for coordinate, column in (("member", "member_id"), ("job", "job_id")):
        model = prior.coordinates_.get(coordinate)
        modelled = np.isin(rows[column], model.entity_ids) if model is not None else np.zeros(new.size, bool)
        fit |= np.isin(rows[column], np.unique(rows[column][new])) & ~modelled
    return fit


def incremental_fit(coordinates: list[Coordinate], rows: dict[str, np.ndarray], fit: np.ndarray, prior: GameModel,
                    seed: int, refit_global: bool = False, passes: int = 1,
                    max_prior_precision: float | None = None) -> GameModel:
    """One incremental update: the prior's posterior as the prior, fit on the rows of `fit` (see `catch_up_rows`)
    for every member and job with such a row, the global model too when `refit_global`."""
    update = {"global": np.array([]) if refit_global else None, "member": np.unique(rows["member_id"][fit]),
              "job": np.unique(rows["job_id"][fit])}
    return GameModel(coordinates, passes=passes, seed=seed).fit(subset_rows(rows, fit), prior=prior, update=update,
                                                                keep_best=False,
                                                                max_prior_precision=max_prior_precision)
