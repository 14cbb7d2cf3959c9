"""A job marketplace simulator with known ground truth, vectorized with numpy.

Generative story (all randomness from one `numpy.random.Generator` seeded by `SimConfig.seed`), told by the
steps of `_Simulation` in the order they draw:

* a related-connected subset of the taxonomy's occupations, and their popularity;
* companies (industry = an occupation family, location) and jobs (occupation, title variant, skills, location,
  remote flag, seniority, posting time and lifetime); one hiring project per job;
* members (occupation, listed and hidden skills, seniority, location, open-to-work) with latent seeker state:
  a seeking window, a heavy-tailed session rate, a search propensity (zero for ~16%), an apply propensity,
  a hirer-facing quality, and an intent (target occupation, remote preference) that drifts for some members;
* sessions made of channel blocks (search, recommendations, alerts, notifications); a search block's query
  names its target occupation (or a related one); each block is one request that shows a ranked list of jobs
  (impressions);
* the member VIEWs / SAVEs / APPLYs / DISMISSes shown jobs by latent utility and position; these actions are
  the events, logged after the impression that led to them (a VIEW at its time, the others seconds later;
  actions after the period's end are not logged);
* per project, a latent preference over candidate terms (skills, occupation, seniority); hirers rate applicants,
  with first positives mostly on day 1 and silence that becomes conclusive after ~14 days;
* sourcing requests (recommended matches, recruiter search) show candidates to hirers (hirer impressions),
  each rated at once.

Returned tables are the eight kinds of `jobmatch.schema.KINDS`, as a producer would send them: an impression
records what was shown (request, position, query), not what the seeker then did. Latent variables, and each
impression's outcome flags, go to `truth`, which models must never read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch import schema
from jobmatch.simulate.config import SimConfig
from jobmatch.taxonomy.base import Taxonomy

US_PER_S = 1_000_000
US_PER_MIN = 60 * US_PER_S
US_PER_H = 60 * US_PER_MIN
US_PER_DAY = 24 * US_PER_H
SLOT_US = 40 * US_PER_S  # a seeker's list shows its jobs one slot after another, this long apart
QUERY_LEAD_US = 5 * US_PER_S  # a search block's SEARCH event comes this long before its first slot

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
    impressions: pa.Table  # jobs shown to seekers, one row per (request, position); outcomes are later events
    hirer_impressions: pa.Table  # candidates shown to hirers, one row per (request, position)
    truth: dict[str, pa.Table] = field(default_factory=dict)  # latent state; never an input to a model


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


def _ids(prefix: str, n: int, take: np.ndarray | None = None) -> pa.Array:
    """Ids prefix + zero-padded number for 0..n-1 (or for the numbers in `take`), sortable as text."""
    width = max(9, len(str(n)))
    numbers = pa.array(np.arange(n) if take is None else take, pa.int64())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pc.cast(numbers, pa.string()), width, "0"), "")


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), schema.TS)


def _columns(parts: list[tuple]) -> list[np.ndarray]:
    """Field-wise concatenation of row groups given as tuples of equal-length arrays; scalars fill their group."""
    return [np.concatenate([np.broadcast_to(p[k], np.shape(p[0])) for p in parts]) for k in range(len(parts[0]))]


# -- the results of the steps ----------------------------------------------------------------------------------
@dataclass
class _Companies:
    family: np.ndarray  # index into _Simulation.families
    loc: np.ndarray  # index into LOCATIONS
    names: list[str]
    size: np.ndarray  # relative hiring volume


@dataclass
class _Jobs:
    company: np.ndarray
    occ: np.ndarray
    sen: np.ndarray
    remote: np.ndarray
    loc: np.ndarray
    posted: np.ndarray  # us
    expires: np.ndarray  # us
    attract: np.ndarray  # latent attractiveness
    skill_rows: list[np.ndarray]
    titles: list[str]
    bits: np.ndarray  # packed skill sets
    n_skills: np.ndarray

    def __len__(self) -> int:
        return self.occ.size


@dataclass
class _Members:
    occ: np.ndarray
    sen: np.ndarray
    loc: np.ndarray
    otw: np.ndarray
    skill_rows: list[np.ndarray]  # listed skills
    titles: list[str]
    hidden: list[list[str]]  # skills held but not listed
    bits: np.ndarray  # packed listed skills
    true_bits: np.ndarray  # packed listed + hidden skills

    def __len__(self) -> int:
        return self.occ.size


@dataclass
class _Seekers:
    """Latent seeker state, per member."""

    seek_a: np.ndarray  # seeking window, us
    seek_b: np.ndarray
    rate: np.ndarray  # sessions per day
    p_search: np.ndarray
    apply_prop: np.ndarray
    quality: np.ndarray  # how hirers see the member
    target0: np.ndarray  # intent before the drift
    remote0: np.ndarray
    drift_kind: np.ndarray  # "", "remote" or "occupation"
    drift_at: np.ndarray  # us; int64 max when the intent does not drift
    target1: np.ndarray  # intent after the drift
    remote1: np.ndarray

    def intent(self, mem: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(target occupation, remote preference) of members `mem` at times `ts`."""
        drifted = ts >= self.drift_at[mem]
        return (np.where(drifted, self.target1[mem], self.target0[mem]),
                np.where(drifted, self.remote1[mem], self.remote0[mem]))


@dataclass
class _Blocks:
    """Channel blocks of all sessions, session by session; each block is one request showing a list of jobs."""

    mem: np.ndarray
    channel: np.ndarray  # code in schema.Channel order
    start: np.ndarray  # us
    n_slots: np.ndarray  # length of the list shown
    target: np.ndarray  # the member's intent when the block starts
    remote: np.ndarray

    def __len__(self) -> int:
        return self.mem.size


