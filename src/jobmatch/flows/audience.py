"""The daily audience flow (002 §4.3-4.5): the sharded user-vector index and the members' clause sets.

Reads the user vectors and suggestions the intent flow published (manifest group `intent`) and the log as of the
run's cutoff, then:
  * index: a sharded HNSW index (`ann.ShardedIndex`) over the vectors of every member active in the last 28 days,
    saved under HOME/audience/ann-<day> with the intent manifest it was built from. It is rebuilt when the intent
    manifest changed and otherwise every `refresh_days` (002 refreshes every three days; nearline updates of the
    vectors in between reach it then); a loaded index whose source differs from the current manifest is refused;
  * job index: a tantivy index of the jobs open at the cutoff (HOME/audience/jobs-<day>);
  * clause sets: per active member, the profile clauses, the predicted-entity clauses (their published
    suggestions) and the SANNS clauses (what jobs similar seekers applied to, over the last 28 days);
  * clause weights: refit each run on what happened since the previous run — for the members who applied since, how
    many clauses of each kind of the clause sets published *then* the jobs they applied to (and the other jobs open
    then) matched — so the weights never learn from applications their own clauses were built from. The first run
    weighs every kind 1.
Published as one manifest of group `audience`: `audience/clauses` (member -> [[kind, [[field, value], ...]], ...])
and `audience/meta` (key `current`: the index folders, their source, the weights). Index folders other than the
current and the previous run's are removed.
"""

from __future__ import annotations

import shutil
from datetime import date
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.ann.index import AnnParams, ShardedIndex
from jobmatch.ann.sanns import sanns_entities
from jobmatch.events import Snapshot
from jobmatch.flows.intent import ACTIVE_DAYS, SUGGESTIONS, VECTORS
from jobmatch.flows.intent import GROUP as INTENT_GROUP
from jobmatch.flows.state import DAY_US, FlowContext, NotEnoughData
from jobmatch.retrieval import (Clause, ClauseWeights, JobIndex, entity_clauses, kinds_of, occupation_clauses,
                                profile_clauses)

GROUP, CLAUSES, META = "audience", "audience/clauses", "audience/meta"
SOURCES = ("profile", "predicted", "sanns")
MIN_MEMBERS = 2


@dataclass(frozen=True)
class AudienceFlowConfig:
    ann: AnnParams = field(default_factory=AnnParams)
    refresh_days: int = 3
    first_appliers: int = 10  # SANNS: the first appliers of each job looked up ...
    neighbours: int = 20  # ... and their most similar seekers attributed the job
    sanns_top: int = 5  # SANNS titles and occupations kept per member
    seed: int = 0


def _open_jobs(snap: Snapshot, from_us: int, to_us: int) -> pa.Table:
    jobs = snap.entities("jobs")
    posted, expires = (jobs[c].cast(pa.int64()).to_numpy() for c in ("posted_at", "expires_at"))
    return jobs.filter(pa.array((posted < to_us) & (expires > from_us)))


def _encode(clauses: list[Clause]) -> list:
    return [[c.kind, [list(cond) for cond in c.conditions]] for c in clauses]


def _decode(record: list) -> list[Clause]:
    return [Clause(kind, tuple((f, v) for f, v in conditions)) for kind, conditions in record]


def _refit_weights(ctx: FlowContext, snap: Snapshot, state: dict, seed: int) -> tuple[dict[str, float] | None, dict]:
    """Weights from the applications since the last run, on the clause sets that run published (see the module
    docstring); None when there is nothing to learn from yet."""
    since, version = state.get("cutoff"), state.get("clauses_version")
    if since is None or version is None:
        return None, {"reason": "first run"}
    ev = snap.events(["member_id", "action", "job_id"], since_us=since)
    applies = ev.filter(pc.equal(ev["action"], "APPLY"))
    members = np.unique(applies["member_id"].to_numpy())
    previous = ctx.store.get(CLAUSES, [str(m) for m in members.tolist()], version=version)
    jobs = _open_jobs(snap, since, ctx.cutoff_us)
    if jobs.num_rows == 0:
        return None, {"reason": "no open jobs since the last run"}
    index = JobIndex.build(jobs)
    kinds = kinds_of(SOURCES)
    a_member, a_job = applies["member_id"].to_numpy(), applies["job_id"].to_numpy()
    X, y = [], []
    for m, record in zip(members.tolist(), previous):
        if record is None:
            continue
        ids, counts = index.kind_counts(_decode(record), kinds)
        X.append(counts)
        y.append(np.isin(ids, a_job[a_member == m]))
    if not X or not np.concatenate(y).any() or np.concatenate(y).all():
        return None, {"reason": "no applications matched by the previous clause sets"}
    weights = ClauseWeights(seed=seed).fit(np.concatenate(X), np.concatenate(y), kinds)
    return weights.weights, {"members": len(X), "candidates": int(sum(x.shape[0] for x in X)),
                             "applications": int(np.concatenate(y).sum())}


def _retain(home: Path, keep: set[str]) -> None:
    for path in list(home.glob("ann-*")) + list(home.glob("jobs-*")):
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


