"""Point-in-time counting and a member's two-way-interest signals as of any time."""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa

from jobmatch.features.keys import joint_codes

DAY_US = 86_400_000_000
ACTIVITY_FEATURES = ("events_7d", "applies_30d", "apply_rate")


def counts_before(ev_key: np.ndarray | tuple[np.ndarray, ...], ev_ts: np.ndarray, ev_col: np.ndarray, n_cols: int,
                  q_key: np.ndarray | tuple[np.ndarray, ...], q_ts: np.ndarray) -> np.ndarray:
    """For each query, the number of events with the same key and ts < q_ts, per column: (n_queries, n_cols).

    A key is one id column or a tuple of aligned columns (e.g. project and term), compared as a tuple."""
    if isinstance(ev_key, tuple):
        ev_key, q_key = joint_codes(ev_key, q_key)
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


class ActivityIndex:
    """The same signals as `activity_features`, at request time: each member's event times by kind (any event,
    APPLY, VIEW), sorted, so that a request counts them with binary searches as of *now* instead of using values
    frozen when the service started. `add` appends events as they arrive (the nearline path)."""

    KINDS = ("any", "APPLY", "VIEW")

    def __init__(self, events: pa.Table):
        member = events["member_id"].to_numpy()
        ts = events["ts"].cast(pa.int64()).to_numpy()
        action = events["action"].to_numpy(zero_copy_only=False)
        # plain sorted lists + bisect: a request makes hundreds of scalar searches, where numpy's per-call
        # overhead (~1 us) is several times bisect's
        self._times: dict[str, dict[int, list[int]]] = {}
        for kind in self.KINDS:
            sel = np.ones(member.size, bool) if kind == "any" else action == kind
            m, t = member[sel], ts[sel]
            order = np.lexsort((t, m))
            m, t = m[order], t[order]
            bounds = np.flatnonzero(np.r_[True, m[1:] != m[:-1], True]) if m.size else np.zeros(1, np.int64)
            self._times[kind] = {int(m[lo]): t[lo:hi].tolist() for lo, hi in zip(bounds[:-1].tolist(),
                                                                                  bounds[1:].tolist())}

    def add(self, member_id: int, ts_us: int, action: str) -> None:
        for kind in self.KINDS:
            if kind == "any" or kind == action:
                bisect.insort_right(self._times[kind].setdefault(int(member_id), []), int(ts_us))

    def _count(self, kind: str, member_id: int, lo: int | None, hi: int) -> int:
        t = self._times[kind].get(int(member_id))
        if t is None:
            return 0
        return bisect.bisect_left(t, hi) - (bisect.bisect_left(t, lo) if lo is not None else 0)

    def features(self, member_ids, now_us: int) -> np.ndarray:
        """(n, 3): events in the 7 days before `now_us`, applies in the 30 days before, applies per view so far."""
        out = np.zeros((len(member_ids), 3))
        for i, m in enumerate(np.asarray(member_ids).tolist()):
            applies, views = self._count("APPLY", m, None, now_us), self._count("VIEW", m, None, now_us)
            out[i] = (self._count("any", m, now_us - 7 * DAY_US, now_us),
                      self._count("APPLY", m, now_us - 30 * DAY_US, now_us), applies / (views + 1.0))
        return out