@dataclass
class _Queries:
    search: np.ndarray  # indices of the search blocks
    occ: np.ndarray  # per block: the occupation a query would name (used by search blocks only)
    text: np.ndarray  # per block: the query, None outside search blocks


@dataclass
class _Shown:
    """Seeker impressions: the slots of the blocks' lists that found a job, in block order."""

    block: np.ndarray
    mem: np.ndarray
    channel: np.ndarray
    ts: np.ndarray
    job: np.ndarray
    slot: np.ndarray  # position in the block's list, 0-based; slots that found no job stay empty

    def __len__(self) -> int:
        return self.job.size


@dataclass
class _Outcomes:
    """What the seeker did with each impression, and how long after seeing it (a VIEW is at the impression)."""

    viewed: np.ndarray
    saved: np.ndarray
    applied: np.ndarray
    dismissed: np.ndarray
    delay: np.ndarray  # us from the impression to a SAVE/APPLY/DISMISS


@dataclass
class _Preferences:
    """Per project (= job): latent weights over candidate terms, and how demanding the hirer is."""

    bias: np.ndarray
    skill_w: np.ndarray  # (projects, skills)
    occ_w: np.ndarray  # (projects, occupations)
    sen_w: np.ndarray  # (projects, 6): seniority 1..5
    rows: list[tuple[int, str, str, float]]  # (project, term type, term, weight): the truth table


@dataclass
class _Sourcing:
    """Candidates shown to hirers by the sourcing channels, one row per (request, position)."""

    project: np.ndarray
    member: np.ndarray
    ts: np.ndarray
    channel: np.ndarray  # code in schema.FeedbackChannel order
    request: np.ndarray
    position: np.ndarray


# (project, member, ts, feedback channel code, feedback type code): a group of ratings
_Ratings = tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray | int]


class _HirerModel:
    """A hirer's latent score of a candidate for a project; ratings are Bernoulli draws of its sigmoid."""

    def __init__(self, prefs: _Preferences, members: _Members, seekers: _Seekers, jobs: _Jobs, n_skills: int):
        self.prefs, self.members, self.jobs, self.quality = prefs, members, jobs, seekers.quality
        self.true_dense = np.unpackbits(members.true_bits, axis=1, count=n_skills).astype(np.float32)

    def score(self, rng: np.random.Generator, m: np.ndarray, j: np.ndarray) -> np.ndarray:
        p, mem, jobs = self.prefs, self.members, self.jobs
        skill_term = np.einsum("ij,ij->i", self.true_dense[m], p.skill_w[j])
        fit = _overlap(mem.true_bits, jobs.bits, m, j) / jobs.n_skills[j]
        return (p.bias[j] + skill_term + p.occ_w[j, mem.occ[m]] + p.sen_w[j, mem.sen[m]]
                + 0.8 * self.quality[m] + 1.2 * fit - 0.5 * np.abs(mem.sen[m] - jobs.sen[j])
                + rng.normal(0, 0.5, m.size))


