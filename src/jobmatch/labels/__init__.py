"""Fast approximate label collection for hirer outcomes (001).

For each application (first APPLY of a member to a project's job), as of a date:
  positive             any positive hirer feedback (view profile, message, interview, offer) has arrived;
  explicit_negative    a negative rating (archive, skip, reject) and no positive;
  inferred_negative    no feedback on it, but the hirer already engaged with applications to the same job that
                       were submitted later (the hirer has moved past it);
  conclusive_negative  no feedback after `conclusive_days` (14) days;
  pending              none of the above yet: not trained on.
`known_at` is when the label became known, so label latency can be measured and training can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.features.keys import joint_codes
from jobmatch.schema import NEGATIVE_FEEDBACK, POSITIVE_FEEDBACK

DAY_US = 86_400_000_000
NEVER = np.iinfo(np.int64).max
STATUSES = ("positive", "explicit_negative", "inferred_negative", "conclusive_negative", "pending")


@dataclass(frozen=True)
class LabelPolicy:
    conclusive_days: float = 14.0
    infer_from_later_engagement: bool = True


def applications(events: pa.Table, projects: pa.Table) -> pa.Table:
    """First APPLY per (member, job), with the job's project: project_id, job_id, member_id, applied_at."""
    applies = events.filter(pc.equal(events["action"], "APPLY")).select(["member_id", "job_id", "ts"])
    joined = applies.join(projects.select(["project_id", "job_id"]), "job_id", join_type="inner")
    first = joined.group_by(["project_id", "job_id", "member_id"]).aggregate([("ts", "min")])
    first = first.rename_columns(["project_id", "job_id", "member_id", "applied_at"])
    return first.sort_by([("applied_at", "ascending"), ("project_id", "ascending"), ("member_id", "ascending")])


def _first_time(keys_apps: np.ndarray, keys_fb: np.ndarray, ts_fb: np.ndarray) -> np.ndarray:
    """Earliest feedback time per application key (NEVER if none)."""
    out = np.full(keys_apps.size, NEVER)
    if keys_fb.size == 0:
        return out
    order = np.lexsort((ts_fb, keys_fb))
    k, t = keys_fb[order], ts_fb[order]
    first = np.r_[True, k[1:] != k[:-1]]
    k, t = k[first], t[first]
    pos = np.clip(np.searchsorted(k, keys_apps), 0, k.size - 1)
    hit = k[pos] == keys_apps
    out[hit] = t[pos[hit]]
    return out


def _later_engagement(project: np.ndarray, applied: np.ndarray, engaged: np.ndarray) -> np.ndarray:
    """For each application, the earliest engagement with any application to the same project submitted later."""
    order = np.lexsort((-applied, project))  # per project, latest application first
    p, e = project[order], engaged[order]
    later = np.full(e.size, NEVER)
    bounds = np.flatnonzero(np.r_[True, p[1:] != p[:-1], True])
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        later[lo + 1:hi] = np.minimum.accumulate(e[lo:hi])[:-1]
    out = np.empty_like(later)
    out[order] = later
    return out


def collect_labels(apps: pa.Table, feedback: pa.Table, as_of_us: int, policy: LabelPolicy = LabelPolicy()
                   ) -> pa.Table:
    """Labels of `apps` (from `applications`) as of `as_of_us`, using only feedback that had arrived by then."""
    fb = feedback.filter(pc.less_equal(feedback["ts"].cast(pa.int64()), as_of_us))
    apps = apps.filter(pc.less_equal(apps["applied_at"].cast(pa.int64()), as_of_us))
    project = apps["project_id"].to_numpy()
    member = apps["member_id"].to_numpy()
    applied = apps["applied_at"].cast(pa.int64()).to_numpy()
    key, f_key = joint_codes((project, member), (fb["project_id"].to_numpy(), fb["member_id"].to_numpy()))
    f_ts = fb["ts"].cast(pa.int64()).to_numpy()
    kind = fb["feedback"].to_numpy(zero_copy_only=False)
    is_pos = np.isin(kind, [f.value for f in POSITIVE_FEEDBACK])
    is_neg = np.isin(kind, [f.value for f in NEGATIVE_FEEDBACK])
    first_pos = _first_time(key, f_key[is_pos], f_ts[is_pos])
    first_neg = _first_time(key, f_key[is_neg], f_ts[is_neg])
    engaged = np.minimum(first_pos, first_neg)
    later = (_later_engagement(project, applied, engaged) if policy.infer_from_later_engagement
             else np.full(applied.size, NEVER))
    conclusive = applied + int(policy.conclusive_days * DAY_US)

    silent = engaged == NEVER
    negative_at = np.minimum(later, np.where(conclusive <= as_of_us, conclusive, NEVER))  # earliest evidence wins
    choice = np.select(
        [first_pos != NEVER, first_neg != NEVER, silent & (negative_at != NEVER) & (later <= conclusive),
         silent & (negative_at != NEVER)],
        [STATUSES.index("positive"), STATUSES.index("explicit_negative"), STATUSES.index("inferred_negative"),
         STATUSES.index("conclusive_negative")], STATUSES.index("pending"))
    status = choice.astype(np.int8)
    known = np.select([status == 0, status == 1, status >= 2], [first_pos, first_neg, negative_at], NEVER)
    label = np.where(status == STATUSES.index("positive"), 1, 0).astype(np.int8)
    pending = status == STATUSES.index("pending")
    return apps.append_column("label", pa.array(label, mask=pending)) \
        .append_column("status", pa.array(np.array(STATUSES)[status])) \
        .append_column("known_at", pa.array(np.where(pending, 0, known), pa.timestamp("us", tz="UTC"), mask=pending))


def positive_latency(labels: pa.Table, max_days: int = 21) -> list[float]:
    """Share of (eventual) positives known within 1, 2, ..., max_days days of the application (001's figure)."""
    pos = labels.filter(pc.equal(labels["status"], "positive"))
    if pos.num_rows == 0:
        return [0.0] * max_days
    delay = (pos["known_at"].cast(pa.int64()).to_numpy() - pos["applied_at"].cast(pa.int64()).to_numpy()) / DAY_US
    return [float((delay < d).mean()) for d in range(1, max_days + 1)]
