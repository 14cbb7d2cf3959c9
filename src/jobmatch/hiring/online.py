"""Online learning of hirer preferences per hiring project (003), and its personalization features.

Each feedback event updates, in O(terms of that candidate), the counts of its project; the personalization
features z(t, s, r)(X) = <w(t, s, r), p_t(X)> of any candidate list are computed from the counts as they stand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from jobmatch.hiring.state import MemoryProjectCounts, ProjectCounts
from jobmatch.hiring.terms import TERM_TYPES, ProfileTerms
from jobmatch.hiring.weights import DEFAULT_PRIOR_STRENGTH, term_weight
from jobmatch.schema import FeedbackChannel, FeedbackType

CHANNELS = tuple(c.value for c in FeedbackChannel)
RATINGS = tuple(f.value for f in FeedbackType)
# (channel, rating) pairs that get personalization features: the ratings each channel's hirers actually give.
DEFAULT_COMBOS: tuple[tuple[str, str], ...] = (
    ("applicants", "view_profile"), ("applicants", "message"), ("applicants", "interview"),
    ("applicants", "archive"), ("applicants", "reject"),
    ("recommended_matches", "view_profile"), ("recommended_matches", "message"),
    ("recommended_matches", "archive"), ("recommended_matches", "skip"),
    ("recruiter_search", "view_profile"), ("recruiter_search", "message"),
    ("recruiter_search", "archive"), ("recruiter_search", "skip"),
)

TERM_BASE = 1 << 32
N_SHOWN, C_RATED, N_TERM_SHOWN, C_TERM_RATED = range(4)


def code(kind: int, s: int, r: int = 0, term: int | np.ndarray = 0) -> int | np.ndarray:
    """Counter code: kind (N, C, n, c), channel, rating and term index packed into one int64."""
    return ((kind * 4 + s) * 8 + r) * TERM_BASE + term


def feature_names(combos: Sequence[tuple[str, str]] = DEFAULT_COMBOS) -> list[str]:
    return [f"z:{t}:{s}:{r}" for t in TERM_TYPES for s, r in combos]


def _index(value: str, allowed: tuple[str, ...], field: str) -> int:
    try:
        return allowed.index(value)
    except ValueError:
        raise ValueError(f"{field}: unknown value {value!r}; expected one of {', '.join(allowed)}") from None


class HirerPreferences:
    """Per-project term weights learned online from hirer feedback.

    `projects` (optional) is the set of known project ids: feedback on any other project is refused.
    """

    def __init__(self, terms: ProfileTerms, counts: ProjectCounts | None = None,
                 projects: Iterable[int] | None = None, combos: Sequence[tuple[str, str]] = DEFAULT_COMBOS,
                 prior_strength: float = DEFAULT_PRIOR_STRENGTH):
        self.terms = terms
        self.counts = counts if counts is not None else MemoryProjectCounts()
        self.projects = None if projects is None else {int(p) for p in projects}
        self.combos = tuple(combos)
        self.prior_strength = prior_strength
        self._combo_s = np.array([CHANNELS.index(s) for s, _ in self.combos])
        self._combo_r = np.array([RATINGS.index(r) for _, r in self.combos])
        self.feature_names = feature_names(self.combos)

    def _check_project(self, project_id: int) -> int:
        if self.projects is not None and int(project_id) not in self.projects:
            raise ValueError(f"project_id: unknown project {project_id}")
        return int(project_id)

    def _resolve(self, project_id: int, member_id: int, channel: str) -> tuple[int, int, np.ndarray]:
        """(project, channel index, the member's term indices), each validated."""
        return (self._check_project(project_id), _index(channel, CHANNELS, "channel"),
                self.terms.terms_of(member_id).astype(np.int64))

    @staticmethod
    def _shown(p: int, member_id: int, s: int, terms: np.ndarray) -> tuple[int, str, list[int]]:
        return p, f"i:{member_id}:{s}", [code(N_SHOWN, s), *code(N_TERM_SHOWN, s, 0, terms).tolist()]

    def _impression_update(self, project_id: int, member_id: int, channel: str) -> tuple[int, str, list[int]]:
        p, s, terms = self._resolve(project_id, member_id, channel)
        return self._shown(p, member_id, s, terms)

    def observe_impression(self, project_id: int, member_id: int, channel: str) -> bool:
        """A candidate was shown to the project's hirer in `channel`; counted once per (candidate, channel)."""
        return self.counts.add_once(*self._impression_update(project_id, member_id, channel))

    def observe_impression_batch(self, rows: Iterable[tuple[int, int, str]]) -> int:
        """(project, member, channel) rows, validated first, then applied as one batch."""
        return self.counts.add_many([self._impression_update(*row) for row in rows])

    def _feedback_updates(self, project_id: int, member_id: int, channel: str,
                          feedback: str) -> list[tuple[int, str, list[int]]]:
        p, s, terms = self._resolve(project_id, member_id, channel)
        r = _index(feedback, RATINGS, "feedback")
        return [self._shown(p, member_id, s, terms),
                (p, f"f:{member_id}:{s}:{r}", [code(C_RATED, s, r), *code(C_TERM_RATED, s, r, terms).tolist()])]

    def observe_feedback(self, project_id: int, member_id: int, channel: str, feedback: str) -> bool:
        """A rating; counted once per (candidate, channel, rating). A rated candidate was also shown."""
        shown, rated = self._feedback_updates(project_id, member_id, channel, feedback)
        self.counts.add_once(*shown)
        return self.counts.add_once(*rated)

    def observe_feedback_batch(self, rows: Iterable[tuple[int, int, str, str]]) -> int:
        """(project, member, channel, feedback) rows, validated first, then applied in one batch (one Redis
        pipeline); returns how many ratings were new."""
        updates = [u for row in rows for u in self._feedback_updates(*row)]
        self.counts.add_many(updates[0::2])
        return self.counts.add_many(updates[1::2])

    def term_weights(self, project_id: int, terms: np.ndarray) -> np.ndarray:
        """w(t, s, r) of the project for the given term indices: (len(combos), len(terms)), in `combos` order;
        0 for a term the project has no evidence on (the prior pulls its rate to the project's own)."""
        p = self._check_project(project_id)
        terms = np.asarray(terms, np.int64)
        k = len(self.combos)
        s_all = np.arange(len(CHANNELS))
        # one lookup for every counter the weights need
        wanted = np.concatenate([
            code(N_SHOWN, s_all), code(C_RATED, self._combo_s, self._combo_r),
            code(N_TERM_SHOWN, s_all[:, None], 0, terms[None, :]).ravel(),
            code(C_TERM_RATED, self._combo_s[:, None], self._combo_r[:, None], terms[None, :]).ravel(),
        ])
        got = self.counts.lookup(p, wanted)
        n_ch = len(CHANNELS)
        N = got[:n_ch]
        C = got[n_ch:n_ch + k]
        n = got[n_ch + k:n_ch + k + n_ch * terms.size].reshape(n_ch, terms.size)
        c = got[n_ch + k + n_ch * terms.size:].reshape(k, terms.size)
        return term_weight(c, n[self._combo_s], C[:, None], N[self._combo_s][:, None], self.prior_strength)

    def features(self, project_id: int, member_ids: Sequence[int]) -> np.ndarray:
        """Personalization features (len(member_ids), len(TERM_TYPES) * len(combos)), in `feature_names` order."""
        rows = self.terms.rows(member_ids)
        sub = self.terms.matrix[rows]
        used = np.unique(sub.indices).astype(np.int64)
        return aggregate(sub, used, self.term_weights(project_id, used).T, self.terms.term_type)


def aggregate(member_terms, used: np.ndarray, w_used: np.ndarray, term_type: np.ndarray) -> np.ndarray:
    """z[x, t, combo] = sum of w over x's terms of type t; `w_used` is (len(used), k) for the terms in `used`."""
    n_terms = term_type.size
    k = w_used.shape[1]
    w_full = np.zeros((n_terms, k))
    w_full[used] = w_used
    out = np.zeros((member_terms.shape[0], len(TERM_TYPES), k))
    for t in range(len(TERM_TYPES)):
        mask = (term_type == t).astype(float)
        out[:, t, :] = member_terms @ (w_full * mask[:, None])
    return out.reshape(member_terms.shape[0], -1)