class _Simulation:
    """The steps of the generative story. Every step draws from the one generator, so `simulate` must call them
    in the story's order; each takes the earlier steps' results it needs and returns its own."""

    def __init__(self, taxonomy: Taxonomy, cfg: SimConfig):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.occ = _Occupations(select_occupations(taxonomy, cfg.max_occupations, self.rng))
        self.t0 = int(cfg.start.timestamp() * US_PER_S)
        self.t_end = self.t0 + cfg.days * US_PER_DAY
        # Occupation popularity (shared by seekers and postings, so markets clear in the same places).
        self.popularity = self.rng.dirichlet(np.full(len(self.occ.occs), 1.5))
        self.families = sorted(set(self.occ.family))

    @property
    def n_occ(self) -> int:
        return len(self.occ.occs)

    def in_period(self, ts: np.ndarray) -> np.ndarray:
        return (ts >= self.t0) & (ts < self.t_end)

    def companies(self) -> _Companies:
        cfg, rng = self.cfg, self.rng
        n_comp = max(5, int(cfg.members * cfg.companies_per_member))
        family = rng.integers(len(self.families), size=n_comp)
        loc = rng.choice(len(LOCATIONS), size=n_comp, p=LOCATION_WEIGHTS / LOCATION_WEIGHTS.sum())
        names, seen = [], set()
        for i in range(n_comp):
            name = f"{rng.choice(_NAME_A)}{rng.choice(_NAME_B)} {rng.choice(_NAME_C)}"
            name = name if name not in seen else f"{name} {i}"
            seen.add(name)
            names.append(name)
        size = rng.pareto(1.2, n_comp) + 1  # heavy-tailed hiring volume
        return _Companies(family, loc, names, size)

    def jobs(self, comp: _Companies) -> _Jobs:
        cfg, rng, occ = self.cfg, self.rng, self.occ
        fam_of = np.array([self.families.index(f) for f in occ.family])
        n_jobs = max(10, int(cfg.members * cfg.jobs_per_member))
        company = rng.choice(comp.size.size, size=n_jobs, p=comp.size / comp.size.sum())
        # Most jobs are in the company's industry; the rest anywhere, by popularity.
        in_family = rng.random(n_jobs) < 0.8
        job_occ = np.empty(n_jobs, np.int64)
        for f in range(len(self.families)):
            members_f = np.flatnonzero(fam_of == f)
            mask = in_family & (comp.family[company] == f)
            if members_f.size and mask.any():
                p = self.popularity[members_f] / self.popularity[members_f].sum()
                job_occ[mask] = rng.choice(members_f, size=mask.sum(), p=p)
        out_of_family = ~in_family | ~np.isin(comp.family[company], fam_of)
        job_occ[out_of_family] = rng.choice(self.n_occ, size=out_of_family.sum(), p=self.popularity)
        sen = np.clip(occ.zone[job_occ] + rng.choice([-1, 0, 0, 1], size=n_jobs), 1, 5)
        remote = rng.random(n_jobs) < cfg.remote_job_share
        posted = self.t0 + ((rng.random(n_jobs) * (cfg.days + cfg.prior_posting_days) - cfg.prior_posting_days)
                            * US_PER_DAY).astype(np.int64)
        lifetime_days = np.clip(rng.lognormal(np.log(cfg.job_lifetime_median_days), 0.5, n_jobs), 3, 90)
        expires = posted + (lifetime_days * US_PER_DAY).astype(np.int64)
        attract = rng.normal(0, 0.5, n_jobs)
        skill_rows, titles = [], []
        for j in range(n_jobs):
            o = job_occ[j]
            sk, w = occ.occ_skills[o], occ.occ_skill_w[o]
            keep = rng.random(sk.size) < 0.3 + 0.6 * w
            skill_rows.append(sk[keep] if keep.any() else sk[:1])
            alts = occ.occs[o].alt_titles
            base = occ.occs[o].title.lower() if rng.random() < 0.4 else alts[rng.integers(len(alts))]
            titles.append(SENIORITY_PREFIX[int(sen[j])] + base)
        return _Jobs(company, job_occ, sen, remote, comp.loc[company], posted, expires, attract, skill_rows, titles,
                     _skill_bits(skill_rows, len(occ.skills)), np.array([r.size for r in skill_rows]))

    def members(self) -> _Members:
        cfg, rng, occ = self.cfg, self.rng, self.occ
        n_mem, n_skills = cfg.members, len(occ.skills)
        mem_occ = rng.choice(self.n_occ, size=n_mem, p=self.popularity)
        sen = np.clip(occ.zone[mem_occ] + rng.choice([-1, 0, 0, 1], size=n_mem), 1, 5)
        loc = rng.choice(len(LOCATIONS), size=n_mem, p=LOCATION_WEIGHTS / LOCATION_WEIGHTS.sum())
        otw = rng.random(n_mem) < cfg.open_to_work_share
        skill_rows, true_rows, titles, hidden_names = [], [], [], []
        for m in range(n_mem):
            o = mem_occ[m]
            sk, w = occ.occ_skills[o], occ.occ_skill_w[o]
            has = rng.random(sk.size) < 0.35 + 0.55 * w
            listed = sk[has] if has.any() else sk[:1]
            # one skill from a related occupation, and a few held but not listed
            rel = occ.occ_skills[occ.tier1[o][rng.integers(len(occ.tier1[o]))]]
            listed = np.union1d(listed, rel[rng.integers(rel.size, size=1)])
            unlisted = np.setdiff1d(np.arange(n_skills), listed)
            hidden = rng.choice(unlisted, size=min(cfg.hidden_skills, unlisted.size), replace=False)
            skill_rows.append(listed)
            true_rows.append(np.union1d(listed, hidden))
            hidden_names.append([occ.skills[h] for h in hidden])
            alts = occ.occs[o].alt_titles
            base = occ.occs[o].title.lower() if rng.random() < 0.5 else alts[rng.integers(len(alts))]
            titles.append(SENIORITY_PREFIX[int(sen[m])] + base)
        return _Members(mem_occ, sen, loc, otw, skill_rows, titles, hidden_names, _skill_bits(skill_rows, n_skills),
                        _skill_bits(true_rows, n_skills))

    def seekers(self, members: _Members) -> _Seekers:
        cfg, rng, occ, t0 = self.cfg, self.rng, self.occ, self.t0
        n_mem = len(members)
        rate = rng.lognormal(np.log(cfg.sessions_per_day_median), cfg.sessions_per_day_sigma, n_mem)
        seek_len = np.clip(rng.lognormal(np.log(cfg.seeking_days_median), 0.5, n_mem), 3, None) * US_PER_DAY
        seek_start = t0 + (rng.random(n_mem) * (cfg.days * US_PER_DAY + 0.6 * seek_len) - 0.6 * seek_len)
        seek_a = np.maximum(seek_start, t0).astype(np.int64)
        seek_b = np.minimum(seek_start + seek_len, self.t_end).astype(np.int64)
        seek_b = np.maximum(seek_b, seek_a + US_PER_H)
        never_search = rng.random(n_mem) < cfg.never_search_share
        p_search = np.where(never_search, 0.0, rng.beta(3.0, 2.0, n_mem))
        apply_prop = rng.normal(0, 0.6, n_mem)
        quality = rng.normal(0, 1, n_mem)
        target0 = np.where(rng.random(n_mem) < cfg.related_target_share, occ.related1(rng, members.occ), members.occ)
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
        new_target[same] = occ.related1(rng, members.occ[same])
        target1 = np.where(drift_kind == "occupation", new_target, target0)
        remote1 = remote0 | (drift_kind == "remote")
        return _Seekers(seek_a, seek_b, rate, p_search, apply_prop, quality, target0, remote0, drift_kind, drift_at,
                        target1, remote1)

    def blocks(self, seekers: _Seekers) -> _Blocks:
        """Sessions inside each seeking window, and the channel blocks each session is made of."""
        rng, t0 = self.rng, self.t0
        seek_a, seek_b, p_search = seekers.seek_a, seekers.seek_b, seekers.p_search
        window_days = (seek_b - seek_a) / US_PER_DAY
        n_sess = 1 + rng.poisson(seekers.rate * window_days)
        s_mem = np.repeat(np.arange(n_sess.size), n_sess)
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
        channel = np.where(first_of_sess, first_channel[b_sess],
                           np.where(rng.random(b_sess.size) < p_search[b_mem], 0, 1))
        gap = np.where(first_of_sess, 0, rng.exponential(2.0, b_sess.size) * US_PER_MIN).astype(np.int64)
        n_slots = np.select([channel == 0, channel == 1, channel == 2],
                            [10, 4 + rng.poisson(6, b_sess.size), 1 + rng.poisson(1.0, b_sess.size)],
                            1 + (rng.random(b_sess.size) < 0.3))
        n_slots = np.minimum(n_slots, 25)
        # block start = session start + the durations of the session's earlier blocks + this block's gap
        dur = gap + n_slots * SLOT_US
        csum = np.cumsum(dur)
        sess_first_block = np.flatnonzero(first_of_sess)
        prev = np.repeat(csum[sess_first_block] - dur[sess_first_block], n_blocks)
        start = s_start[b_sess] + (csum - prev) - dur + gap
        target, remote = seekers.intent(b_mem, start)
        return _Blocks(b_mem, channel, start, n_slots, target, remote)

    def queries(self, blocks: _Blocks) -> _Queries:
        """Search blocks: the query's occupation is the target, sometimes a related one."""
        rng, occ = self.rng, self.occ
        q_occ = np.where(rng.random(len(blocks)) < 0.75, blocks.target, occ.related1(rng, blocks.target))
        text = np.full(len(blocks), None, object)
        search = np.flatnonzero(blocks.channel == 0)
        qr = rng.random(search.size)
        for k, b in enumerate(search):
            o = occ.occs[q_occ[b]]
            if qr[k] < 0.15:
                q = o.skills[min(int(rng.integers(3)), len(o.skills) - 1)][0]
            else:
                q = o.alt_titles[rng.integers(len(o.alt_titles))] if qr[k] < 0.8 else o.title.lower()
            if blocks.remote[b] and rng.random() < 0.5:
                q = "remote " + q
            text[b] = q
        return _Queries(search, q_occ, text)

    def impressions(self, jobs: _Jobs, members: _Members, blocks: _Blocks, queries: _Queries) -> _Shown:
        """Fill each block's slots with open jobs of an occupation the channel draws from."""
        rng, occ, t0, n_occ, popularity = self.rng, self.occ, self.t0, self.n_occ, self.popularity
        i_block = np.repeat(np.arange(len(blocks)), blocks.n_slots)
        n_i = i_block.size
        i_mem = blocks.mem[i_block]
        i_chan = blocks.channel[i_block]
        i_pos = np.arange(n_i) - np.repeat(np.cumsum(blocks.n_slots) - blocks.n_slots, blocks.n_slots)
        i_time = blocks.start[i_block] + i_pos * SLOT_US
        # Which occupation each impression is drawn from: search -> the query; recommendations -> mostly the
        # profile (a profile-based recommender, blind to drift) with some activity-aware picks; alerts -> past
        # query intent.
        r = rng.random(n_i)
        profile = members.occ[i_mem]
        tgt = blocks.target[i_block]
        q_occ = queries.occ[i_block]
        src = np.select(
            [i_chan == 0, i_chan == 1, i_chan == 2],
            [np.where(r < 0.75, q_occ, np.where(r < 0.92, occ.related1(rng, q_occ),
                                                rng.choice(n_occ, size=n_i, p=popularity))),
             np.where(r < 0.55, profile, np.where(r < 0.75, occ.related1(rng, profile),
                                                  np.where(r < 0.9, tgt, rng.choice(n_occ, size=n_i, p=popularity)))),
             np.where(r < 0.7, tgt, profile)],
            np.where(r < 0.8, profile, tgt),
        )
        fresh_only = i_chan >= 2  # alerts and notifications carry newly posted jobs
        # jobs by (occupation, posting time): the open jobs of an occupation at time t are a contiguous run
        order = np.lexsort((jobs.posted, jobs.occ))
        occ_start = np.searchsorted(jobs.occ[order], np.arange(n_occ + 1))
        # one int64 key per (occupation, posting time): times are offset from before the earliest posting and each
        # occupation gets a range wider than the whole time span, so a search never runs into the next occupation
        base = int(min(jobs.posted.min(), t0)) - 4 * US_PER_DAY
        width = 1 << int(np.ceil(np.log2(max(int(jobs.posted.max()), int(i_time.max())) - base + 1)))
        key = jobs.occ[order].astype(np.int64) * width + (jobs.posted[order] - base)
        i_job = np.full(n_i, -1, np.int64)
        for attempt in range(6):
            todo = np.flatnonzero(i_job < 0)
            if todo.size == 0:
                break
            o = src[todo] if attempt < 4 else rng.choice(n_occ, size=todo.size, p=popularity)
            t = i_time[todo]
            hi = np.searchsorted(key, o * width + (t - base), side="right")
            lo_fresh = np.searchsorted(key, o * width + np.maximum(t - 3 * US_PER_DAY - base, 0))
            lo = np.where(fresh_only[todo], lo_fresh, occ_start[o])
            ok = hi > lo
            pick = lo + (rng.random(todo.size) * (hi - lo)).astype(np.int64)
            cand = np.where(ok, order[np.minimum(pick, len(jobs) - 1)], -1)
            active = ok & (jobs.expires[np.maximum(cand, 0)] > t)
            # searches by remote-minded seekers mostly surface remote jobs
            want_remote = blocks.remote[i_block[todo]] & (i_chan[todo] == 0)
            active &= ~want_remote | jobs.remote[np.maximum(cand, 0)] | (rng.random(todo.size) < 0.4)
            i_job[todo[active]] = cand[active]
        shown = i_job >= 0
        # a member is not shown the same job twice in one block
        dup = np.zeros(n_i, bool)
        idx = np.flatnonzero(shown)
        pairs = i_block[idx].astype(np.int64) * len(jobs) + i_job[idx]
        _, first = np.unique(pairs, return_index=True)
        dup[idx] = True
        dup[idx[first]] = False
        keep = shown & ~dup
        return _Shown(i_block[keep], i_mem[keep], i_chan[keep], i_time[keep], i_job[keep], i_pos[keep])

    def seeker_actions(self, jobs: _Jobs, members: _Members, seekers: _Seekers, shown: _Shown) -> _Outcomes:
        rng, occ = self.rng, self.occ
        n_i, i_mem, i_job, i_chan = len(shown), shown.mem, shown.job, shown.channel
        i_target, i_rem = seekers.intent(i_mem, shown.ts)
        skill_fit = _overlap(members.bits, jobs.bits, i_mem, i_job) / jobs.n_skills[i_job]
        util = (2.4 * occ.match[i_target, jobs.occ[i_job]] + 1.5 * skill_fit
                + np.where(i_rem, np.where(jobs.remote[i_job], 1.2, -0.9), 0.0)
                - 0.6 * np.abs(members.sen[i_mem] - jobs.sen[i_job])
                + np.where((jobs.loc[i_job] == members.loc[i_mem]) | jobs.remote[i_job], 0.4, -0.6)
                + jobs.attract[i_job] + rng.normal(0, 0.7, n_i))
        chan_view = np.array([0.4, 0.0, 0.3, 0.2])[i_chan]
        position = np.minimum(shown.slot, 10)  # lower-ranked results are looked at less (position bias)
        viewed = rng.random(n_i) < _sigmoid(-2.0 + 1.2 * util + chan_view - 0.15 * position)
        applied = viewed & (rng.random(n_i) < _sigmoid(-4.2 + 1.2 * util + seekers.apply_prop[i_mem]))
        saved = viewed & ~applied & (rng.random(n_i) < _sigmoid(-3.4 + 1.1 * util))
        dismissed = ~applied & ~saved & (rng.random(n_i) < np.where(viewed, _sigmoid(-2.2 - 1.2 * util),
                                                                     0.35 * _sigmoid(-2.0 - 1.2 * util)))
        dismissed &= i_chan != 0  # dismiss is a recommendation-surface control
        # Applying twice to one job is not possible: keep the first apply per (member, job).
        app = np.flatnonzero(applied)
        order_app = app[np.lexsort((shown.ts[app], i_job[app], i_mem[app]))]
        pair = i_mem[order_app].astype(np.int64) * len(jobs) + i_job[order_app]
        again = np.r_[False, pair[1:] == pair[:-1]]
        applied[order_app[again]] = False
        delay = (rng.exponential(12, n_i) + 3).astype(np.int64) * US_PER_S
        return _Outcomes(viewed, saved, applied, dismissed, delay)

    def hirer_preferences(self, jobs: _Jobs) -> _Preferences:
        """Liked skills (from the job's occupation and a neighbour's), occupation and seniority terms."""
        rng, occ = self.rng, self.occ
        n_jobs = len(jobs)
        rows: list[tuple[int, str, str, float]] = []
        skill_w = np.zeros((n_jobs, len(occ.skills)), np.float32)
        occ_w = np.zeros((n_jobs, self.n_occ), np.float32)
        sen_w = np.zeros((n_jobs, 6), np.float32)
        bias = rng.normal(-3.6, 0.7, n_jobs)
        for j in range(n_jobs):
            o = jobs.occ[j]
            pool = np.union1d(occ.occ_skills[o], occ.occ_skills[occ.tier1[o][rng.integers(len(occ.tier1[o]))]])
            liked = rng.choice(pool, size=min(3, pool.size), replace=False)
            w = rng.gamma(2.0, 0.6, liked.size)
            skill_w[j, liked] = w
            occ_w[j, o] = rng.normal(1.0, 0.4)
            rel = occ.tier1[o]
            occ_w[j, rel] = rng.normal(0.3, 0.5, rel.size)
            sen = jobs.sen[j]
            sen_w[j, sen] = 0.6
            sen_w[j, max(1, sen - 1)] += rng.normal(-0.2, 0.5)
            sen_w[j, min(5, sen + 1)] += rng.normal(0.2, 0.5)
            rows += [(j, "skill", occ.skills[s], float(x)) for s, x in zip(liked, w)]
            rows += [(j, "occupation", occ.codes[c], float(occ_w[j, c])) for c in np.r_[o, rel]]
            rows += [(j, "seniority", str(s), float(sen_w[j, s])) for s in range(1, 6) if sen_w[j, s]]
        # scaled after all draws, so every scale sees the same tastes (and 1.0 the default market, bit for bit)
        scale = self.cfg.hirer_preference_scale
        if scale != 1.0:
            skill_w, occ_w, sen_w = skill_w * np.float32(scale), occ_w * np.float32(scale), sen_w * np.float32(scale)
            rows = [(p, t, term, w * scale) for p, t, term, w in rows]
        return _Preferences(bias, skill_w, occ_w, sen_w, rows)

    def applicant_feedback(self, hirer: _HirerModel, shown: _Shown, outcomes: _Outcomes) -> list[_Ratings]:
        """Hirers rate applicants: positives become messages, interviews, offers; some negatives are explicit."""
        rng, cfg = self.rng, self.cfg
        ap = np.flatnonzero(outcomes.applied & self.in_period(shown.ts))
        a_mem, a_job, a_time = shown.mem[ap], shown.job[ap], shown.ts[ap] + outcomes.delay[ap]
        s = hirer.score(rng, a_mem, a_job)
        positive = rng.random(ap.size) < _sigmoid(s)
        # First positive: ~30-40% within a day, the rest spread over the next weeks (001: "30% ... within a day").
        fast = rng.random(ap.size) < 0.18
        delay = np.where(fast, rng.exponential(6 * US_PER_H, ap.size), rng.exponential(5 * US_PER_DAY, ap.size))
        first_pos = a_time + delay.astype(np.int64)
        parts: list[_Ratings] = [(a_job[positive], a_mem[positive], first_pos[positive], 0, 0)]  # view_profile
        msg = positive & (rng.random(ap.size) < 0.55)
        t_msg = first_pos + rng.exponential(1.5 * US_PER_DAY, ap.size).astype(np.int64)
        parts.append((a_job[msg], a_mem[msg], t_msg[msg], 0, 1))
        itv = msg & (rng.random(ap.size) < 0.4)
        t_itv = t_msg + rng.exponential(4 * US_PER_DAY, ap.size).astype(np.int64)
        parts.append((a_job[itv], a_mem[itv], t_itv[itv], 0, 2))
        off = itv & (rng.random(ap.size) < 0.25)
        t_off = t_itv + rng.exponential(5 * US_PER_DAY, ap.size).astype(np.int64)
        parts.append((a_job[off], a_mem[off], t_off[off], 0, 3))
        neg = ~positive & (rng.random(ap.size) < cfg.explicit_negative_share)
        t_neg = a_time + rng.exponential(4 * US_PER_DAY, ap.size).astype(np.int64)
        parts.append((a_job[neg], a_mem[neg], t_neg[neg], 0, np.where(rng.random(neg.sum()) < 0.7, 4, 6)))
        rejected_after_itv = itv & ~off & (rng.random(ap.size) < 0.5)
        parts.append((a_job[rejected_after_itv], a_mem[rejected_after_itv], t_itv[rejected_after_itv] + US_PER_DAY,
                      0, 6))
        return parts

    def sourcing(self, hirer: _HirerModel, jobs: _Jobs, members: _Members) -> tuple[_Sourcing, list[_Ratings]]:
        """Requests of candidates shown to the hirer, each candidate rated at once (skip if not acted on)."""
        rng, cfg, t0, t_end = self.rng, self.cfg, self.t0, self.t_end
        n_mem = len(members)
        by_occ = [np.flatnonzero(members.occ == k) for k in range(self.n_occ)]
        shown_parts, ratings = [], []
        request = 0
        for chan, share, per_req, n_req_mean, breadth in ((1, cfg.recommended_matches_share, 5, 3.0, 0.8),
                                                          (2, cfg.recruiter_search_share, 10, 2.0, 0.5)):
            projs = np.flatnonzero(rng.random(len(jobs)) < share)
            n_req = 1 + rng.poisson(n_req_mean * cfg.sourcing_intensity, projs.size)
            r_proj = np.repeat(projs, n_req)
            span = np.minimum(jobs.expires[r_proj], t_end) - jobs.posted[r_proj]
            r_time = jobs.posted[r_proj] + (rng.random(r_proj.size) * np.maximum(span, US_PER_H)).astype(np.int64)
            okr = (r_time >= t0) & (r_time < t_end)
            r_proj, r_time = r_proj[okr], r_time[okr]
            c_proj = np.repeat(r_proj, per_req)
            c_time = np.repeat(r_time, per_req)
            c_req = np.repeat(np.arange(request, request + r_proj.size), per_req)
            request += r_proj.size
            job_occ = jobs.occ[c_proj]
            c_occ = np.where(rng.random(c_proj.size) < breadth, job_occ, self.occ.related1(rng, job_occ))
            cands = np.empty(c_proj.size, np.int64)
            for k in np.unique(c_occ):
                sel = np.flatnonzero(c_occ == k)
                pool = by_occ[k] if by_occ[k].size else np.arange(n_mem)
                # passive sourcing favours open-to-work members
                wts = np.where(members.otw[pool], 2.0, 1.0)
                cands[sel] = rng.choice(pool, size=sel.size, p=wts / wts.sum())
            # a request lists a candidate once: later draws of the same member are dropped
            _, first = np.unique(np.stack([c_req, cands]), axis=1, return_index=True)
            once = np.sort(first)
            c_proj, cands, c_time, c_req = c_proj[once], cands[once], c_time[once], c_req[once]
            starts = np.flatnonzero(np.r_[True, c_req[1:] != c_req[:-1]])
            c_pos = np.arange(c_req.size) - np.repeat(starts, np.diff(np.r_[starts, c_req.size]))
            shown_parts.append((c_proj, cands, c_time, chan, c_req, c_pos))
            sc = hirer.score(rng, cands, c_proj) - 0.4 * (chan == 2) + 0.5 * members.otw[cands]
            pos = rng.random(cands.size) < _sigmoid(sc)
            react = c_time + rng.exponential(20 * US_PER_MIN, cands.size).astype(np.int64)
            kind = np.where(pos, np.where(rng.random(cands.size) < 0.6, 1, 0),
                            np.where(rng.random(cands.size) < 0.4, 4, 5))
            ratings.append((c_proj, cands, react, chan, kind))
        return _Sourcing(*_columns(shown_parts)), ratings


