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


@dataclass
class ProxyExamples:
    """Context = up to SEQ_LEN - 1 real actions before the target, right-aligned; target = the held-out action's job
    (or a random negative's), its label (1 for APPLY/SAVE) and loss weight (RAND_NEG weighs less than DISMISS)."""

    context: Sequences
    target_job: np.ndarray
    label: np.ndarray
    weight: np.ndarray

    def subset(self, mask: np.ndarray) -> ProxyExamples:
        idx = np.flatnonzero(mask)
        return ProxyExamples(self.context.take(idx), self.target_job[idx], self.label[idx], self.weight[idx])


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


def proxy_examples(log: tuple[np.ndarray, ...], rng: np.random.Generator | None = None, min_actions: int = 4,
                   stride: int = 8, rand_neg_weight: float = 0.5) -> ProxyExamples:
    """000's proxy task: members with fewer than `min_actions` actions are dropped; each window of up to SEQ_LEN
    actions predicts its last action from the ones before; long histories give a window every `stride` actions.

    With `rng`, every positive example gets a RAND_NEG twin: the same context, a target job drawn from the jobs
    anyone interacted with that day, label 0, weight `rand_neg_weight`. 000 inserts random negatives into the
    sequence at the positive's time ± a jitter; here they are never part of a context, so neither their presence
    nor their position can give a label away (a RAND_NEG placed just before its own positive would announce it)."""
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
    target_job = job[target]
    if rng is not None and target.size:
        pos = np.flatnonzero(label == 1)
        negatives = _random_jobs(log, ts[target[pos]] // DAY_US, rng)
        context = Sequences(*(np.concatenate([a, a[pos]]) for a in (context.member_id, context.job, context.action,
                                                                    context.ts)))
        target_job = np.concatenate([target_job, negatives])
        label = np.concatenate([label, np.zeros(pos.size, np.int64)])
        weight = np.concatenate([weight, np.full(pos.size, rand_neg_weight)])
    return ProxyExamples(context, target_job, label, weight)
