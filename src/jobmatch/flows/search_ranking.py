"""The search-ranking flow (002 §4.2): the deep-and-wide ranker with the frozen BERT_FT user-vector tower,
retrained on the recent search result pages and published for serving.

Rows: the search impressions of the last `train_days` before the cutoff with what the seekers did next
(`impression_outcomes`: applied 3, saved 2, viewed 1); the last `validation_days` of them choose the checkpoint
(best NDCG@25). Tower input: the user vectors of the intent manifest current at the run (zeros, flagged, for
members without one) — the vectors a serving call reads. Unlike `jobmatch evaluate search-ranking`, which
snapshots vectors before the rows it trains on, the newest vectors here may already reflect some training rows'
outcomes: a small train/serve skew a daily flow accepts. The model is saved under HOME/search_ranking/model-<day>
and published as one manifest of group `search_ranking`: `search_ranking/model`, key `current` -> the folder, the
intent manifest its tower reads, its validation NDCG@25.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.flows.intent import GROUP as INTENT_GROUP
from jobmatch.flows.intent import VECTORS
from jobmatch.flows.state import DAY_US, FlowContext, NotEnoughData
from jobmatch.rank import ListwiseRanker, RankerParams, SearchFeaturizer

GROUP, MODEL = "search_ranking", "search_ranking/model"
MIN_LISTS = 20


@dataclass(frozen=True)
class SearchRankingFlowConfig:
    ranker: RankerParams = field(default_factory=RankerParams)
    train_days: int = 7
    validation_days: int = 2


def user_inputs(store, member_ids: np.ndarray, version: int) -> tuple[np.ndarray, np.ndarray]:
    """(tower input, has-vector flag) per row: the published user vector of the row's member, zeros without one."""
    wanted = np.unique(member_ids)
    values = store.get(VECTORS, [str(m) for m in wanted.tolist()], version=version)
    dim = next((v.size for v in values if v is not None), 0)
    if dim == 0:
        raise NotEnoughData("search ranking: none of the searching members has a published user vector")
    table = np.zeros((wanted.size, dim), np.float32)
    has = np.array([v is not None for v in values])
    table[has] = np.stack([v for v in values if v is not None])
    rows = np.searchsorted(wanted, member_ids)
    return table[rows], has[rows].astype(np.float32)


def run_search_ranking(ctx: FlowContext, cfg: SearchRankingFlowConfig = SearchRankingFlowConfig()) -> dict:
    flow = ctx.state("search_ranking")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    manifest = ctx.store.manifest(INTENT_GROUP)
    if manifest is None:
        raise NotEnoughData("search ranking: no user vectors published yet (group 'intent'); run the intent flow first")
    cutoff = ctx.cutoff_us
    snap = ctx.snapshot()
    imp = snap.impression_outcomes()
    ts = imp["ts"].cast(pa.int64()).to_numpy()
    keep = pc.and_(pc.and_(pc.equal(imp["channel"], "search"), pc.is_valid(imp["query"])),
                   pa.array(ts >= cutoff - cfg.train_days * DAY_US))
    imp = imp.filter(keep)
    ts = imp["ts"].cast(pa.int64()).to_numpy()
    c = {k: imp[k].to_numpy(zero_copy_only=False) for k in ("member_id", "job_id", "request_id", "query", "viewed",
                                                             "saved", "applied")}
    relevance = np.select([c["applied"], c["saved"], c["viewed"]], [3.0, 2.0, 1.0], 0.0)
    _, groups = np.unique(c["request_id"], return_inverse=True)
    engaged_lists = np.unique(groups[relevance > 0]).size
    if engaged_lists < MIN_LISTS:
        raise NotEnoughData(f"search ranking: {engaged_lists} search result lists with an engaged result in the last "
                            f"{cfg.train_days} days; training needs {MIN_LISTS}")
    ctx.say(f"search ranking: features of {ts.size:,} results")
    user, has = user_inputs(ctx.store, c["member_id"], manifest.datasets[VECTORS])
    featurizer = SearchFeaturizer(snap.entities("jobs"), snap.entities("members"),
                                  snap.events(["member_id", "ts", "action", "job_id"]), cfg.ranker.buckets)
    dense, cats = featurizer.transform(c["member_id"], c["job_id"], c["query"], ts, has)
    val = ts >= cutoff - cfg.validation_days * DAY_US
    if not (val.any() and (~val).any()):
        raise NotEnoughData("search ranking: the training window needs both training and validation days")
    ctx.say("search ranking: training")
    model = ListwiseRanker(cfg.ranker).fit(dense[~val], cats[~val], groups[~val], relevance[~val], user[~val],
                                           validation=(dense[val], cats[val], groups[val], relevance[val], user[val]))
    path = flow.home / f"model-{ctx.day}"
    shutil.rmtree(path, ignore_errors=True)  # left by a run of this day that failed before publishing
    model.save(path)
    scores = [h["validation_ndcg@25"] for h in model.history_ if np.isfinite(h.get("validation_ndcg@25", np.nan))]
    best = max(scores) if scores else None
    record = {"path": str(path), "source": {"group": INTENT_GROUP, "manifest": manifest.version,
                                            "vectors": VECTORS, "version": manifest.datasets[VECTORS]},
              "validation_ndcg@25": best, "best_epoch": model.best_epoch_, "as_of": ctx.day,
              "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg.ranker).items()}}
    published = ctx.store.publish(GROUP, {MODEL: {"current": record}}, meta={"as_of": ctx.day})
    for old in flow.home.glob("model-*"):  # keep this model and the one before it (a reader may still use it)
        if old.name not in (path.name, flow.data.get("model_path", "").rsplit("/", 1)[-1]):
            shutil.rmtree(old, ignore_errors=True)
    flow.data["model_path"] = str(path)
    return flow.finish(ctx.day, {"as_of": ctx.day, "status": "ok", "rows": int(ts.size),
                                 "lists": int(np.unique(groups).size), "validation_ndcg@25": best,
                                 "version": published.version})


__all__ = ["GROUP", "MODEL", "SearchRankingFlowConfig", "run_search_ranking", "user_inputs"]