# -- tables ----------------------------------------------------------------------------------------------------
_ACTIONS = np.array([a.value for a in schema.Action], object)
_CHANNELS = np.array([c.value for c in schema.Channel], object)
_FEEDBACK_TYPES = np.array([f.value for f in schema.FeedbackType], object)
_FEEDBACK_CHANNELS = np.array([c.value for c in schema.FeedbackChannel], object)


def _entity_tables(sim: _Simulation, comp: _Companies, jobs: _Jobs, members: _Members) -> dict[str, pa.Table]:
    occ = sim.occ
    skills = np.array(occ.skills, object)
    n_jobs = len(jobs)
    return {
        "companies": pa.table({
            "company_id": pa.array(np.arange(len(comp.names)), pa.int64()), "name": pa.array(comp.names, pa.string()),
            "industry": pa.array([sim.families[f] for f in comp.family], pa.string()),
            "location": pa.array([LOCATIONS[k] for k in comp.loc], pa.string()),
        }, schema=schema.COMPANY_SCHEMA),
        "jobs": pa.table({
            "job_id": pa.array(np.arange(n_jobs), pa.int64()), "company_id": pa.array(jobs.company, pa.int64()),
            "title": pa.array(jobs.titles, pa.string()), "occupation": pa.array(occ.codes[jobs.occ], pa.string()),
            "skills": pa.array([list(skills[r]) for r in jobs.skill_rows], pa.list_(pa.string())),
            "location": pa.array([LOCATIONS[k] for k in jobs.loc], pa.string()), "remote": pa.array(jobs.remote),
            "seniority": pa.array(jobs.sen, pa.int8()), "posted_at": _ts(jobs.posted),
            "expires_at": _ts(jobs.expires),
        }, schema=schema.JOB_SCHEMA),
        "members": pa.table({
            "member_id": pa.array(np.arange(len(members)), pa.int64()), "title": pa.array(members.titles, pa.string()),
            "occupation": pa.array(occ.codes[members.occ], pa.string()),
            "skills": pa.array([list(skills[r]) for r in members.skill_rows], pa.list_(pa.string())),
            "seniority": pa.array(members.sen, pa.int8()),
            "location": pa.array([LOCATIONS[k] for k in members.loc], pa.string()),
            "open_to_work": pa.array(members.otw),
        }, schema=schema.MEMBER_SCHEMA),
        "projects": pa.table({  # one hiring project per job, opened when the job is posted
            "project_id": pa.array(np.arange(n_jobs), pa.int64()), "job_id": pa.array(np.arange(n_jobs), pa.int64()),
            "company_id": pa.array(jobs.company, pa.int64()), "created_at": _ts(jobs.posted),
        }, schema=schema.PROJECT_SCHEMA),
    }


