"""The anchor set of a job posting (002 §4.3): job-seekers whose profile matches the posting's entities exactly.

A member is an anchor of a job when their profile occupation is the job's and they live where the job is (any
location for a remote job). Anchors are ordered by how many of the job's skills their profile lists (most first,
then by id), so the first few are the strongest matches — the seed set an expansion starts from.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa


def exact_match_anchors(jobs: pa.Table, members: pa.Table) -> list[np.ndarray]:
    """Per row of `jobs` (occupation, location, remote, skills), the member ids of `members` (member_id,
    occupation, location, skills) that match it exactly, strongest first."""
    ids = members["member_id"].to_numpy()
    occupation = members["occupation"].to_pylist()
    location = np.asarray(members["location"].to_pylist(), object)
    skills = [set(s or ()) for s in members["skills"].to_pylist()]
    by_occupation: dict[str, list[int]] = defaultdict(list)
    for i, occ in enumerate(occupation):
        by_occupation[occ].append(i)
    groups = {occ: np.array(rows, np.int64) for occ, rows in by_occupation.items()}
    out = []
    for occ, loc, remote, job_skills in zip(jobs["occupation"].to_pylist(), jobs["location"].to_pylist(),
                                            jobs["remote"].to_pylist(), jobs["skills"].to_pylist()):
        rows = groups.get(occ, np.zeros(0, np.int64))
        if not remote:
            rows = rows[location[rows] == loc]
        wanted = set(job_skills or ())
        overlap = np.fromiter((len(skills[r] & wanted) for r in rows.tolist()), np.int64, rows.size)
        order = np.lexsort((ids[rows], -overlap))
        out.append(ids[rows[order]])
    return out


__all__ = ["exact_match_anchors"]
