"""The simulator's ground truth, read only by evaluations (and studies) that are handed its folder explicitly.

No flow or model module may import this (an import-linter contract and a test that watches file opens enforce
it): models learn from the event log alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.features.ids import IdIndex


class Truth:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "members.parquet").is_file():
            raise FileNotFoundError(f"truth: {str(self.folder)!r} is not a simulator's truth folder "
                                    "(written by `jobmatch simulate` beside its data)")

    @classmethod
    def find(cls, folder: str | Path) -> Truth | None:
        """The truth in `folder` if there is one there (simulated data), else None."""
        try:
            return cls(folder)
        except FileNotFoundError:
            return None

    def _table(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.folder / f"{name}.parquet", columns=columns)

    def member_drift(self, member_id: int) -> dict | None:
        """One member's latent intent and its drift (the explorer shows it, labelled as simulated truth)."""
        t = pq.read_table(self.folder / "members.parquet", filters=[("member_id", "=", member_id)],
                          columns=["drift_kind", "drift_at", "target_occupation", "remote_pref",
                                   "target_occupation_after", "remote_pref_after"])
        if t.num_rows == 0:
            return None
        row = t.to_pylist()[0]
        at = row["drift_at"]
        return {"at": at.isoformat() if at is not None else None, "kind": row["drift_kind"],
                "before": {"occupation": row["target_occupation"], "remote": row["remote_pref"]},
                "after": {"occupation": row["target_occupation_after"], "remote": row["remote_pref_after"]}}

    def drifted_members(self, from_us: int, to_us: int) -> np.ndarray:
        """Members whose latent intent drifted in [from_us, to_us)."""
        t = self._table("members", ["member_id", "drift_at"])
        at = t["drift_at"].cast(pa.int64()).fill_null(-1).to_numpy()
        return t["member_id"].to_numpy()[(at >= from_us) & (at < to_us)]

    def _member_rows(self, columns: list[str], member_ids) -> tuple[pa.Table, np.ndarray]:
        t = self._table("members", ["member_id", *columns])
        return t, IdIndex(t["member_id"].to_numpy(), "member_id").rows(np.asarray(member_ids, np.int64))

    def intent_at(self, member_ids, ts_us) -> tuple[np.ndarray, np.ndarray]:
        """Each member's latent intent at the paired time, drift included: (target occupation code, whether they
        want remote work)."""
        t, rows = self._member_rows(["drift_at", "target_occupation", "remote_pref", "target_occupation_after",
                                     "remote_pref_after"], member_ids)
        at = t["drift_at"].cast(pa.int64()).fill_null(np.iinfo(np.int64).max).to_numpy()[rows]
        after = np.asarray(ts_us, np.int64) >= at
        col = {c: t[c].to_numpy(zero_copy_only=False)[rows] for c in t.column_names[2:]}
        return (np.where(after, col["target_occupation_after"], col["target_occupation"]),
                np.where(after, col["remote_pref_after"], col["remote_pref"]).astype(bool))

    def seeking(self, member_ids, from_us: int, to_us: int) -> np.ndarray:
        """Whether each member's seeking window overlaps [from_us, to_us)."""
        t, rows = self._member_rows(["seek_start", "seek_end"], member_ids)
        start = t["seek_start"].cast(pa.int64()).to_numpy()[rows]
        end = t["seek_end"].cast(pa.int64()).to_numpy()[rows]
        return (start < to_us) & (end > from_us)

    def true_preference(self, members: pa.Table, project_ids: np.ndarray, member_ids: np.ndarray) -> np.ndarray:
        """Each (project, candidate) pair's true project-preference term (skills listed or hidden, occupation,
        seniority) — the ceiling for any learned per-project preference feature."""
        weights = {(r["project_id"], r["term_type"], r["term"]): r["weight"]
                   for r in self._table("project_preferences").to_pylist()}
        hidden = dict(zip(*(self._table("members", ["member_id", "hidden_skills"])[c].to_pylist()
                            for c in ("member_id", "hidden_skills"))))
        ids = members["member_id"].to_pylist()
        row = {m: i for i, m in enumerate(ids)}
        skills = [set(a or []) | set(hidden.get(m) or []) for m, a in zip(ids, members["skills"].to_pylist())]
        occ, sen = members["occupation"].to_pylist(), members["seniority"].to_pylist()
        out = np.empty(len(project_ids))
        for k, (p, m) in enumerate(zip(np.asarray(project_ids).tolist(), np.asarray(member_ids).tolist())):
            i = row[m]
            out[k] = (sum(weights.get((p, "skill", s), 0.0) for s in skills[i])
                      + weights.get((p, "occupation", occ[i]), 0.0) + weights.get((p, "seniority", str(sen[i])), 0.0))
        return out

    def impression_outcomes(self) -> pa.Table:
        return self._table("impression_outcomes")
