"""Sessionization: a member's events split where the idle time exceeds a gap (30 minutes by default, as in 002).

Pure numpy over events sorted by (member, ts): no I/O here; the event log feeds it and stores what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobmatch.schema import ACTION_CODES

DEFAULT_GAP_MINUTES = 30.0
SEARCH, APPLY = ACTION_CODES["SEARCH"], ACTION_CODES["APPLY"]


def session_starts(member: np.ndarray, ts_us: np.ndarray, gap_us: int) -> np.ndarray:
    """Boolean mask of events that open a session. Inputs sorted by (member, ts)."""
    starts = np.ones(member.size, bool)
    if member.size > 1:
        starts[1:] = (member[1:] != member[:-1]) | (np.diff(ts_us) > gap_us)
    return starts


@dataclass(frozen=True)
class Sessions:
    """One row per session, in input order."""

    member_id: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray
    n_events: np.ndarray
    n_search: np.ndarray
    n_apply: np.ndarray
    apply_after_search: np.ndarray  # an APPLY later than the session's first SEARCH
    first_event: np.ndarray  # index of each session's first event in the input
    event_session: np.ndarray  # session number of every input event

    def __len__(self) -> int:
        return self.member_id.size


def sessionize(member: np.ndarray, ts_us: np.ndarray, action: np.ndarray, gap_us: int) -> Sessions:
    """Sessions of events sorted by (member, ts); `action` holds `ACTION_CODES`."""
    starts = session_starts(member, ts_us, gap_us)
    first = np.flatnonzero(starts)
    sid = np.cumsum(starts) - 1
    n = np.diff(np.r_[first, member.size])
    last = first + n - 1
    is_search, is_apply = action == SEARCH, action == APPLY
    n_search = np.bincount(sid, weights=is_search, minlength=first.size).astype(np.int32)
    n_apply = np.bincount(sid, weights=is_apply, minlength=first.size).astype(np.int32)
    # Events are time-ordered within a session, so the first SEARCH and the last APPLY sit at change points.
    big = np.iinfo(np.int64).max
    first_search = np.full(first.size, big)
    s_idx = np.flatnonzero(is_search)
    s_sid = sid[s_idx]
    head = np.r_[True, s_sid[1:] != s_sid[:-1]] if s_idx.size else np.zeros(0, bool)
    first_search[s_sid[head]] = ts_us[s_idx[head]]
    last_apply = np.full(first.size, np.iinfo(np.int64).min)
    a_idx = np.flatnonzero(is_apply)
    a_sid = sid[a_idx]
    tail = np.r_[a_sid[1:] != a_sid[:-1], True] if a_idx.size else np.zeros(0, bool)
    last_apply[a_sid[tail]] = ts_us[a_idx[tail]]
    return Sessions(member[first], ts_us[first], ts_us[last], n.astype(np.int32), n_search, n_apply,
                    (first_search < big) & (last_apply > first_search), first, sid)
