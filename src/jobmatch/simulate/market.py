"""A job marketplace simulator with known ground truth, vectorized with numpy.

Generative story (all randomness from one `numpy.random.Generator` seeded by `SimConfig.seed`):

* companies (industry = an occupation family, location) and jobs (occupation, title variant, skills, location,
  remote flag, seniority, posting time and lifetime); one hiring project per job;
* members (occupation, listed and hidden skills, seniority, location, open-to-work) with latent seeker state:
  a seeking window, a heavy-tailed session rate, a search propensity (zero for ~16%), an apply propensity,
  a hirer-facing quality, and an intent (target occupation, remote preference) that drifts for some members;
* sessions made of channel blocks (search with a query, recommendations, alerts, notifications); each block
  shows jobs (impressions) and the member VIEWs / SAVEs / APPLYs / DISMISSes them by latent utility;
* per project, a latent preference over candidate terms (skills, occupation, seniority); hirers rate applicants,
  recommended matches and recruiter-search results, with first positives mostly on day 1 and silence that
  becomes conclusive after ~14 days.

Returned tables follow `jobmatch.schema`; latent variables go to `truth`, which models must never read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from jobmatch import schema
from jobmatch.simulate.config import SimConfig
from jobmatch.taxonomy.base import Taxonomy

US_PER_S = 1_000_000
US_PER_MIN = 60 * US_PER_S
US_PER_H = 60 * US_PER_MIN
US_PER_DAY = 24 * US_PER_H

LOCATIONS = ("new york", "san francisco", "chicago", "austin", "seattle", "boston", "atlanta", "denver",
             "los angeles", "miami", "dallas", "phoenix")
LOCATION_WEIGHTS = np.array([18, 10, 9, 7, 7, 7, 6, 5, 12, 5, 8, 6], float)
_NAME_A = ("north", "blue", "bright", "summit", "iron", "silver", "cedar", "harbor", "apex", "true", "red",
           "granite", "clear", "lake", "prime", "union", "pioneer", "golden", "river", "atlas")
_NAME_B = ("wind", "stone", "field", "bridge", "point", "path", "works", "line", "gate", "ridge", "view", "light")
_NAME_C = ("labs", "group", "partners", "health", "systems", "capital", "solutions", "co", "holdings", "services")
SENIORITY_PREFIX = {1: "junior ", 2: "", 3: "", 4: "senior ", 5: "lead "}
TERM_TYPES = ("skill", "occupation", "seniority")

Progress = Callable[[str], None]


@dataclass
class SimulatedMarket:
    companies: pa.Table
    jobs: pa.Table
    members: pa.Table
    projects: pa.Table
    events: pa.Table
    feedback: pa.Table
    impressions: pa.Table  # what seekers were shown (needed to train recommenders on impressions)
    hirer_impressions: pa.Table  # candidates shown to hirers per request
    truth: dict[str, pa.Table] = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _Occupations:
    """Taxonomy as arrays: related-occupation lookups, match matrix, skill vocabulary."""

    def __init__(self, taxonomy: Taxonomy):
        self.occs = taxonomy.occupations
        self.codes = np.array([o.code for o in self.occs])
        n = len(self.occs)
        index = {o.code: i for i, o in enumerate(self.occs)}
        self.family = np.array([o.family for o in self.occs])
        self.zone = np.array([o.job_zone for o in self.occs])
        # match[a, b]: how much a seeker targeting a wants a job of occupation b.
        self.match = np.eye(n)
        self.tier1: list[np.ndarray] = []
        for i, o in enumerate(self.occs):
            t1 = [index[c] for c, t in o.related if t == 1]
            for c, t in o.related:
                self.match[i, index[c]] = max(self.match[i, index[c]], 0.55 if t == 1 else 0.3)
            self.tier1.append(np.array(t1 or [i]))
        width = max(len(t) for t in self.tier1)
        self.tier1_pad = np.array([np.resize(t, width) for t in self.tier1])  # cycled to equal width
        self.tier1_len = np.array([len(t) for t in self.tier1])
        self.skills = sorted({s for o in self.occs for s, _ in o.skills})
        skill_index = {s: k for k, s in enumerate(self.skills)}
        self.occ_skills = [np.array([skill_index[s] for s, _ in o.skills]) for o in self.occs]
        self.occ_skill_w = [np.array([w for _, w in o.skills]) for o in self.occs]

    def related1(self, rng: np.random.Generator, occ: np.ndarray) -> np.ndarray:
        pick = (rng.random(len(occ)) * self.tier1_len[occ]).astype(np.int64)
        return self.tier1_pad[occ, pick]


def select_occupations(taxonomy: Taxonomy, limit: int, rng: np.random.Generator) -> Taxonomy:
    """Keep at most `limit` occupations, grown from random seeds along related links so career moves stay inside."""
    if len(taxonomy) <= limit:
        return taxonomy
    codes = [o.code for o in taxonomy.occupations]
    chosen: dict[str, None] = {}
    frontier: list[str] = []
    while len(chosen) < limit:
        if not frontier:
            seed = codes[rng.integers(len(codes))]
            if seed in chosen:
                continue
            frontier.append(seed)
        code = frontier.pop(0)
        if code in chosen:
            continue
        chosen[code] = None
        frontier.extend(c for c, t in taxonomy[code].related if t == 1 and c not in chosen)
    return taxonomy.subset(list(chosen))


def _skill_bits(rows: list[np.ndarray], n_skills: int) -> np.ndarray:
    dense = np.zeros((len(rows), n_skills), bool)
    for i, r in enumerate(rows):
        dense[i, r] = True
    return np.packbits(dense, axis=1)


def _overlap(a_bits: np.ndarray, b_bits: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray,
             chunk: int = 200_000) -> np.ndarray:
    out = np.empty(len(a_idx), np.int32)
    for s in range(0, len(a_idx), chunk):
        both = a_bits[a_idx[s:s + chunk]] & b_bits[b_idx[s:s + chunk]]
        out[s:s + chunk] = np.bitwise_count(both).sum(axis=1)
    return out


def _ids(prefix: str, n: int) -> pa.Array:
    width = max(9, len(str(n)))
    return pa.array([f"{prefix}{i:0{width}d}" for i in range(n)], pa.string())


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), schema.TS)


def simulate(taxonomy: Taxonomy, cfg: SimConfig, progress: Progress | None = None) -> SimulatedMarket:
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(cfg.seed)
    taxonomy = select_occupations(taxonomy, cfg.max_occupations, rng)
    occ = _Occupations(taxonomy)
    n_occ, n_skills = len(occ.occs), len(occ.skills)
    t0 = int(cfg.start.timestamp() * US_PER_S)
    t_end = t0 + cfg.days * US_PER_DAY

    say("companies and jobs")
    # Occupation popularity (shared by seekers and postings, so markets clear in the same places).
    popularity = rng.dirichlet(np.full(n_occ, 1.5))
    families = sorted(set(occ.family))
    fam_of = np.array([families.index(f) for f in occ.family])

    n_comp = max(5, int(cfg.members * cfg.companies_per_member))
    comp_family = rng.integers(len(families), size=n_comp)
    comp_loc = rng.choice(len(LOCATIONS), size=n_comp, p=LOCATION_WEIGHTS / LOCATION_WEIGHTS.sum())
    comp_names, seen = [], set()
    for i in range(n_comp):
        name = f"{rng.choice(_NAME_A)}{rng.choice(_NAME_B)} {rng.choice(_NAME_C)}"
        name = name if name not in seen else f"{name} {i}"
        seen.add(name)
        comp_names.append(name)
    comp_size = rng.pareto(1.2, n_comp) + 1  # heavy-tailed hiring volume

    n_jobs = max(10, int(cfg.members * cfg.jobs_per_member))
    job_comp = rng.choice(n_comp, size=n_jobs, p=comp_size / comp_size.sum())
    in_family = rng.random(n_jobs) < 0.8
    job_occ = np.empty(n_jobs, np.int64)
    for f in range(len(families)):
        members_f = np.flatnonzero(fam_of == f)
        mask = in_family & (comp_family[job_comp] == f)
        if members_f.size and mask.any():
            p = popularity[members_f] / popularity[members_f].sum()
            job_occ[mask] = rng.choice(members_f, size=mask.sum(), p=p)
    out_of_family = ~in_family | ~np.isin(comp_family[job_comp], fam_of)
    job_occ[out_of_family] = rng.choice(n_occ, size=out_of_family.sum(), p=popularity)
    job_sen = np.clip(occ.zone[job_occ] + rng.choice([-1, 0, 0, 1], size=n_jobs), 1, 5)
    job_remote = rng.random(n_jobs) < cfg.remote_job_share
    job_loc = comp_loc[job_comp]
    job_posted = t0 + ((rng.random(n_jobs) * (cfg.days + cfg.prior_posting_days) - cfg.prior_posting_days)
                       * US_PER_DAY).astype(np.int64)
    lifetime_days = np.clip(rng.lognormal(np.log(cfg.job_lifetime_median_days), 0.5, n_jobs), 3, 90)
    job_expires = job_posted + (lifetime_days * US_PER_DAY).astype(np.int64)
    job_attract = rng.normal(0, 0.5, n_jobs)
    job_skill_rows, job_titles = [], []
    for j in range(n_jobs):
        o = job_occ[j]
        sk, w = occ.occ_skills[o], occ.occ_skill_w[o]
        keep = rng.random(sk.size) < 0.3 + 0.6 * w
        job_skill_rows.append(sk[keep] if keep.any() else sk[:1])
        alts = occ.occs[o].alt_titles
        base = occ.occs[o].title.lower() if rng.random() < 0.4 else alts[rng.integers(len(alts))]
        job_titles.append(SENIORITY_PREFIX[int(job_sen[j])] + base)
    job_bits = _skill_bits(job_skill_rows, n_skills)
    job_nskills = np.array([r.size for r in job_skill_rows])

    say("members")
    n_mem = cfg.members
    mem_occ = rng.choice(n_occ, size=n_mem, p=popularity)
    mem_sen = np.clip(occ.zone[mem_occ] + rng.choice([-1, 0, 0, 1], size=n_mem), 1, 5)
    mem_loc = rng.choice(len(LOCATIONS), size=n_mem, p=LOCATION_WEIGHTS / LOCATION_WEIGHTS.sum())
    mem_otw = rng.random(n_mem) < cfg.open_to_work_share
    mem_skill_rows, mem_true_rows, mem_titles, hidden_names = [], [], [], []
    for m in range(n_mem):
        o = mem_occ[m]
        sk, w = occ.occ_skills[o], occ.occ_skill_w[o]
        has = rng.random(sk.size) < 0.35 + 0.55 * w
        listed = sk[has] if has.any() else sk[:1]
        rel = occ.occ_skills[occ.tier1[o][rng.integers(len(occ.tier1[o]))]]
        extra = rel[rng.integers(rel.size, size=1)]
        listed = np.union1d(listed, extra)
        unlisted = np.setdiff1d(np.arange(n_skills), listed)
        hidden = rng.choice(unlisted, size=min(cfg.hidden_skills, unlisted.size), replace=False)
        mem_skill_rows.append(listed)
        mem_true_rows.append(np.union1d(listed, hidden))
        hidden_names.append([occ.skills[h] for h in hidden])
        alts = occ.occs[o].alt_titles
        base = occ.occs[o].title.lower() if rng.random() < 0.5 else alts[rng.integers(len(alts))]
        mem_titles.append(SENIORITY_PREFIX[int(mem_sen[m])] + base)
    mem_bits = _skill_bits(mem_skill_rows, n_skills)
    mem_true_bits = _skill_bits(mem_true_rows, n_skills)

    # Latent seeker state.
    rate = rng.lognormal(np.log(cfg.sessions_per_day_median), cfg.sessions_per_day_sigma, n_mem)
    seek_len = np.clip(rng.lognormal(np.log(cfg.seeking_days_median), 0.5, n_mem), 3, None) * US_PER_DAY
    seek_start = t0 + (rng.random(n_mem) * (cfg.days * US_PER_DAY + 0.6 * seek_len) - 0.6 * seek_len)
    seek_a = np.maximum(seek_start, t0).astype(np.int64)
    seek_b = np.minimum(seek_start + seek_len, t_end).astype(np.int64)
    seek_b = np.maximum(seek_b, seek_a + US_PER_H)
    never_search = rng.random(n_mem) < cfg.never_search_share
    p_search = np.where(never_search, 0.0, rng.beta(3.0, 2.0, n_mem))
    apply_prop = rng.normal(0, 0.6, n_mem)
    quality = rng.normal(0, 1, n_mem)
    target0 = np.where(rng.random(n_mem) < cfg.related_target_share, occ.related1(rng, mem_occ), mem_occ)
    remote0 = rng.random(n_mem) < cfg.remote_pref_share
    drifts = rng.random(n_mem) < cfg.drift_share
    drift_kind = np.where(rng.random(n_mem) < 0.5, "remote", "occupation")
    drift_kind = np.where(drifts & remote0 & (drift_kind == "remote"), "occupation", drift_kind)
    drift_kind = np.where(drifts, drift_kind, "")
    drift_at = np.where(drifts, seek_a + ((seek_b - seek_a) * rng.uniform(0.3, 0.7, n_mem)).astype(np.int64),
                        np.iinfo(np.int64).max)
    new_target = occ.related1(rng, target0)
    # a related occupation other than the current target when one exists
    same = new_target == target0
    new_target[same] = occ.related1(rng, mem_occ[same])
    target1 = np.where(drift_kind == "occupation", new_target, target0)
    remote1 = remote0 | (drift_kind == "remote")

    say("sessions")
    window_days = (seek_b - seek_a) / US_PER_DAY
    n_sess = 1 + rng.poisson(rate * window_days)
    s_mem = np.repeat(np.arange(n_mem), n_sess)
    n_s = s_mem.size
    # Daytime-heavy start times inside the seeking window.
    day_frac = rng.random(n_s)
    s_start = seek_a[s_mem] + (day_frac * (seek_b - seek_a)[s_mem]).astype(np.int64)
    hour = np.clip(rng.normal(13, 4, n_s), 0, 23.9)
    s_start = s_start - (s_start - t0) % US_PER_DAY + (hour * US_PER_H).astype(np.int64)
    s_start = np.clip(s_start, seek_a[s_mem], seek_b[s_mem])
    push = rng.random(n_s)
    # Many sessions start from a push (alert, notification) and stay short; seekers search in some of the rest.
    first_channel = np.where(rng.random(n_s) < 0.6 * p_search[s_mem], 0,
                             np.where(push < 0.45, 1, np.where(push < 0.75, 2, 3)))  # Channel order in schema
    # Engaged seekers chain more blocks per session (and switch channels) -> long sessions are search-heavy.
    n_blocks = 1 + rng.poisson(0.2 + 1.0 * p_search[s_mem] + 0.3 * (first_channel == 0))
    n_blocks = np.where(first_channel >= 2, np.where(rng.random(n_s) < 0.75, 1, n_blocks), n_blocks)

    b_sess = np.repeat(np.arange(n_s), n_blocks)
    b_mem = s_mem[b_sess]
    first_of_sess = np.r_[True, b_sess[1:] != b_sess[:-1]]
    b_channel = np.where(first_of_sess, first_channel[b_sess],
                         np.where(rng.random(b_sess.size) < p_search[b_mem], 0, 1))
    b_gap = np.where(first_of_sess, 0, rng.exponential(2.0, b_sess.size) * US_PER_MIN).astype(np.int64)
    b_nimp = np.select([b_channel == 0, b_channel == 1, b_channel == 2],
                       [10, 4 + rng.poisson(6, b_sess.size), 1 + rng.poisson(1.0, b_sess.size)],
                       1 + (rng.random(b_sess.size) < 0.3))
    b_nimp = np.minimum(b_nimp, 25)
    # block start = session start + the durations of the session's earlier blocks + this block's gap
    dur = b_gap + b_nimp * 40 * US_PER_S
    csum = np.cumsum(dur)
    sess_first_block = np.flatnonzero(first_of_sess)
    prev = np.repeat(csum[sess_first_block] - dur[sess_first_block], n_blocks)
    b_start = s_start[b_sess] + (csum - prev) - dur + b_gap

    drifted_now = b_start >= drift_at[b_mem]
    b_target = np.where(drifted_now, target1[b_mem], target0[b_mem])
    b_remote = np.where(drifted_now, remote1[b_mem], remote0[b_mem])
    # Search blocks: the query's occupation is the target, sometimes a related one.
    b_qocc = np.where(rng.random(b_sess.size) < 0.75, b_target, occ.related1(rng, b_target))
    b_query = np.full(b_sess.size, None, object)
    search_blocks = np.flatnonzero(b_channel == 0)
    qr = rng.random(search_blocks.size)
    for k, b in enumerate(search_blocks):
        o = occ.occs[b_qocc[b]]
        if qr[k] < 0.15:
            q = o.skills[min(int(rng.integers(3)), len(o.skills) - 1)][0]
        else:
            q = o.alt_titles[rng.integers(len(o.alt_titles))] if qr[k] < 0.8 else o.title.lower()
        if b_remote[b] and rng.random() < 0.5:
            q = "remote " + q
        b_query[b] = q

    say("impressions")
    i_block = np.repeat(np.arange(b_sess.size), b_nimp)
    n_i = i_block.size
    i_mem = b_mem[i_block]
    i_chan = b_channel[i_block]
    i_pos = np.arange(n_i) - np.repeat(np.cumsum(b_nimp) - b_nimp, b_nimp)
    i_time = b_start[i_block] + i_pos * 40 * US_PER_S
    # Which occupation each impression is drawn from: search -> the query; recommendations -> mostly the profile
    # (a profile-based recommender, blind to drift) with some activity-aware picks; alerts -> past query intent.
    r = rng.random(n_i)
    profile = mem_occ[i_mem]
    tgt = b_target[i_block]
    src = np.select(
        [i_chan == 0, i_chan == 1, i_chan == 2],
        [np.where(r < 0.75, b_qocc[i_block], np.where(r < 0.92, occ.related1(rng, b_qocc[i_block]),
                                                       rng.choice(n_occ, size=n_i, p=popularity))),
         np.where(r < 0.55, profile, np.where(r < 0.75, occ.related1(rng, profile),
                                              np.where(r < 0.9, tgt, rng.choice(n_occ, size=n_i, p=popularity)))),
         np.where(r < 0.7, tgt, profile)],
        np.where(r < 0.8, profile, tgt),
    )
    fresh_only = i_chan >= 2  # alerts and notifications carry newly posted jobs
    order = np.lexsort((job_posted, job_occ))
    occ_start = np.searchsorted(job_occ[order], np.arange(n_occ + 1))
    key = job_occ[order].astype(np.int64) * (1 << 40) + (job_posted[order] - t0 + (1 << 39))
    i_job = np.full(n_i, -1, np.int64)
    for attempt in range(6):
        todo = np.flatnonzero(i_job < 0)
        if todo.size == 0:
            break
        o = src[todo] if attempt < 4 else rng.choice(n_occ, size=todo.size, p=popularity)
        t = i_time[todo]
        hi = np.searchsorted(key, o * (1 << 40) + (t - t0 + (1 << 39)), side="right")
        lo_fresh = np.searchsorted(key, o * (1 << 40) + (t - 3 * US_PER_DAY - t0 + (1 << 39)))
        lo = np.where(fresh_only[todo], lo_fresh, occ_start[o])
        ok = hi > lo
        pick = lo + (rng.random(todo.size) * (hi - lo)).astype(np.int64)
        cand = np.where(ok, order[np.minimum(pick, n_jobs - 1)], -1)
        active = ok & (job_expires[np.maximum(cand, 0)] > t)
        # searches by remote-minded seekers mostly surface remote jobs
        want_remote = b_remote[i_block[todo]] & (i_chan[todo] == 0)
        active &= ~want_remote | job_remote[np.maximum(cand, 0)] | (rng.random(todo.size) < 0.4)
        i_job[todo[active]] = cand[active]
    shown = i_job >= 0
    # a member is not shown the same job twice in one block
    dup = np.zeros(n_i, bool)
    idx = np.flatnonzero(shown)
    pairs = i_block[idx].astype(np.int64) * n_jobs + i_job[idx]
    _, first = np.unique(pairs, return_index=True)
    dup[idx] = True
    dup[idx[first]] = False
    keep = shown & ~dup
    i_block, i_mem, i_chan, i_time, i_job = i_block[keep], i_mem[keep], i_chan[keep], i_time[keep], i_job[keep]
    n_i = i_job.size

    say("seeker actions")
    t_here = i_time >= drift_at[i_mem]
    i_target = np.where(t_here, target1[i_mem], target0[i_mem])
    i_rem = np.where(t_here, remote1[i_mem], remote0[i_mem])
    skill_fit = _overlap(mem_bits, job_bits, i_mem, i_job) / job_nskills[i_job]
    util = (2.4 * occ.match[i_target, job_occ[i_job]] + 1.5 * skill_fit
            + np.where(i_rem, np.where(job_remote[i_job], 1.2, -0.9), 0.0)
            - 0.6 * np.abs(mem_sen[i_mem] - job_sen[i_job])
            + np.where((job_loc[i_job] == mem_loc[i_mem]) | job_remote[i_job], 0.4, -0.6)
            + job_attract[i_job] + rng.normal(0, 0.7, n_i))
    chan_view = np.array([0.4, 0.0, 0.3, 0.2])[i_chan]
    position = np.minimum(i_pos[keep], 10)  # lower-ranked results are looked at less (position bias)
    viewed = rng.random(n_i) < _sigmoid(-2.0 + 1.2 * util + chan_view - 0.15 * position)
    applied = viewed & (rng.random(n_i) < _sigmoid(-4.2 + 1.2 * util + apply_prop[i_mem]))
    saved = viewed & ~applied & (rng.random(n_i) < _sigmoid(-3.4 + 1.1 * util))
    dismissed = ~applied & ~saved & (rng.random(n_i) < np.where(viewed, _sigmoid(-2.2 - 1.2 * util),
                                                                 0.35 * _sigmoid(-2.0 - 1.2 * util)))
    dismissed &= i_chan != 0  # dismiss is a recommendation-surface control
    # Applying twice to one job is not possible: keep the first apply per (member, job).
    app = np.flatnonzero(applied)
    order_app = app[np.lexsort((i_time[app], i_job[app], i_mem[app]))]
    pair = i_mem[order_app].astype(np.int64) * n_jobs + i_job[order_app]
    again = np.r_[False, pair[1:] == pair[:-1]]
    applied[order_app[again]] = False

    say("events")
    step = (rng.exponential(12, n_i) + 3).astype(np.int64) * US_PER_S
    parts = []  # (member, ts, action, channel, job, query)
    q_blocks = search_blocks
    parts.append((b_mem[q_blocks], b_start[q_blocks] - 5 * US_PER_S, 0, b_channel[q_blocks], -1, b_query[q_blocks]))
    for act, mask, delay in ((1, viewed, 0), (3, applied, 1), (2, saved, 1), (4, dismissed, 1)):
        sel = np.flatnonzero(mask)
        parts.append((i_mem[sel], i_time[sel] + delay * step[sel], act, i_chan[sel], i_job[sel], None))
    ev_mem = np.concatenate([p[0] for p in parts])
    ev_ts = np.concatenate([p[1] for p in parts])
    ev_act = np.concatenate([np.full(p[0].size, p[2]) for p in parts])
    ev_chan = np.concatenate([np.broadcast_to(p[3], p[0].shape) for p in parts])
    ev_job = np.concatenate([np.broadcast_to(p[4], p[0].shape) for p in parts])
    ev_query = np.concatenate([p[5] if p[5] is not None else np.full(p[0].size, None, object) for p in parts])
    inside = (ev_ts >= t0) & (ev_ts < t_end)
    o = np.lexsort((ev_act, ev_ts, ev_mem))
    o = o[inside[o]]
    ev_mem, ev_ts, ev_act, ev_chan, ev_job, ev_query = (a[o] for a in (ev_mem, ev_ts, ev_act, ev_chan, ev_job, ev_query))
    actions = np.array([a.value for a in schema.Action], object)
    channels = np.array([c.value for c in schema.Channel], object)
    events = pa.table({
        "event_id": _ids(f"s{cfg.seed}e", ev_mem.size),
        "member_id": pa.array(ev_mem, pa.int64()),
        "ts": _ts(ev_ts),
        "action": pa.array(actions[ev_act], pa.string()),
        "channel": pa.array(channels[ev_chan], pa.string()),
        "job_id": pa.array(np.where(ev_job >= 0, ev_job, 0), pa.int64(), mask=ev_job < 0),
        "query": pa.array(ev_query, pa.string()),
    }, schema=schema.EVENT_SCHEMA)
    in_window = (i_time >= t0) & (i_time < t_end)
    impressions = pa.table({
        "member_id": pa.array(i_mem[in_window], pa.int64()),
        "job_id": pa.array(i_job[in_window], pa.int64()),
        "ts": _ts(i_time[in_window]),
        "channel": pa.array(channels[i_chan[in_window]], pa.string()),
        "request_id": pa.array(i_block[in_window], pa.int64()),
        "viewed": pa.array(viewed[in_window]),
        "saved": pa.array(saved[in_window]),
        "applied": pa.array(applied[in_window]),
        "dismissed": pa.array(dismissed[in_window]),
    })

    say("hirer preferences and feedback")
    # Project preference: liked skills (from the job's occupation and neighbours), occupation and seniority terms.
    proj_rows: list[tuple[int, str, str, float]] = []
    pref_skill_w = np.zeros((n_jobs, n_skills), np.float32)
    pref_occ_w = np.zeros((n_jobs, n_occ), np.float32)
    pref_sen_w = np.zeros((n_jobs, 6), np.float32)
    proj_bias = rng.normal(-3.6, 0.7, n_jobs)
    for j in range(n_jobs):
        o = job_occ[j]
        pool = np.union1d(occ.occ_skills[o], occ.occ_skills[occ.tier1[o][rng.integers(len(occ.tier1[o]))]])
        liked = rng.choice(pool, size=min(3, pool.size), replace=False)
        w = rng.gamma(2.0, 0.6, liked.size)
        pref_skill_w[j, liked] = w
        pref_occ_w[j, o] = rng.normal(1.0, 0.4)
        rel = occ.tier1[o]
        pref_occ_w[j, rel] = rng.normal(0.3, 0.5, rel.size)
        sen = job_sen[j]
        pref_sen_w[j, sen] = 0.6
        pref_sen_w[j, max(1, sen - 1)] += rng.normal(-0.2, 0.5)
        pref_sen_w[j, min(5, sen + 1)] += rng.normal(0.2, 0.5)
        proj_rows += [(j, "skill", occ.skills[s], float(x)) for s, x in zip(liked, w)]
        proj_rows += [(j, "occupation", occ.codes[c], float(pref_occ_w[j, c])) for c in np.r_[o, rel]]
        proj_rows += [(j, "seniority", str(s), float(pref_sen_w[j, s])) for s in range(1, 6) if pref_sen_w[j, s]]
    true_dense = np.unpackbits(mem_true_bits, axis=1, count=n_skills).astype(np.float32)

    def hirer_score(m: np.ndarray, j: np.ndarray) -> np.ndarray:
        skill_term = np.einsum("ij,ij->i", true_dense[m], pref_skill_w[j])
        fit = _overlap(mem_true_bits, job_bits, m, j) / job_nskills[j]
        return (proj_bias[j] + skill_term + pref_occ_w[j, mem_occ[m]] + pref_sen_w[j, mem_sen[m]]
                + 0.8 * quality[m] + 1.2 * fit - 0.5 * np.abs(mem_sen[m] - job_sen[j]) + rng.normal(0, 0.5, m.size))

    fb_parts = []  # (project, member, ts, channel code, feedback code)
    fb_types = np.array([f.value for f in schema.FeedbackType], object)
    fb_channels = np.array([c.value for c in schema.FeedbackChannel], object)
    ap = np.flatnonzero(applied & in_window)
    a_mem, a_job, a_time = i_mem[ap], i_job[ap], i_time[ap] + step[ap]
    s = hirer_score(a_mem, a_job)
    positive = rng.random(ap.size) < _sigmoid(s)
    # First positive: ~30-40% within a day, the rest spread over the next weeks (001: "30% ... within a day").
    fast = rng.random(ap.size) < 0.18
    delay = np.where(fast, rng.exponential(6 * US_PER_H, ap.size), rng.exponential(5 * US_PER_DAY, ap.size))
    first_pos = a_time + delay.astype(np.int64)
    fb_parts.append((a_job[positive], a_mem[positive], first_pos[positive], 0, 0))  # view_profile
    msg = positive & (rng.random(ap.size) < 0.55)
    t_msg = first_pos + rng.exponential(1.5 * US_PER_DAY, ap.size).astype(np.int64)
    fb_parts.append((a_job[msg], a_mem[msg], t_msg[msg], 0, 1))
    itv = msg & (rng.random(ap.size) < 0.4)
    t_itv = t_msg + rng.exponential(4 * US_PER_DAY, ap.size).astype(np.int64)
    fb_parts.append((a_job[itv], a_mem[itv], t_itv[itv], 0, 2))
    off = itv & (rng.random(ap.size) < 0.25)
    fb_parts.append((a_job[off], a_mem[off], t_itv[off] + rng.exponential(5 * US_PER_DAY, ap.size).astype(np.int64)[off], 0, 3))
    neg = ~positive & (rng.random(ap.size) < cfg.explicit_negative_share)
    t_neg = a_time + rng.exponential(4 * US_PER_DAY, ap.size).astype(np.int64)
    fb_parts.append((a_job[neg], a_mem[neg], t_neg[neg], 0, np.where(rng.random(neg.sum()) < 0.7, 4, 6)))
    rejected_after_itv = itv & ~off & (rng.random(ap.size) < 0.5)
    fb_parts.append((a_job[rejected_after_itv], a_mem[rejected_after_itv],
                     t_itv[rejected_after_itv] + US_PER_DAY, 0, 6))

    # Sourcing channels: requests of candidates shown to the hirer, each rated at once (skip if not acted on).
    by_occ = [np.flatnonzero(mem_occ == k) for k in range(n_occ)]
    hi_parts = []  # (project, member, ts, channel, request)
    request = 0
    for chan, share, per_req, n_req_mean, breadth in ((1, cfg.recommended_matches_share, 5, 3.0, 0.8),
                                                      (2, cfg.recruiter_search_share, 10, 2.0, 0.5)):
        projs = np.flatnonzero(rng.random(n_jobs) < share)
        n_req = 1 + rng.poisson(n_req_mean, projs.size)
        r_proj = np.repeat(projs, n_req)
        span = np.minimum(job_expires[r_proj], t_end) - job_posted[r_proj]
        r_time = job_posted[r_proj] + (rng.random(r_proj.size) * np.maximum(span, US_PER_H)).astype(np.int64)
        okr = (r_time >= t0) & (r_time < t_end)
        r_proj, r_time = r_proj[okr], r_time[okr]
        c_proj = np.repeat(r_proj, per_req)
        c_time = np.repeat(r_time, per_req)
        c_req = np.repeat(np.arange(request, request + r_proj.size), per_req)
        request += r_proj.size
        c_occ = np.where(rng.random(c_proj.size) < breadth, job_occ[c_proj], occ.related1(rng, job_occ[c_proj]))
        cands = np.empty(c_proj.size, np.int64)
        for k in np.unique(c_occ):
            sel = np.flatnonzero(c_occ == k)
            pool = by_occ[k] if by_occ[k].size else np.arange(n_mem)
            # passive sourcing favours open-to-work members
            wts = np.where(mem_otw[pool], 2.0, 1.0)
            cands[sel] = rng.choice(pool, size=sel.size, p=wts / wts.sum())
        hi_parts.append((c_proj, cands, c_time, chan, c_req))
        sc = hirer_score(cands, c_proj) - 0.4 * (chan == 2) + 0.5 * mem_otw[cands]
        pos = rng.random(cands.size) < _sigmoid(sc)
        react = c_time + rng.exponential(20 * US_PER_MIN, cands.size).astype(np.int64)
        kind = np.where(pos, np.where(rng.random(cands.size) < 0.6, 1, 0), np.where(rng.random(cands.size) < 0.4, 4, 5))
        fb_parts.append((c_proj, cands, react, chan, kind))

    f_proj = np.concatenate([p[0] for p in fb_parts])
    f_mem = np.concatenate([p[1] for p in fb_parts])
    f_ts = np.concatenate([p[2] for p in fb_parts])
    f_chan = np.concatenate([np.broadcast_to(p[3], p[0].shape) for p in fb_parts])
    f_type = np.concatenate([np.broadcast_to(p[4], p[0].shape) for p in fb_parts])
    o = np.lexsort((f_type, f_mem, f_proj, f_ts))
    o = o[f_ts[o] < t_end]
    feedback = pa.table({
        "feedback_id": _ids(f"s{cfg.seed}f", o.size),
        "project_id": pa.array(f_proj[o], pa.int64()),
        "member_id": pa.array(f_mem[o], pa.int64()),
        "ts": _ts(f_ts[o]),
        "channel": pa.array(fb_channels[f_chan[o]], pa.string()),
        "feedback": pa.array(fb_types[f_type[o]], pa.string()),
    }, schema=schema.FEEDBACK_SCHEMA)
    h_proj = np.concatenate([p[0] for p in hi_parts])
    h_mem = np.concatenate([p[1] for p in hi_parts])
    h_ts = np.concatenate([p[2] for p in hi_parts])
    h_chan = np.concatenate([np.broadcast_to(p[3], p[0].shape) for p in hi_parts])
    h_req = np.concatenate([p[4] for p in hi_parts])
    o = np.lexsort((h_req, h_ts))
    hirer_impressions = pa.table({
        "project_id": pa.array(h_proj[o], pa.int64()), "member_id": pa.array(h_mem[o], pa.int64()),
        "ts": _ts(h_ts[o]), "channel": pa.array(fb_channels[h_chan[o]], pa.string()),
        "request_id": pa.array(h_req[o], pa.int64()),
    })

    say("tables")
    skills = np.array(occ.skills, object)
    companies = pa.table({
        "company_id": pa.array(np.arange(n_comp), pa.int64()), "name": pa.array(comp_names, pa.string()),
        "industry": pa.array([families[f] for f in comp_family], pa.string()),
        "location": pa.array([LOCATIONS[k] for k in comp_loc], pa.string()),
    }, schema=schema.COMPANY_SCHEMA)
    jobs = pa.table({
        "job_id": pa.array(np.arange(n_jobs), pa.int64()), "company_id": pa.array(job_comp, pa.int64()),
        "title": pa.array(job_titles, pa.string()), "occupation": pa.array(occ.codes[job_occ], pa.string()),
        "skills": pa.array([list(skills[r]) for r in job_skill_rows], pa.list_(pa.string())),
        "location": pa.array([LOCATIONS[k] for k in job_loc], pa.string()), "remote": pa.array(job_remote),
        "seniority": pa.array(job_sen, pa.int8()), "posted_at": _ts(job_posted), "expires_at": _ts(job_expires),
    }, schema=schema.JOB_SCHEMA)
    members = pa.table({
        "member_id": pa.array(np.arange(n_mem), pa.int64()), "title": pa.array(mem_titles, pa.string()),
        "occupation": pa.array(occ.codes[mem_occ], pa.string()),
        "skills": pa.array([list(skills[r]) for r in mem_skill_rows], pa.list_(pa.string())),
        "seniority": pa.array(mem_sen, pa.int8()),
        "location": pa.array([LOCATIONS[k] for k in mem_loc], pa.string()), "open_to_work": pa.array(mem_otw),
    }, schema=schema.MEMBER_SCHEMA)
    projects = pa.table({
        "project_id": pa.array(np.arange(n_jobs), pa.int64()), "job_id": pa.array(np.arange(n_jobs), pa.int64()),
        "company_id": pa.array(job_comp, pa.int64()), "created_at": _ts(job_posted),
    }, schema=schema.PROJECT_SCHEMA)
    no_drift = drift_at == np.iinfo(np.int64).max
    truth = {
        "members": pa.table({
            "member_id": pa.array(np.arange(n_mem), pa.int64()),
            "seek_start": _ts(seek_a), "seek_end": _ts(seek_b),
            "sessions_per_day": pa.array(rate), "search_propensity": pa.array(p_search),
            "apply_propensity": pa.array(apply_prop), "quality": pa.array(quality),
            "hidden_skills": pa.array(hidden_names, pa.list_(pa.string())),
            "target_occupation": pa.array(occ.codes[target0], pa.string()), "remote_pref": pa.array(remote0),
            "drift_kind": pa.array(drift_kind, pa.string()),
            "drift_at": pa.array(np.where(no_drift, 0, drift_at), schema.TS, mask=no_drift),
            "target_occupation_after": pa.array(occ.codes[target1], pa.string()),
            "remote_pref_after": pa.array(remote1),
        }),
        "jobs": pa.table({"job_id": pa.array(np.arange(n_jobs), pa.int64()), "attractiveness": pa.array(job_attract)}),
        "project_preferences": pa.table({
            "project_id": pa.array([r[0] for r in proj_rows], pa.int64()),
            "term_type": pa.array([r[1] for r in proj_rows], pa.string()),
            "term": pa.array([r[2] for r in proj_rows], pa.string()),
            "weight": pa.array([r[3] for r in proj_rows], pa.float64()),
        }),
        "projects": pa.table({"project_id": pa.array(np.arange(n_jobs), pa.int64()), "bias": pa.array(proj_bias)}),
        "occupations": pa.table({
            "code": pa.array(occ.codes, pa.string()), "title": pa.array([o.title for o in occ.occs], pa.string()),
            "family": pa.array(occ.family, pa.string()), "popularity": pa.array(popularity),
        }),
    }
    return SimulatedMarket(companies, jobs, members, projects, events, feedback, impressions, hirer_impressions, truth)
