"""SANNS entities (002 §4.4): what jobs seekers like a member applied to, aggregated into entities for clauses.

For every job with applications before the cutoff, its first `first_appliers` appliers are looked up in the user-
vector index; each applier's `neighbours` most similar seekers are *attributed the job* with the applier's cosine
to them. Per member, the attributed jobs' titles and occupations are summed by cosine, and the `top` of each kind
become the member's SANNS entities, best first.
"""

from __future__ import annotations

import numpy as np

from jobmatch.ann.index import ShardedIndex
from jobmatch.features.ids import IdIndex
from jobmatch.features.keys import dense_codes


def _top_per_member(member: np.ndarray, value: np.ndarray, weight: np.ndarray, top: int
                    ) -> dict[int, list[str]]:
    key = dense_codes(member, value)
    first = np.unique(key, return_index=True)[1]
    total = np.bincount(key, weights=weight)
    m, v, w = member[first], value[first], total[key[first]]
    order = np.lexsort((v, -w, m))
    m, v = m[order], v[order]
    out: dict[int, list[str]] = {}
    for mm, vv in zip(m.tolist(), v.tolist()):
        picked = out.setdefault(mm, [])
        if len(picked) < top:
            picked.append(vv)
    return out


def sanns_entities(index: ShardedIndex, apply_member: np.ndarray, apply_job: np.ndarray, apply_ts: np.ndarray,
                   job_ids: np.ndarray, job_title: np.ndarray, job_occupation: np.ndarray, first_appliers: int = 10,
                   neighbours: int = 20, top: int = 5) -> dict[int, tuple[list[str], list[str]]]:
    """member id -> (titles, occupations) of the jobs similar seekers applied to (see the module docstring).
    The applications are (member, job, time) arrays; `job_ids` with their titles and occupations describe jobs."""
    apply_member, apply_job = np.asarray(apply_member, np.int64), np.asarray(apply_job, np.int64)
    rows = index.rows(apply_member)
    keep = rows >= 0
    rows, job, ts = rows[keep], apply_job[keep], np.asarray(apply_ts)[keep]
    order = np.lexsort((rows, ts, job))
    rows, job = rows[order], job[order]
    starts = np.flatnonzero(np.r_[True, job[1:] != job[:-1]]) if job.size else np.zeros(0, np.int64)
    rank = np.arange(job.size) - np.repeat(starts, np.diff(np.r_[starts, job.size]))
    rows, job = rows[rank < first_appliers], job[rank < first_appliers]
    if rows.size == 0:
        return {}
    appliers, inv = np.unique(rows, return_inverse=True)
    nb, sims = index.search(index.vectors_[appliers], neighbours + 1)  # + 1: the applier is their own nearest
    nb, sims = nb[inv.ravel()], sims[inv.ravel()]
    own = (nb == rows[:, None]) | (nb < 0)
    member = np.where(own, -1, index.keys_[np.maximum(nb, 0)]).ravel()
    job_rep = np.repeat(job, nb.shape[1])
    weight = np.maximum(sims.ravel(), 0.0)
    valid = member >= 0
    member, job_rep, weight = member[valid], job_rep[valid], weight[valid]
    where = IdIndex(np.asarray(job_ids), "job_id").rows(job_rep)
    titles = _top_per_member(member, np.asarray(job_title, object)[where], weight, top)
    occupations = _top_per_member(member, np.asarray(job_occupation, object)[where], weight, top)
    return {m: (titles.get(m, []), occupations.get(m, [])) for m in titles.keys() | occupations.keys()}


__all__ = ["sanns_entities"]