def run_audience(ctx: FlowContext, cfg: AudienceFlowConfig = AudienceFlowConfig()) -> dict:
    flow = ctx.state("audience")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    state, cutoff = flow.data, ctx.cutoff_us
    manifest = ctx.store.manifest(INTENT_GROUP)
    if manifest is None:
        raise NotEnoughData("audience: no user vectors published yet (group 'intent'); run the intent flow first")
    source = {"group": INTENT_GROUP, "manifest": manifest.version, "vectors": VECTORS,
              "version": manifest.datasets[VECTORS]}
    snap = ctx.snapshot()
    active = snap.members_with_events(since_us=cutoff - ACTIVE_DAYS * DAY_US)
    found = ctx.store.get(VECTORS, [str(m) for m in active.tolist()], version=source["version"])
    keys = np.array([m for m, v in zip(active.tolist(), found) if v is not None], np.int64)
    if keys.size < MIN_MEMBERS:
        raise NotEnoughData(f"audience: {keys.size} active members have user vectors; the index needs "
                            f"{MIN_MEMBERS}")
    vectors = np.stack([v for v in found if v is not None])

    previous_day = state.get("built_on")
    stale = previous_day is None or state.get("source") != source or \
        (date.fromisoformat(ctx.day) - date.fromisoformat(previous_day)).days >= cfg.refresh_days
    ann_path = flow.home / f"ann-{ctx.day}" if stale else Path(state["ann_path"])
    if stale:
        ctx.say(f"audience: index of {keys.size:,} members")
        index = ShardedIndex(cfg.ann).fit(keys, vectors)
        shutil.rmtree(ann_path, ignore_errors=True)  # left by a run of this day that failed before publishing
        index.save(ann_path, source)
    else:
        index = ShardedIndex.load(ann_path, source)

    ctx.say("audience: clause weights")
    weights, fit_info = _refit_weights(ctx, snap, state, cfg.seed)
    weights = weights or state.get("weights") or {k: 1.0 for k in kinds_of(SOURCES)}

    ctx.say("audience: clause sets")
    jobs_path = flow.home / f"jobs-{ctx.day}"
    shutil.rmtree(jobs_path, ignore_errors=True)
    open_now = _open_jobs(snap, cutoff, cutoff + 1)
    JobIndex.build(open_now, jobs_path)
    skills = {s.lower() for sk in open_now["skills"].to_pylist() for s in sk or ()}
    ev = snap.events(["member_id", "ts", "action", "job_id"], since_us=cutoff - ACTIVE_DAYS * DAY_US)
    applies = ev.filter(pc.equal(ev["action"], "APPLY"))
    jobs = snap.entities("jobs")
    similar = sanns_entities(index, applies["member_id"].to_numpy(), applies["job_id"].to_numpy(),
                             applies["ts"].cast(pa.int64()).to_numpy(), jobs["job_id"].to_numpy(),
                             np.asarray(jobs["title"].to_pylist(), object),
                             np.asarray(jobs["occupation"].to_pylist(), object), cfg.first_appliers, cfg.neighbours,
                             cfg.sanns_top)
    suggestions = ctx.store.get(SUGGESTIONS, [str(m) for m in keys.tolist()],
                                version=manifest.datasets.get(SUGGESTIONS))
    members = snap.entities("members")
    rows = {m: i for i, m in enumerate(members["member_id"].to_pylist())}
    occ, title, mskills, loc = (members[c].to_pylist() for c in ("occupation", "title", "skills", "location"))
    clause_sets = {}
    for m, sugg in zip(keys.tolist(), suggestions):
        clauses = profile_clauses(occ[rows[m]], title[rows[m]], mskills[rows[m]] or (), loc[rows[m]]) \
            if m in rows else []
        clauses += entity_clauses([s["query"] for s in sugg or ()], "predicted", skills)
        titles, occupations = similar.get(m, ([], []))
        clauses += entity_clauses(titles, "sanns", skills) + occupation_clauses(occupations, "sanns")
        clause_sets[str(m)] = _encode(clauses)
    meta = {"ann_index": str(ann_path), "job_index": str(jobs_path), "source": source, "weights": weights,
            "as_of": ctx.day}
    published = ctx.store.publish(GROUP, {CLAUSES: clause_sets, META: {"current": meta}},
                                  meta={"as_of": ctx.day, "intent_manifest": manifest.version})
    _retain(flow.home, {ann_path.name, jobs_path.name, *(Path(p).name for p in state.get("previous_paths", []))})
    state.update({"source": source, "ann_path": str(ann_path), "cutoff": cutoff, "weights": weights,
                  "clauses_version": published.datasets[CLAUSES], "previous_paths": [str(ann_path), str(jobs_path)]})
    if stale:
        state["built_on"] = ctx.day
    return flow.finish(ctx.day, {"as_of": ctx.day, "status": "ok", "rebuilt_index": stale, "members": int(keys.size),
                                 "open_jobs": open_now.num_rows, "weights_fit": fit_info,
                                 "version": published.version})


__all__ = ["AudienceFlowConfig", "CLAUSES", "GROUP", "META", "run_audience"]
