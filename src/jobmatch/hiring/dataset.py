"""Point-in-time training data for the candidate ranker.

Every candidate row (a candidate shown to a project's hirer at time t) gets:
  * standard features: job/candidate match, seniority gap, location, two-way-interest signals;
  * personalization features computed from the project's counts *strictly before t* — the same numbers the online
    `HirerPreferences` would have produced at t, computed here for all rows at once with sorted cumulative counts;
  * a graded label from the hirer's feedback on that candidate in that channel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.features import (ACTIVITY_FEATURES, PAIR_FEATURES, PairFeaturizer, activity_features, counts_before,
                               joint_codes)
from jobmatch.hiring.online import CHANNELS, DEFAULT_COMBOS, RATINGS, feature_names
from jobmatch.hiring.terms import TERM_TYPES, ProfileTerms
from jobmatch.hiring.weights import DEFAULT_PRIOR_STRENGTH, term_weight

GRADE = {"offer": 4, "interview": 3, "message": 2, "view_profile": 1, "archive": 0, "skip": 0, "reject": 0}
CHANNEL_FEATURES = tuple(f"channel_{c}" for c in CHANNELS)
STANDARD_FEATURES = PAIR_FEATURES + ACTIVITY_FEATURES + CHANNEL_FEATURES
DAY_US = 86_400_000_000


@dataclass
class Shown:
    """Deduplicated hiring-side streams: impressions (p, m, s, ts) and ratings (p, m, s, r, ts), earliest first."""

    imp_p: np.ndarray
    imp_m: np.ndarray
    imp_s: np.ndarray
    imp_ts: np.ndarray
    fb_p: np.ndarray
    fb_m: np.ndarray
    fb_s: np.ndarray
    fb_r: np.ndarray
    fb_ts: np.ndarray


def _first(keys: list[np.ndarray], ts: np.ndarray) -> np.ndarray:
    """Indices of the earliest row per distinct key tuple."""
    order = np.lexsort((ts, *reversed(keys)))
    stacked = np.stack([k[order] for k in keys], axis=1)
    new = np.r_[True, (stacked[1:] != stacked[:-1]).any(axis=1)] if order.size else np.zeros(0, bool)
    return order[new]


def shown_streams(imp: pa.Table, feedback: pa.Table) -> Shown:
    """`imp`: project_id, member_id, channel, ts; both deduplicated the way `HirerPreferences` counts them."""
    ch = {c: i for i, c in enumerate(CHANNELS)}
    rt = {r: i for i, r in enumerate(RATINGS)}
    f_p, f_m = feedback["project_id"].to_numpy(), feedback["member_id"].to_numpy()
    f_s = np.array([ch[c] for c in feedback["channel"].to_pylist()], np.int64)
    f_r = np.array([rt[r] for r in feedback["feedback"].to_pylist()], np.int64)
    f_ts = feedback["ts"].cast(pa.int64()).to_numpy()
    # a rated candidate was shown
    i_p = np.concatenate([imp["project_id"].to_numpy(), f_p])
    i_m = np.concatenate([imp["member_id"].to_numpy(), f_m])
    i_s = np.concatenate([np.array([ch[c] for c in imp["channel"].to_pylist()], np.int64), f_s])
    i_ts = np.concatenate([imp["ts"].cast(pa.int64()).to_numpy(), f_ts])
    keep_i = _first([i_p, i_m, i_s], i_ts)
    keep_f = _first([f_p, f_m, f_s, f_r], f_ts)
    return Shown(i_p[keep_i], i_m[keep_i], i_s[keep_i], i_ts[keep_i],
                 f_p[keep_f], f_m[keep_f], f_s[keep_f], f_r[keep_f], f_ts[keep_f])


def personalization_features(terms: ProfileTerms, shown: Shown, q_project: np.ndarray, q_member: np.ndarray,
                             q_ts: np.ndarray, combos=DEFAULT_COMBOS,
                             prior_strength: float = DEFAULT_PRIOR_STRENGTH) -> np.ndarray:
    """z features of each query row (project, member, ts) from counts strictly before ts."""
    combo_s = np.array([CHANNELS.index(s) for s, _ in combos])
    combo_r = np.array([RATINGS.index(r) for _, r in combos])
    k, n_ch = len(combos), len(CHANNELS)
    combo_of = np.full((n_ch, len(RATINGS)), -1)
    combo_of[combo_s, combo_r] = np.arange(k)

    # project-level N(s) and C(s, r)
    N = counts_before(shown.imp_p, shown.imp_ts, shown.imp_s, n_ch, q_project, q_ts)
    fb_combo = combo_of[shown.fb_s, shown.fb_r]
    use = fb_combo >= 0
    C = counts_before(shown.fb_p[use], shown.fb_ts[use], fb_combo[use], k, q_project, q_ts)

    # term-level n(i, s) and c(i, s, r): expand events and queries by the member's terms
    def expand(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = terms.rows(members)
        lens = np.diff(terms.matrix.indptr)[rows]
        starts = terms.matrix.indptr[rows]
        owner = np.repeat(np.arange(members.size), lens)
        offs = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
        return owner, terms.matrix.indices[starts[owner] + offs].astype(np.int64)

    io, it = expand(shown.imp_m)
    fo, ft = expand(shown.fb_m[use])
    qo, qt = expand(q_member)
    q_key = (q_project[qo], qt)
    n = counts_before((shown.imp_p[io], it), shown.imp_ts[io], shown.imp_s[io], n_ch, q_key, q_ts[qo])
    c = counts_before((shown.fb_p[use][fo], ft), shown.fb_ts[use][fo], fb_combo[use][fo], k, q_key, q_ts[qo])
    w = term_weight(c, n[:, combo_s], C[qo], N[qo][:, combo_s], prior_strength)  # (pairs, k)
    types = terms.term_type[qt]
    z = np.zeros((q_member.size, len(TERM_TYPES), k))
    for t in range(len(TERM_TYPES)):
        sel = types == t
        for j in range(k):
            z[:, t, j] = np.bincount(qo[sel], weights=w[sel, j], minlength=q_member.size)
    return z.reshape(q_member.size, -1)



def candidate_impressions(events: pa.Table, projects: pa.Table, hirer_impressions: pa.Table) -> pa.Table:
    """Candidates shown to hirers: applicants (APPLY events, via the job's project) and sourced candidates.

    Columns project_id, member_id, channel, ts, request_id; the applicants of one project on one UTC day form one
    request (`a:<project>:<day>`), a sourcing request keeps the producer's request id.
    """
    applies = events.filter(pc.equal(events["action"], "APPLY")).select(["member_id", "job_id", "ts"])
    applicants = applies.join(projects.select(["project_id", "job_id"]), "job_id", join_type="inner")
    day = pc.cast(pc.divide(applicants["ts"].cast(pa.int64()), DAY_US), pa.int64())
    request = pc.binary_join_element_wise("a", pc.cast(applicants["project_id"], pa.string()),
                                          pc.cast(day, pa.string()), ":")
    applicants = pa.table({"project_id": applicants["project_id"], "member_id": applicants["member_id"],
                           "channel": pa.array(["applicants"] * applicants.num_rows, pa.string()),
                           "ts": applicants["ts"], "request_id": request})
    sourced = hirer_impressions.select(["project_id", "member_id", "channel", "ts", "request_id"])
    both = pa.concat_tables([applicants.cast(sourced.schema), sourced])
    return both.sort_by([("ts", "ascending"), ("request_id", "ascending"), ("member_id", "ascending")])


@dataclass
class HiringDataset:
    rows: pa.Table  # project_id, member_id, channel, ts, request_id, label, prior_feedback
    standard: np.ndarray
    online: np.ndarray
    standard_names: tuple[str, ...]
    online_names: list[str]


def build_dataset(events: pa.Table, feedback: pa.Table, jobs: pa.Table, members: pa.Table, projects: pa.Table,
                  hirer_impressions: pa.Table, combos=DEFAULT_COMBOS) -> HiringDataset:
    """One row per candidate shown to a hirer, with point-in-time features and a graded label."""
    imp = candidate_impressions(events, projects, hirer_impressions)
    shown = shown_streams(imp, feedback)
    p, m = imp["project_id"].to_numpy(), imp["member_id"].to_numpy()
    ts = imp["ts"].cast(pa.int64()).to_numpy()
    chan = imp["channel"].to_numpy(zero_copy_only=False)
    s = np.array([CHANNELS.index(c) for c in chan.tolist()], np.int64)
    # graded label: the best rating this candidate got from this project in this channel (eventually)
    grade = np.array([GRADE[r] for r in RATINGS])[shown.fb_r]
    key_f, key_q = joint_codes((shown.fb_p, shown.fb_m, shown.fb_s), (p, m, s))
    best = np.zeros(max(int(key_f.max(initial=-1)), int(key_q.max(initial=-1))) + 1, np.int64)
    np.maximum.at(best, key_f, grade)
    label = best[key_q]
    prior = counts_before(shown.fb_p, shown.fb_ts, np.zeros(shown.fb_p.size, np.int64), 1, p, ts)[:, 0]
    pair = PairFeaturizer(jobs, members, projects).features(p, m)
    act = activity_features(events, m, ts)
    onehot = (s[:, None] == np.arange(len(CHANNELS))[None, :]).astype(float)
    online = personalization_features(ProfileTerms.from_members(members), shown, p, m, ts, combos)
    rows = imp.append_column("label", pa.array(label)).append_column("prior_feedback", pa.array(prior))
    return HiringDataset(rows, np.column_stack([pair, act, onehot]), online, STANDARD_FEATURES,
                         feature_names(combos))
