"""Member activity sequences (000): the last 32 job actions in a window, and the proxy training set.

A sequence is right-aligned: the most recent action is last; shorter histories are left-padded with PAD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SEQ_LEN = 32
PAD, APPLY, SAVE, DISMISS, RAND_NEG = range(5)
N_ACTION_CODES = 5
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


def add_random_negatives(log: tuple[np.ndarray, ...], rng: np.random.Generator,
                         jitter_s: float = 60.0) -> tuple[np.ndarray, ...]:
    """For every positive action, a RAND_NEG row: a job drawn uniformly from the jobs anyone interacted with that
    day, at the same time plus a small random shift either way (000's random negatives)."""
    member, job, code, ts = log
    day = ts // DAY_US
    pos = np.flatnonzero(np.isin(code, POSITIVE))
    order = np.lexsort((job, day))
    d_sorted = day[order]
    lo = np.searchsorted(d_sorted, day[pos], "left")
    hi = np.searchsorted(d_sorted, day[pos], "right")
    pick = order[lo + (rng.random(pos.size) * (hi - lo)).astype(np.int64)]
    shift = ((rng.random(pos.size) * 2 - 1) * jitter_s * 1e6).astype(np.int64)
    merged = (np.concatenate([member, member[pos]]), np.concatenate([job, job[pick]]),
              np.concatenate([code, np.full(pos.size, RAND_NEG, np.int8)]), np.concatenate([ts, ts[pos] + shift]))
    o = np.lexsort((merged[3], merged[0]))
    return tuple(a[o] for a in merged)


@dataclass
class ProxyExamples:
    """Context = up to SEQ_LEN - 1 actions before the target, right-aligned; target = the held-out action's job,
    its label (1 for APPLY/SAVE) and loss weight (RAND_NEG weighs less than DISMISS)."""

    context: Sequences
    target_job: np.ndarray
    label: np.ndarray
    weight: np.ndarray

    def subset(self, mask: np.ndarray) -> ProxyExamples:
        idx = np.flatnonzero(mask)
        return ProxyExamples(self.context.take(idx), self.target_job[idx], self.label[idx], self.weight[idx])


def proxy_examples(log: tuple[np.ndarray, ...], min_actions: int = 4, stride: int = 8,
                   rand_neg_weight: float = 0.5) -> ProxyExamples:
    """000's proxy task: members with fewer than `min_actions` actions are dropped; each window of up to SEQ_LEN
    actions predicts its last action from the ones before; long histories give a window every `stride` actions."""
    member, job, code, ts = log
    first = np.flatnonzero(np.r_[True, member[1:] != member[:-1]])
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
    weight = np.where(tcode == RAND_NEG, rand_neg_weight, 1.0)
    return ProxyExamples(context, job[target], label, weight)