def _events_table(sim: _Simulation, blocks: _Blocks, queries: _Queries, shown: _Shown,
                  outcomes: _Outcomes) -> pa.Table:
    """A search block starts with its SEARCH; a VIEW is at the impression, the other actions `delay` later."""
    s = queries.search
    parts = [(blocks.mem[s], blocks.start[s] - QUERY_LEAD_US, 0, blocks.channel[s], -1, queries.text[s])]
    for act, mask, after in ((1, outcomes.viewed, 0), (3, outcomes.applied, 1), (2, outcomes.saved, 1),
                             (4, outcomes.dismissed, 1)):
        sel = np.flatnonzero(mask)
        parts.append((shown.mem[sel], shown.ts[sel] + after * outcomes.delay[sel], act, shown.channel[sel],
                      shown.job[sel], None))
    mem, ts, act, chan, job, query = _columns(parts)
    o = np.lexsort((act, ts, mem))
    o = o[sim.in_period(ts)[o]]
    mem, ts, act, chan, job, query = (a[o] for a in (mem, ts, act, chan, job, query))
    return pa.table({
        "event_id": _ids(f"s{sim.cfg.seed}e", mem.size),
        "member_id": pa.array(mem, pa.int64()),
        "ts": _ts(ts),
        "action": pa.array(_ACTIONS[act], pa.string()),
        "channel": pa.array(_CHANNELS[chan], pa.string()),
        "job_id": pa.array(np.where(job >= 0, job, 0), pa.int64(), mask=job < 0),
        "query": pa.array(query, pa.string()),
    }, schema=schema.EVENT_SCHEMA)


