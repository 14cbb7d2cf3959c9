"""Member activity sequences (000): the last 32 job actions in a window, and the proxy training set.

A sequence is right-aligned: the most recent action is last; shorter histories are left-padded with PAD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEQ_LEN = 32
PAD, APPLY, SAVE, DISMISS = range(4)
N_ACTION_CODES = 4
ACTION_CODE = {"APPLY": APPLY, "SAVE": SAVE, "DISMISS": DISMISS}
POSITIVE = (APPLY, SAVE)
DAY_US = 86_400_000_000


@dataclass
class Sequences:
    """Aligned arrays: member ids, and (n, SEQ_LEN) job rows (-1 at PAD), action codes and timestamps."""

    member_id: np.ndarray
    job: np.ndarray
    action: np.ndarray
    ts: np.ndarray

    def __len__(self) -> int:
        return self.member_id.size

    def take(self, idx: np.ndarray) -> Sequences:
        return Sequences(self.member_id[idx], self.job[idx], self.action[idx], self.ts[idx])


def action_log(events: pa.Table, job_row: dict[int, int] | None = None) -> tuple[np.ndarray, ...]:
    """(member, job row, action code, ts) of APPLY/SAVE/DISMISS events, sorted by member then time."""
    acts = events.filter(pc.is_in(events["action"], pa.array(list(ACTION_CODE))))
    acts = acts.sort_by([("member_id", "ascending"), ("ts", "ascending"), ("event_id", "ascending")])
    member = acts["member_id"].to_numpy()
    job = acts["job_id"].to_numpy()
    if job_row is not None:
        job = np.fromiter((job_row.get(int(j), -1) for j in job), np.int64, job.size)
    code = np.array([ACTION_CODE[a] for a in acts["action"].to_pylist()], np.int8)
    return member, job, code, acts["ts"].cast(pa.int64()).to_numpy()


def _pack(member: np.ndarray, job: np.ndarray, code: np.ndarray, ts: np.ndarray, ends: np.ndarray,
          starts: np.ndarray) -> Sequences:
    """Windows [start, end) of a member-sorted log into right-aligned (n, SEQ_LEN) arrays."""
    n = ends.size
    J = np.full((n, SEQ_LEN), -1, np.int64)
    A = np.full((n, SEQ_LEN), PAD, np.int8)
    T = np.zeros((n, SEQ_LEN), np.int64)
    lengths = ends - starts
    slot = SEQ_LEN - lengths[:, None] + np.arange(SEQ_LEN)[None, :]  # where row k of a window lands
    src = starts[:, None] + np.arange(SEQ_LEN)[None, :]
    valid = np.arange(SEQ_LEN)[None, :] < lengths[:, None]
    r, k = np.nonzero(valid)
    J[r, slot[r, k]] = job[src[r, k]]
    A[r, slot[r, k]] = code[src[r, k]]
    T[r, slot[r, k]] = ts[src[r, k]]
    return Sequences(member[starts], J, A, T)


def member_sequences(log: tuple[np.ndarray, ...], as_of_us: int, window_days: float = 28.0,
                     members: np.ndarray | None = None) -> Sequences:
    """Per member with activity in the window before `as_of_us`: the last SEQ_LEN actions."""
    member, job, code, ts = log
    keep = (ts < as_of_us) & (ts >= as_of_us - int(window_days * DAY_US))
    if members is not None:
        keep &= np.isin(member, members)
    member, job, code, ts = member[keep], job[keep], code[keep], ts[keep]
    if member.size == 0:
        return Sequences(np.zeros(0, np.int64), np.zeros((0, SEQ_LEN), np.int64), np.zeros((0, SEQ_LEN), np.int8),
                         np.zeros((0, SEQ_LEN), np.int64))
    first = np.flatnonzero(np.r_[True, member[1:] != member[:-1]])
    ends = np.r_[first[1:], member.size]
    return _pack(member, job, code, ts, ends, np.maximum(first, ends - SEQ_LEN))


NEGATIVE_KINDS = ("random", "dismissed", "occupation")
# source codes of ProxyExamples.source: 0 = the held-out real action, then one per kind of added negative
REAL = 0
SOURCE = {kind: i + 1 for i, kind in enumerate(NEGATIVE_KINDS)}
DEFAULT_NEGATIVES = ("random",)


@dataclass
class ProxyExamples:
    """Context = up to SEQ_LEN - 1 real actions before the target, right-aligned; target = the held-out action's job
    (or an added negative's), its label (1 for APPLY/SAVE), loss weight (RAND_NEG weighs less than DISMISS) and
    source (REAL, or SOURCE[kind] of the negative)."""

    context: Sequences
    target_job: np.ndarray
    label: np.ndarray
    weight: np.ndarray
    source: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = np.zeros(self.label.size, np.int8)

    def subset(self, mask: np.ndarray) -> ProxyExamples:
        idx = np.flatnonzero(mask)
        return ProxyExamples(self.context.take(idx), self.target_job[idx], self.label[idx], self.weight[idx],
                             self.source[idx])


def _random_jobs(log: tuple[np.ndarray, ...], days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each day in `days`, a job drawn uniformly from the actions anyone took that day (000's random negatives:
    jobs that were live and interacted with, so the negative is not trivially stale)."""
    _, job, _, ts = log
    day = ts // DAY_US
    order = np.argsort(day, kind="stable")
    d_sorted = day[order]
    lo = np.searchsorted(d_sorted, days, "left")
    hi = np.searchsorted(d_sorted, days, "right")
    return job[order[lo + (rng.random(days.size) * (hi - lo)).astype(np.int64)]]


def _hard_jobs(kind: str, log: tuple[np.ndarray, ...], target: np.ndarray, context_jobs: np.ndarray,
               rng: np.random.Generator, job_group: np.ndarray | None) -> np.ndarray:
    """For each positive target (an index into `log`), a hard negative job, or -1 where there is none.

    `dismissed`: a job the same member dismissed that is not in the example's context (the context shows the
    DISMISS, and a target found there as a dismissal would give the label away rather than test the embedding);
    `occupation`: a job of the target's group (occupation) that anyone acted on that day — live, and as close to
    the member's interest as a job can be without their signal. Both are never jobs the member applied to or
    saved, at any time in the log: a hard negative must not be a positive in disguise."""
    member, job, code, ts = log
    engaged: dict[int, set[int]] = {}
    dismissed: dict[int, list[int]] = {}
    for m, j, c in zip(member.tolist(), job.tolist(), code.tolist()):
        if c in POSITIVE:
            engaged.setdefault(m, set()).add(j)
        elif c == DISMISS and j >= 0:
            dismissed.setdefault(m, []).append(j)
    pool: dict[tuple[int, int], np.ndarray] = {}
    if kind == "occupation":
        if job_group is None:
            raise ValueError("job_group: the 'occupation' negatives need each job row's occupation")
        day = ts // DAY_US
        ok = job >= 0
        keys = np.stack([day[ok], job_group[job[ok]], job[ok]], 1)
        keys = np.unique(keys, axis=0)
        starts = np.flatnonzero(np.r_[True, (keys[1:, :2] != keys[:-1, :2]).any(1)])
        for a, b in zip(starts.tolist(), np.r_[starts[1:], len(keys)].tolist()):
            pool[(int(keys[a, 0]), int(keys[a, 1]))] = keys[a:b, 2]
    out = np.full(target.size, -1, np.int64)
    for i, t in enumerate(target.tolist()):
        m = int(member[t])
        banned = engaged.get(m, set())
        if kind == "dismissed":
            seen = set(context_jobs[i].tolist())
            cands = [j for j in dismissed.get(m, ()) if j not in banned and j not in seen]
        elif job[t] < 0:
            continue
        else:
            cands = [j for j in pool.get((int(ts[t] // DAY_US), int(job_group[job[t]])), ()).tolist()
                     if j not in banned]
        if cands:
            out[i] = cands[rng.integers(len(cands))]
    return out


def proxy_examples(log: tuple[np.ndarray, ...], rng: np.random.Generator | None = None, min_actions: int = 4,
                   stride: int = 8, rand_neg_weight: float = 0.5, negatives: tuple[str, ...] = DEFAULT_NEGATIVES,
                   job_group: np.ndarray | None = None, hard_neg_weight: float = 1.0) -> ProxyExamples:
    """000's proxy task: members with fewer than `min_actions` actions are dropped; each window of up to SEQ_LEN
    actions predicts its last action from the ones before; long histories give a window every `stride` actions.

    With `rng`, every positive example gets one twin per kind in `negatives` (where the kind has a candidate): the
    same context, label 0, and a target job that is
    * `random` (000's RAND_NEG): drawn from the jobs anyone interacted with that day, weight `rand_neg_weight`;
    * `dismissed`, `occupation`: a hard negative (see `_hard_jobs`; `occupation` needs `job_group`, the occupation
      code of each job row), weight `hard_neg_weight`.
    000 inserts random negatives into the sequence at the positive's time ± a jitter; here added negatives are never
    part of a context, so neither their presence nor their position can give a label away (a RAND_NEG placed just
    before its own positive would announce it)."""
    unknown = [k for k in negatives if k not in NEGATIVE_KINDS]
    if unknown:
        raise ValueError(f"negatives: unknown kind(s) {unknown}; expected some of {NEGATIVE_KINDS}")
    member, job, code, ts = log
    first = np.flatnonzero(np.r_[True, member[1:] != member[:-1]]) if member.size else np.zeros(0, np.int64)
    size = np.diff(np.r_[first, member.size])
    ends, starts = [], []
    for f, n in zip(first[size >= min_actions].tolist(), size[size >= min_actions].tolist()):
        for e in range(f + n, f + min_actions - 1, -stride):  # window end (exclusive), newest first
            ends.append(e)
            starts.append(max(f, e - SEQ_LEN))
    ends_a, starts_a = np.array(ends, np.int64), np.array(starts, np.int64)
    target = ends_a - 1
    context = _pack(member, job, code, ts, target, starts_a)  # the actions before the target
    tcode = code[target]
    label = np.isin(tcode, POSITIVE).astype(np.int64)
    weight = np.ones(target.size)
    source = np.full(target.size, REAL, np.int8)
    target_job = job[target]
    if rng is not None and target.size:
        pos = np.flatnonzero(label == 1)
        parts = []
        for kind in negatives:
            if kind == "random":
                jobs_, w = _random_jobs(log, ts[target[pos]] // DAY_US, rng), rand_neg_weight
            else:
                jobs_, w = _hard_jobs(kind, log, target[pos], context.job[pos], rng, job_group), hard_neg_weight
            found = jobs_ >= 0
            parts.append((pos[found], jobs_[found], w, SOURCE[kind]))
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        context = Sequences(*(np.concatenate([a, a[rows]]) for a in (context.member_id, context.job, context.action,
                                                                     context.ts)))
        target_job = np.concatenate([target_job, *(p[1] for p in parts)])
        label = np.concatenate([label, np.zeros(rows.size, np.int64)])
        weight = np.concatenate([weight, *(np.full(p[0].size, p[2]) for p in parts)])
        source = np.concatenate([source, *(np.full(p[0].size, p[3], np.int8) for p in parts)])
    return ProxyExamples(context, target_job, label, weight, source)
