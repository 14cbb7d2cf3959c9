"""Real-time candidate re-ranking: feedback ingested now changes the very next ranking of that project.

Features are computed per request exactly as the training rows were (`hiring.dataset.build_dataset`): the pair
features of the project's job and each candidate, the candidates' two-way-interest signals *as of the request
time* (an `ActivityIndex`, fed by the nearline path, never values frozen at start-up), the channel, and the
project's online term weights as they stand in the counts backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jobmatch.events import Snapshot
from jobmatch.features import ActivityIndex, PairFeaturizer
from jobmatch.hiring.online import CHANNELS, HirerPreferences
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.state import ProjectCounts
from jobmatch.hiring.terms import ProfileTerms


def now_us() -> int:
    return int(time.time() * 1_000_000)


class CandidateRankingService:
    """Scores candidates for a project with the trained ranker over standard + online personalization features."""

    def __init__(self, ranker: CandidateRanker, prefs: HirerPreferences, pairs: PairFeaturizer,
                 activity: ActivityIndex):
        self.ranker, self.prefs, self.pairs, self.activity = ranker, prefs, pairs, activity

    @classmethod
    def from_snapshot(cls, snap: Snapshot, ranker_dir: str | Path, counts: ProjectCounts | None = None
                      ) -> CandidateRankingService:
        members, projects = snap.entities("members"), snap.entities("projects")
        prefs = HirerPreferences(ProfileTerms.from_members(members), counts,
                                 projects=projects["project_id"].to_pylist())
        return cls(CandidateRanker.load(ranker_dir), prefs, PairFeaturizer(snap.entities("jobs"), members, projects),
                   ActivityIndex(snap.events(["member_id", "ts", "action"])))

    def features(self, project_id: int, candidate_ids: Sequence[int], channel: str,
                 at_us: int | None = None) -> np.ndarray:
        if channel not in CHANNELS:
            raise ValueError(f"channel: unknown value {channel!r}; expected one of {', '.join(CHANNELS)}")
        n = len(candidate_ids)
        projects = np.full(n, project_id, np.int64)
        pair = self.pairs.features(projects, candidate_ids)
        act = self.activity.features(candidate_ids, now_us() if at_us is None else at_us)
        onehot = np.zeros((n, len(CHANNELS)))
        onehot[:, CHANNELS.index(channel)] = 1.0
        return np.hstack([pair, act, onehot, self.prefs.features(project_id, candidate_ids)])

    def rank_candidates(self, project_id: int, candidate_ids: Sequence[int], channel: str = "recommended_matches",
                        at_us: int | None = None) -> list[tuple[int, float]]:
        """(candidate, score) best first; ties keep the input order."""
        return self._ranked(candidate_ids, self.features(project_id, candidate_ids, channel, at_us))

    def rank_with_and_without_online(self, project_id: int, candidate_ids: Sequence[int],
                                     channel: str = "recommended_matches", at_us: int | None = None
                                     ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """`rank_candidates`, and the same ranker's order with every online term-weight feature at zero (how it
        ranks for a project before any feedback), from one feature matrix."""
        X = self.features(project_id, candidate_ids, channel, at_us)
        with_online = self._ranked(candidate_ids, X)
        X[:, X.shape[1] - len(self.prefs.feature_names):] = 0.0  # `features` puts the online ones last
        return with_online, self._ranked(candidate_ids, X)

    def _ranked(self, candidate_ids: Sequence[int], X: np.ndarray) -> list[tuple[int, float]]:
        scores = self.ranker.predict(X)
        order = np.lexsort((np.arange(len(candidate_ids)), -scores))
        return [(int(candidate_ids[i]), float(scores[i])) for i in order]