def _impression_tables(sim: _Simulation, blocks: _Blocks, queries: _Queries, shown: _Shown,
                       outcomes: _Outcomes) -> tuple[pa.Table, pa.Table]:
    """The impressions inside the period as logged (one request per block), and their outcomes for the truth."""
    seed = sim.cfg.seed
    keep = np.flatnonzero(sim.in_period(shown.ts))
    ids = _ids(f"s{seed}i", keep.size)
    impressions = pa.table({
        "impression_id": ids,
        "request_id": _ids(f"s{seed}r", len(blocks), take=shown.block[keep]),
        "member_id": pa.array(shown.mem[keep], pa.int64()),
        "job_id": pa.array(shown.job[keep], pa.int64()),
        "ts": _ts(shown.ts[keep]),
        "channel": pa.array(_CHANNELS[shown.channel[keep]], pa.string()),
        "position": pa.array(shown.slot[keep], pa.int32()),
        "query": pa.array(queries.text[shown.block[keep]], pa.string()),
    }, schema=schema.IMPRESSION_SCHEMA)
    truth = pa.table({"impression_id": ids, **{name: pa.array(getattr(outcomes, name)[keep])
                                               for name in ("viewed", "saved", "applied", "dismissed")}})
    return impressions, truth


def _feedback_table(sim: _Simulation, ratings: list[_Ratings]) -> pa.Table:
    proj, mem, ts, chan, kind = _columns(ratings)
    o = np.lexsort((kind, mem, proj, ts))
    o = o[ts[o] < sim.t_end]
    return pa.table({
        "feedback_id": _ids(f"s{sim.cfg.seed}f", o.size),
        "project_id": pa.array(proj[o], pa.int64()),
        "member_id": pa.array(mem[o], pa.int64()),
        "ts": _ts(ts[o]),
        "channel": pa.array(_FEEDBACK_CHANNELS[chan[o]], pa.string()),
        "feedback": pa.array(_FEEDBACK_TYPES[kind[o]], pa.string()),
    }, schema=schema.FEEDBACK_SCHEMA)


