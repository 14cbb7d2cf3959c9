"""Real-time candidate re-ranking: feedback ingested now changes the very next ranking of that project."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from jobmatch.features import PairFeaturizer, activity_features
from jobmatch.hiring.online import CHANNELS
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.state import ProjectCounts
from jobmatch.hiring.terms import ProfileTerms


class CandidateRankingService:
    """Scores candidates for a project with the trained ranker over standard + online personalization features.

    `activity` holds each member's two-way-interest signals (events in 7 days, applies in 30 days, apply rate) as
    of the service's snapshot, aligned with the pair featurizer's member rows.
    """

    def __init__(self, ranker: CandidateRanker, prefs: HirerPreferences, pairs: PairFeaturizer, activity: np.ndarray):
        self.ranker, self.prefs, self.pairs, self.activity = ranker, prefs, pairs, activity

    @classmethod
    def from_data(cls, data: str | Path, ranker_dir: str | Path, counts: ProjectCounts | None = None,
                  as_of_us: int | None = None) -> CandidateRankingService:
        data = Path(data)
        t = {n: pq.read_table(data / f"{n}.parquet") for n in ("events", "jobs", "members", "projects")}
        members = t["members"]["member_id"].to_numpy()
        now = as_of_us if as_of_us is not None else int(t["events"]["ts"].cast("int64").to_numpy().max()) + 1
        activity = activity_features(t["events"], members, np.full(members.size, now, np.int64))
        prefs = HirerPreferences(ProfileTerms.from_members(t["members"]), counts,
                                 projects=t["projects"]["project_id"].to_pylist())
        return cls(CandidateRanker.load(ranker_dir), prefs, PairFeaturizer(t["jobs"], t["members"], t["projects"]),
                   activity)

    def features(self, project_id: int, candidate_ids: Sequence[int], channel: str) -> np.ndarray:
        if channel not in CHANNELS:
            raise ValueError(f"channel: unknown value {channel!r}; expected one of {', '.join(CHANNELS)}")
        n = len(candidate_ids)
        projects = np.full(n, project_id, np.int64)
        pair = self.pairs.features(projects, candidate_ids)
        act = self.activity[self.pairs.member_rows(candidate_ids)]
        onehot = np.zeros((n, len(CHANNELS)))
        onehot[:, CHANNELS.index(channel)] = 1.0
        return np.hstack([pair, act, onehot, self.prefs.features(project_id, candidate_ids)])

    def rank_candidates(self, project_id: int, candidate_ids: Sequence[int],
                        channel: str = "recommended_matches") -> list[tuple[int, float]]:
        """(candidate, score) best first; ties keep the input order."""
        scores = self.ranker.predict(self.features(project_id, candidate_ids, channel))
        order = np.lexsort((np.arange(len(candidate_ids)), -scores))
        return [(int(candidate_ids[i]), float(scores[i])) for i in order]
