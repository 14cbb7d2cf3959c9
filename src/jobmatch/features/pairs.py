"""Job x candidate match features, shared by the hiring ranker, the Qualified Applicant model and the activity
recommender (the same code offline and at serving)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from jobmatch.features.ids import IdIndex

PAIR_FEATURES = ("same_occupation", "title_overlap", "skill_overlap", "skill_matches", "seniority_gap",
                 "abs_seniority_gap", "location_match", "job_remote", "open_to_work")


def _tokens(texts: list[str]) -> list[set[str]]:
    return [set(t.lower().replace("/", " ").replace("-", " ").split()) for t in texts]


def _csr(sets: list, vocab: dict[str, int]) -> tuple[list[int], list[int]]:
    indptr, indices = [0], []
    for items in sets:
        indices.extend(sorted({vocab.setdefault(x, len(vocab)) for x in items}))
        indptr.append(len(indices))
    return indptr, indices


class PairFeaturizer:
    """Job x candidate match features, vectorized with sparse matrices (the same code offline and at serving)."""

    def __init__(self, jobs: pa.Table, members: pa.Table, projects: pa.Table):
        self._jobs = IdIndex(jobs["job_id"].to_numpy(), "job")
        self._members = IdIndex(members["member_id"].to_numpy(), "member_id")
        self._projects = IdIndex(projects["project_id"].to_numpy(), "project_id")
        # job row of each project row (-1 where the project's job is unknown)
        self._project_job_row = self._jobs.rows(projects["job_id"].to_numpy(), strict=False)
        skill_vocab: dict[str, int] = {}
        title_vocab: dict[str, int] = {}
        mats = {}
        for name, table in (("job", jobs), ("member", members)):
            sk = _csr(table["skills"].to_pylist(), skill_vocab)
            ti = _csr(_tokens(table["title"].to_pylist()), title_vocab)
            mats[name] = (sk, ti)

        def build(parts: tuple[list[int], list[int]], width: int) -> sp.csr_matrix:
            indptr, indices = parts
            return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(indptr) - 1, width))
        self.skill_names = list(skill_vocab)
        self.job_skills = build(mats["job"][0], len(skill_vocab))
        self.member_skills = build(mats["member"][0], len(skill_vocab))
        self.job_title = build(mats["job"][1], len(title_vocab))
        self.member_title = build(mats["member"][1], len(title_vocab))
        self.job_occ = jobs["occupation"].to_numpy(zero_copy_only=False)
        self.member_occ = members["occupation"].to_numpy(zero_copy_only=False)
        self.job_sen = jobs["seniority"].to_numpy().astype(float)
        self.member_sen = members["seniority"].to_numpy().astype(float)
        self.job_loc = jobs["location"].to_numpy(zero_copy_only=False)
        self.member_loc = members["location"].to_numpy(zero_copy_only=False)
        self.job_remote = jobs["remote"].to_numpy(zero_copy_only=False).astype(float)
        self.open_to_work = members["open_to_work"].to_numpy(zero_copy_only=False).astype(float)

    def job_rows(self, project_ids) -> np.ndarray:
        rows = self._project_job_row[self._projects.rows(project_ids)]
        if (rows < 0).any():
            raise ValueError(f"project_id: the job of project {np.asarray(project_ids)[rows < 0][0]} is unknown")
        return rows

    def member_rows(self, member_ids) -> np.ndarray:
        return self._members.rows(member_ids)

    def features(self, project_ids, member_ids) -> np.ndarray:
        """(n, len(PAIR_FEATURES)) for aligned arrays of project and member ids."""
        j, m = self.job_rows(project_ids), self.member_rows(member_ids)
        js, ms = self.job_skills[j], self.member_skills[m]
        matches = np.asarray(js.multiply(ms).sum(axis=1)).ravel()
        n_job_skills = np.maximum(np.diff(js.indptr), 1)
        jt, mt = self.job_title[j], self.member_title[m]
        inter = np.asarray(jt.multiply(mt).sum(axis=1)).ravel()
        union = np.maximum(np.diff(jt.indptr) + np.diff(mt.indptr) - inter, 1)
        gap = self.member_sen[m] - self.job_sen[j]
        remote = self.job_remote[j]
        return np.column_stack([
            (self.job_occ[j] == self.member_occ[m]).astype(float), inter / union, matches / n_job_skills, matches,
            gap, np.abs(gap), ((self.job_loc[j] == self.member_loc[m]) | (remote > 0)).astype(float), remote,
            self.open_to_work[m],
        ])