def _hirer_impressions_table(sim: _Simulation, src: _Sourcing) -> pa.Table:
    seed = sim.cfg.seed
    o = np.lexsort((src.request, src.ts))  # stable: a request's candidates stay in position order
    return pa.table({
        "impression_id": _ids(f"s{seed}h", o.size),
        "request_id": _ids(f"s{seed}q", int(src.request.max(initial=-1)) + 1, take=src.request[o]),
        "project_id": pa.array(src.project[o], pa.int64()),
        "member_id": pa.array(src.member[o], pa.int64()),
        "ts": _ts(src.ts[o]),
        "channel": pa.array(_FEEDBACK_CHANNELS[src.channel[o]], pa.string()),
        "position": pa.array(src.position[o], pa.int32()),
    }, schema=schema.HIRER_IMPRESSION_SCHEMA)


def _truth_tables(sim: _Simulation, jobs: _Jobs, members: _Members, seekers: _Seekers,
                  prefs: _Preferences) -> dict[str, pa.Table]:
    occ, s = sim.occ, seekers
    n_jobs, n_mem = len(jobs), len(members)
    no_drift = s.drift_at == np.iinfo(np.int64).max
    return {
        "members": pa.table({
            "member_id": pa.array(np.arange(n_mem), pa.int64()),
            "seek_start": _ts(s.seek_a), "seek_end": _ts(s.seek_b),
            "sessions_per_day": pa.array(s.rate), "search_propensity": pa.array(s.p_search),
            "apply_propensity": pa.array(s.apply_prop), "quality": pa.array(s.quality),
            "hidden_skills": pa.array(members.hidden, pa.list_(pa.string())),
            "target_occupation": pa.array(occ.codes[s.target0], pa.string()), "remote_pref": pa.array(s.remote0),
            "drift_kind": pa.array(s.drift_kind, pa.string()),
            "drift_at": pa.array(np.where(no_drift, 0, s.drift_at), schema.TS, mask=no_drift),
            "target_occupation_after": pa.array(occ.codes[s.target1], pa.string()),
            "remote_pref_after": pa.array(s.remote1),
        }),
        "jobs": pa.table({"job_id": pa.array(np.arange(n_jobs), pa.int64()), "attractiveness": pa.array(jobs.attract)}),
        "project_preferences": pa.table({
            "project_id": pa.array([r[0] for r in prefs.rows], pa.int64()),
            "term_type": pa.array([r[1] for r in prefs.rows], pa.string()),
            "term": pa.array([r[2] for r in prefs.rows], pa.string()),
            "weight": pa.array([r[3] for r in prefs.rows], pa.float64()),
        }),
        "projects": pa.table({"project_id": pa.array(np.arange(n_jobs), pa.int64()), "bias": pa.array(prefs.bias)}),
        "occupations": pa.table({
            "code": pa.array(occ.codes, pa.string()), "title": pa.array([o.title for o in occ.occs], pa.string()),
            "family": pa.array(occ.family, pa.string()), "popularity": pa.array(sim.popularity),
        }),
    }


