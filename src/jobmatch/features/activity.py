"""Point-in-time counting and a member's two-way-interest signals as of any time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DAY_US = 86_400_000_000
ACTIVITY_FEATURES = ("events_7d", "applies_30d", "apply_rate")


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
