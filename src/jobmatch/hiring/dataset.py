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
import scipy.sparse as sp

from jobmatch.hiring.online import CHANNELS, DEFAULT_COMBOS, RATINGS, feature_names
from jobmatch.hiring.terms import TERM_TYPES, ProfileTerms
from jobmatch.hiring.weights import DEFAULT_PRIOR_STRENGTH, term_weight

GRADE = {"offer": 4, "interview": 3, "message": 2, "view_profile": 1, "archive": 0, "skip": 0, "reject": 0}
PAIR_FEATURES = ("same_occupation", "title_overlap", "skill_overlap", "skill_matches", "seniority_gap",
                 "abs_seniority_gap", "location_match", "job_remote", "open_to_work")
ACTIVITY_FEATURES = ("events_7d", "applies_30d", "apply_rate")
CHANNEL_FEATURES = tuple(f"channel_{c}" for c in CHANNELS)
STANDARD_FEATURES = PAIR_FEATURES + ACTIVITY_FEATURES + CHANNEL_FEATURES
DAY_US = 86_400_000_000


def counts_before(ev_key: np.ndarray, ev_ts: np.ndarray, ev_col: np.ndarray, n_cols: int,
                  q_key: np.ndarray, q_ts: np.ndarray) -> np.ndarray:
    """For each query, the number of events with the same key and ts < q_ts, per column: (n_queries, n_cols)."""
    if ev_key.size == 0 or q_key.size == 0:
        return np.zeros((q_key.size, n_cols), np.int64)
    keys, kinv = np.unique(np.concatenate([ev_key, q_key]), return_inverse=True)
    times, tinv = np.unique(np.concatenate([ev_ts, q_ts]), return_inverse=True)
    comb = kinv.astype(np.int64) * (times.size + 1) + tinv
    e_comb, q_comb = comb[:ev_key.size], comb[ev_key.size:]
    order = np.argsort(e_comb, kind="stable")
    e_sorted = e_comb[order]
    cum = np.zeros((ev_key.size + 1, n_cols), np.int64)
    cum[np.arange(1, ev_key.size + 1), ev_col[order]] = 1
    np.cumsum(cum, axis=0, out=cum)
    upto = np.searchsorted(e_sorted, q_comb, side="left")  # same key and earlier time (or a smaller key)
    start = np.searchsorted(e_sorted, kinv[ev_key.size:].astype(np.int64) * (times.size + 1), side="left")
    return cum[upto] - cum[start]


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
    n_terms = terms.term_type.size
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
    q_key = q_project[qo] * n_terms + qt
    n = counts_before(shown.imp_p[io] * n_terms + it, shown.imp_ts[io], shown.imp_s[io], n_ch, q_key, q_ts[qo])
    c = counts_before(shown.fb_p[use][fo] * n_terms + ft, shown.fb_ts[use][fo], fb_combo[use][fo], k,
                      q_key, q_ts[qo])
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

    Columns project_id, member_id, channel, ts, request_id; applicants of one project on one day form a request.
    """
    applies = events.filter(pc.equal(events["action"], "APPLY"))
    job_to_project = dict(zip(projects["job_id"].to_pylist(), projects["project_id"].to_pylist()))
    jobs = applies["job_id"].to_numpy()
    has = np.fromiter((j in job_to_project for j in jobs.tolist()), bool, jobs.size)
    p = np.array([job_to_project[j] for j in jobs[has].tolist()], np.int64)
    ts = applies["ts"].cast(pa.int64()).to_numpy()[has]
    day = ts // DAY_US
    offset = int(pc.max(hirer_impressions["request_id"]).as_py() or 0) + 1 if hirer_impressions.num_rows else 0
    _, req = np.unique(np.stack([p, day]), axis=1, return_inverse=True)
    applicants = pa.table({
        "project_id": p, "member_id": applies["member_id"].to_numpy()[has],
        "channel": pa.array(["applicants"] * p.size, pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "request_id": req.ravel().astype(np.int64) + offset,
    })
    sourced = hirer_impressions.select(["project_id", "member_id", "channel", "ts", "request_id"])
    return pa.concat_tables([applicants.cast(sourced.schema), sourced]).sort_by([("ts", "ascending")])


def _tokens(texts: list[str]) -> list[set[str]]:
    return [set(t.lower().replace("/", " ").replace("-", " ").split()) for t in texts]


def _csr(sets: list, vocab: dict[str, int]) -> tuple[list[int], list[int]]:
    indptr, indices = [0], []
    for items in sets:
        indices.extend(sorted({vocab.setdefault(x, len(vocab)) for x in items}))
        indptr.append(len(indices))
    return indptr, indices


class IdIndex:
    """Vectorized id -> row lookups (sorted ids + searchsorted); errors name the field and the unknown id."""

    def __init__(self, ids: np.ndarray, field: str):
        self.order = np.argsort(ids, kind="stable")
        self.sorted = np.asarray(ids)[self.order]
        self.field = field

    def rows(self, ids, strict: bool = True) -> np.ndarray:
        ids = np.asarray(ids, dtype=self.sorted.dtype)
        pos = np.clip(np.searchsorted(self.sorted, ids), 0, max(self.sorted.size - 1, 0))
        found = self.sorted[pos] == ids if self.sorted.size else np.zeros(ids.size, bool)
        if strict and not found.all():
            raise ValueError(f"{self.field}: unknown {self.field.removesuffix('_id')} {ids[~found][0]}")
        return np.where(found, self.order[pos], -1)


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


def activity_features(events: pa.Table, q_member: np.ndarray, q_ts: np.ndarray) -> np.ndarray:
    """Two-way-interest signals as of each row's time: events in the last 7 days, applies in the last 30 days,
    and the member's apply rate (applies per view) so far."""
    member = events["member_id"].to_numpy()
    ts = events["ts"].cast(pa.int64()).to_numpy()
    action = events["action"].to_numpy(zero_copy_only=False)
    col = np.select([action == "APPLY", action == "VIEW"], [1, 2], 0)
    now = counts_before(member, ts, col, 3, q_member, q_ts)
    week = counts_before(member, ts, col, 3, q_member, q_ts - 7 * DAY_US)
    month = counts_before(member, ts, col, 3, q_member, q_ts - 30 * DAY_US)
    return np.column_stack([(now - week).sum(axis=1), now[:, 1] - month[:, 1], now[:, 1] / (now[:, 2] + 1.0)])


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
    key_f = (shown.fb_p * (1 << 24) + shown.fb_m) * 4 + shown.fb_s
    best: dict[int, int] = {}
    for k_, g in zip(key_f.tolist(), grade.tolist()):
        best[k_] = max(best.get(k_, 0), g)
    key_q = (p * (1 << 24) + m) * 4 + s
    label = np.fromiter((best.get(k_, 0) for k_ in key_q.tolist()), np.int64, key_q.size)
    prior = counts_before(shown.fb_p, shown.fb_ts, np.zeros(shown.fb_p.size, np.int64), 1, p, ts)[:, 0]
    pair = PairFeaturizer(jobs, members, projects).features(p, m)
    act = activity_features(events, m, ts)
    onehot = (s[:, None] == np.arange(len(CHANNELS))[None, :]).astype(float)
    online = personalization_features(ProfileTerms.from_members(members), shown, p, m, ts, combos)
    rows = imp.append_column("label", pa.array(label)).append_column("prior_feedback", pa.array(prior))
    return HiringDataset(rows, np.column_stack([pair, act, onehot]), online, STANDARD_FEATURES,
                         feature_names(combos))