def simulate(taxonomy: Taxonomy, cfg: SimConfig, progress: Progress | None = None) -> SimulatedMarket:
    """Run the generative story (see the module docstring) for `cfg`; the same seed gives the same market."""
    say = progress or (lambda _msg: None)
    sim = _Simulation(taxonomy, cfg)
    say("companies and jobs")
    companies = sim.companies()
    jobs = sim.jobs(companies)
    say("members")
    members = sim.members()
    seekers = sim.seekers(members)
    say("sessions")
    blocks = sim.blocks(seekers)
    queries = sim.queries(blocks)
    say("impressions")
    shown = sim.impressions(jobs, members, blocks, queries)
    say("seeker actions")
    outcomes = sim.seeker_actions(jobs, members, seekers, shown)
    say("hirer preferences and feedback")
    prefs = sim.hirer_preferences(jobs)
    hirer = _HirerModel(prefs, members, seekers, jobs, len(sim.occ.skills))
    ratings = sim.applicant_feedback(hirer, shown, outcomes)
    sourced, sourced_ratings = sim.sourcing(hirer, jobs, members)

    say("tables")
    impressions, impression_outcomes = _impression_tables(sim, blocks, queries, shown, outcomes)
    truth = _truth_tables(sim, jobs, members, seekers, prefs)
    truth["impression_outcomes"] = impression_outcomes
    return SimulatedMarket(**_entity_tables(sim, companies, jobs, members),
                           events=_events_table(sim, blocks, queries, shown, outcomes),
                           feedback=_feedback_table(sim, ratings + sourced_ratings),
                           impressions=impressions, hirer_impressions=_hirer_impressions_table(sim, sourced),
                           truth=truth)
