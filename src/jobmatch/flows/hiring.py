"""The daily hiring flow (003): per-project feedback counts, and the candidate ranker that uses them.

Counts: every candidate shown to a hirer (applicants, sourced candidates) and every rating before the cutoff is
fed to the project's counters (`ProjectCounts`: the SQLite store file or Redis, where serving reads them). Feeding
is idempotent (deduplicated per candidate, channel and rating), so this daily catch-up and the nearline worker
can both feed the same events. Ranker: the LambdaMART ranker is retrained every `retrain_days` on the
point-in-time rows before the cutoff (labels as known at the cutoff; the last `label_days` are left out because
their ratings have not arrived yet) and published as a manifest of group `hiring` naming the model's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobmatch.events import Snapshot
from jobmatch.flows.export import export_snapshot
from jobmatch.flows.state import DAY_US, FlowContext, NotEnoughData
from jobmatch.hiring.dataset import build_dataset, candidate_impressions
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.state import ProjectCounts, RedisProjectCounts, SQLiteProjectCounts
from jobmatch.hiring.terms import ProfileTerms

GROUP, RANKER = "hiring", "hiring/ranker"
BATCH = 5000
MIN_RATED_REQUESTS = 20
# What `candidate_impressions` and the feedback read give the counters, in SQL for a distributed engine. The counters
# count each (candidate, channel) impression and each (candidate, channel, rating) once, so the distinct rows
# give the same counts as every row.
SHOWN_SQL = """
SELECT DISTINCT project_id, member_id, channel FROM (
  SELECT p.project_id, e.member_id, 'applicants' AS channel
  FROM events e JOIN projects p ON p.job_id = e.job_id WHERE e.action = 'APPLY'
  UNION ALL
  SELECT project_id, member_id, channel FROM hirer_impressions)"""
RATED_SQL = "SELECT DISTINCT project_id, member_id, channel, feedback FROM feedback"


@dataclass(frozen=True)
class HiringFlowConfig:
    retrain_days: int = 7
    label_days: int = 3
    seed: int = 0


def open_counts(store_spec: str, create: bool = True, **redis_options: float) -> ProjectCounts:
    """The counts backend that goes with a store: the same SQLite file, or the same Redis (`redis_options`: its
    timeouts). Readers (serving) open with `create=False`, so an emptied Redis is reported, not read as zeros."""
    if store_spec.startswith(("redis://", "rediss://", "unix://")):
        return RedisProjectCounts(store_spec, create=create, **redis_options)
    return SQLiteProjectCounts(store_spec.removeprefix("sqlite:"), create=create)


def feed_counts(prefs: HirerPreferences, shown: pa.Table, feedback: pa.Table) -> tuple[int, int]:
    """Apply candidate impressions and ratings in batches; returns (new impressions, new ratings)."""
    rows = list(zip(*(shown[c].to_pylist() for c in ("project_id", "member_id", "channel"))))
    rated = list(zip(*(feedback[c].to_pylist() for c in ("project_id", "member_id", "channel", "feedback"))))
    new_shown = sum(prefs.observe_impression_batch(rows[i:i + BATCH]) for i in range(0, len(rows), BATCH))
    new_rated = sum(prefs.observe_feedback_batch(rated[i:i + BATCH]) for i in range(0, len(rated), BATCH))
    return new_shown, new_rated


def distributed_streams(ctx: FlowContext, snap: Snapshot, since: int | None,
                        folder: Path) -> tuple[pa.Table, pa.Table]:
    """(candidates shown, ratings) since `since` by the context's engine with SQL, over the log's Parquet export
    in `folder`."""
    paths = export_snapshot(snap, folder, ("events", "feedback", "hirer_impressions", "projects"), since_us=since)
    tables = {kind: str(path) for kind, (path, _) in paths.items()}
    return ctx.engine.sql(SHOWN_SQL, tables), ctx.engine.sql(RATED_SQL, tables)


def run_hiring(ctx: FlowContext, cfg: HiringFlowConfig = HiringFlowConfig()) -> dict:
    flow = ctx.state("hiring")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    state = flow.data
    snap = ctx.snapshot()
    members, projects, jobs = (snap.entities(k) for k in ("members", "projects", "jobs"))
    since = state.get("cutoff")
    ctx.say("hiring: feedback counts")
    counts = open_counts(ctx.store_spec)
    try:
        prefs = HirerPreferences(ProfileTerms.from_members(members), counts, projects["project_id"].to_pylist())
        # applicants are shown when they apply; a rated candidate's later rating may concern an earlier impression
        if ctx.engine.distributed:
            shown, rated = distributed_streams(ctx, snap, since, flow.home / "parquet" / ctx.day)
        else:
            shown = candidate_impressions(snap.events(["member_id", "ts", "action", "job_id"], since_us=since),
                                          projects, snap.hirer_impressions(since_us=since))
            rated = snap.feedback(since_us=since)
        new_shown, new_rated = feed_counts(prefs, shown, rated)
    finally:
        counts.close()
    result = {"as_of": ctx.day, "status": "ok", "impressions_counted": new_shown, "ratings_counted": new_rated}
    last = state.get("ranker_as_of")
    due = last is None or (date.fromisoformat(ctx.day) - date.fromisoformat(last)).days >= cfg.retrain_days
    if due:
        ctx.say("hiring: ranker")
        ds = build_dataset(snap.events(), snap.feedback(), jobs, members, projects, snap.hirer_impressions())
        ts = ds.rows["ts"].cast(pa.int64()).to_numpy()
        keep = ts < ctx.cutoff_us - cfg.label_days * DAY_US
        groups = ds.rows["request_id"].to_numpy(zero_copy_only=False)[keep]
        y = ds.rows["label"].to_numpy()[keep]
        rated = np.unique(groups[y > 0]).size
        if rated < MIN_RATED_REQUESTS:
            raise NotEnoughData(f"hiring: as of {ctx.day} only {rated} candidate requests (older than "
                                f"{cfg.label_days} days) have a positive rating; the ranker needs "
                                f"{MIN_RATED_REQUESTS} (feedback counts were updated)")
        X = np.hstack([ds.standard, ds.online])[keep]
        names = list(ds.standard_names) + ds.online_names
        ranker = CandidateRanker(seed=cfg.seed).fit(X, y, groups, names)
        folder = f"models/{ctx.day}"
        ranker.save(flow.home / folder)
        manifest = ctx.store.publish(GROUP, {RANKER: {"ranker": {"path": f"hiring/{folder}", "as_of": ctx.day,
                                                                 "features": names}}},
                                     meta={"as_of": ctx.day})
        state["ranker_as_of"] = ctx.day
        result |= {"ranker": "trained", "train_rows": int(keep.sum()), "rated_requests": int(rated),
                   "version": manifest.version}
    else:
        result["ranker"] = f"kept (trained {last}; retrained every {cfg.retrain_days} days)"
    state["cutoff"] = ctx.cutoff_us
    return flow.finish(ctx.day, result)
