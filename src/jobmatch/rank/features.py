"""Features of a search result (query, job, seeker), the same code for training and serving.

Dense features: the job x profile match (`features.PairFeaturizer`), how the query matches the job (title word
overlap, every query word in the title, the query naming one of the job's skills, remote asked x remote offered)
and the seeker's own title, the job's age and its applications and views so far, and the seeker's recent activity
(`features.activity_features`) — every count as of the impression's time. Categorical features are hashed ids
(CRC-32 of `field=value`, stable across processes) of the job's occupation and city, the seeker's occupation, the
query, and the crosses query x job occupation, seeker occupation x job occupation and seniority x seniority: the
wide part learns a weight per id, the deep part an embedding.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from jobmatch.features.activity import activity_features, counts_before
from jobmatch.features.ids import IdIndex
from jobmatch.features.pairs import PAIR_FEATURES, PairFeaturizer

DAY_US = 86_400_000_000
QUERY_FEATURES = ("query_title_overlap", "query_in_title", "query_is_job_skill", "query_remote",
                  "query_remote_x_job_remote", "query_member_title_overlap")
JOB_FEATURES = ("job_age_days", "job_applies_before", "job_views_before")
ACTIVITY = ("member_events_7d", "member_applies_30d", "member_apply_rate")
DENSE_FEATURES = PAIR_FEATURES + QUERY_FEATURES + JOB_FEATURES + ACTIVITY + ("has_user_vector",)
CATEGORICAL_FEATURES = ("job_occupation", "job_location", "member_occupation", "query", "query_x_job_occupation",
                        "member_x_job_occupation", "seniority_x_seniority")
BUCKETS = 1 << 16


def words(text: str | None) -> list[str]:
    return (text or "").lower().replace("/", " ").replace("-", " ").split()


def hashed(field: str, values: np.ndarray, buckets: int = BUCKETS) -> np.ndarray:
    """Stable ids in [0, buckets) for `field=value` (CRC-32; Python's `hash` is salted per process)."""
    uniq, inv = np.unique(np.asarray(values, object).astype(str), return_inverse=True)
    codes = np.fromiter((zlib.crc32(f"{field}={u}".encode()) % buckets for u in uniq), np.int64, uniq.size)
    return codes[inv.ravel()]


class SearchFeaturizer:
    """Dense and hashed categorical features of (member, job, query, time) rows, from the jobs and members tables
    and the events before each row's time."""

    def __init__(self, jobs: pa.Table, members: pa.Table, events: pa.Table, buckets: int = BUCKETS):
        job_ids = jobs["job_id"].to_numpy()
        # one hiring project per job for the pair featurizer, keyed by the job id itself
        self._pairs = PairFeaturizer(jobs, members, pa.table({"project_id": job_ids, "job_id": job_ids}))
        self._jobs = IdIndex(job_ids, "job_id")
        self._members = IdIndex(members["member_id"].to_numpy(), "member_id")
        self._job_title = [set(words(t)) for t in jobs["title"].to_pylist()]
        self._job_skills = [{s.lower() for s in (sk or ())} for sk in jobs["skills"].to_pylist()]
        self._member_title = [set(words(t)) for t in members["title"].to_pylist()]
        self._job_occ = np.asarray(jobs["occupation"].to_pylist(), object)
        self._job_loc = np.asarray(jobs["location"].to_pylist(), object)
        self._job_remote = np.asarray(jobs["remote"].to_pylist(), bool)
        self._job_sen = jobs["seniority"].to_numpy()
        self._posted = jobs["posted_at"].cast(pa.int64()).to_numpy()
        self._member_occ = np.asarray(members["occupation"].to_pylist(), object)
        self._member_sen = members["seniority"].to_numpy()
        self._events = events.select(["member_id", "ts", "action", "job_id"])
        self.buckets = buckets

    def transform(self, member_ids, job_ids, queries, ts_us, has_vector=None) -> tuple[np.ndarray, np.ndarray]:
        """(dense float32 (n, len(DENSE_FEATURES)), categorical int64 (n, len(CATEGORICAL_FEATURES))).
        `has_vector`: whether each row's member has a user vector (their tower input is zeros otherwise)."""
        member_ids, job_ids = np.asarray(member_ids, np.int64), np.asarray(job_ids, np.int64)
        ts = np.asarray(ts_us, np.int64)
        queries = [q or "" for q in queries]
        j, m = self._jobs.rows(job_ids), self._members.rows(member_ids)
        pair = self._pairs.features(job_ids, member_ids)
        q_words = [set(words(q)) - {"remote"} for q in queries]
        q_remote = np.array(["remote" in words(q) for q in queries], float)
        title = [self._job_title[r] for r in j.tolist()]
        overlap = np.array([len(q & t) / max(len(q | t), 1) for q, t in zip(q_words, title)])
        in_title = np.array([bool(q) and q <= t for q, t in zip(q_words, title)], float)
        skill = np.array([" ".join(sorted(q)) in {" ".join(sorted(words(s))) for s in self._job_skills[r]}
                          for q, r in zip(q_words, j.tolist())], float)
        own = np.array([len(q & self._member_title[r]) / max(len(q | self._member_title[r]), 1)
                        for q, r in zip(q_words, m.tolist())])
        ev = self._events
        ev_job = ev["job_id"].fill_null(-1).to_numpy()
        ev_ts = ev["ts"].cast(pa.int64()).to_numpy()
        action = ev["action"].to_numpy(zero_copy_only=False)
        acted = ev_job >= 0
        col = np.where(action[acted] == "APPLY", 0, np.where(action[acted] == "VIEW", 1, 2))
        job_counts = counts_before(ev_job[acted], ev_ts[acted], col, 3, job_ids, ts)
        dense = np.column_stack([
            pair, overlap, in_title, skill, q_remote, q_remote * self._job_remote[j], own,
            (ts - self._posted[j]) / DAY_US, np.log1p(job_counts[:, 0]), np.log1p(job_counts[:, 1]),
            activity_features(ev, member_ids, ts),
            np.zeros(ts.size) if has_vector is None else np.asarray(has_vector, float)]).astype(np.float32)
        query_key = np.array([" ".join(sorted(q)) for q in q_words], object)
        job_occ, member_occ = self._job_occ[j], self._member_occ[m]
        cats = np.column_stack([
            hashed("job_occupation", job_occ, self.buckets), hashed("job_location", self._job_loc[j], self.buckets),
            hashed("member_occupation", member_occ, self.buckets), hashed("query", query_key, self.buckets),
            hashed("query_x_job_occupation", query_key + "|" + job_occ, self.buckets),
            hashed("member_x_job_occupation", member_occ + "|" + job_occ, self.buckets),
            hashed("seniority_x_seniority", self._member_sen[m] * 10 + self._job_sen[j], self.buckets)])
        return dense, cats


__all__ = ["CATEGORICAL_FEATURES", "DENSE_FEATURES", "SearchFeaturizer", "hashed"]
