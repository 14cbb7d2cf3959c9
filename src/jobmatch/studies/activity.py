"""Activity study (seed 000): recommender AUC with the mean / decay / learned member embeddings, as members' intent
drifts more often (SimConfig.drift_share) and as they act more (SimConfig.sessions_per_day_median: longer
sequences), with the learned aggregator trained on 000's random proxy negatives and, beside it, on harder ones
(jobs the member dismissed; same-occupation jobs live that day that the member never engaged with).

Each point is simulated, ingested through validated ingest and evaluated by `evaluate_activity` (the protocol of
`jobmatch evaluate activity`), so the study measures the system a user runs. Within a point, AUC is also split by
how many actions the member's 28-day window holds at the test week's start (the sequence length an aggregator
sees).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jobmatch.evaluate.activity import evaluate_activity
from jobmatch.simulate import SimConfig
from jobmatch.studies.base import Say, Study, seed_mean, series_of, simulated_log

SERIES_KNOB = {"drift": "drift_share", "activity": "sessions_per_day_median"}
QUICK_MEMBERS, BASE_MEMBERS = 1_200, 2_500
DAYS = 21  # the protocol's minimum: a week to train the encoders, a training week, a test week
HARD = ("random", "dismissed", "occupation")
NEGATIVES = {"": ("random",), "+hard": HARD}
# metric name -> variant of evaluate_activity
VARIANT = {"mean": "mean", "decay": "decay", "learned_random": "learned-cnn", "learned_hard": "learned-cnn+hard"}
METRICS = tuple(f"auc_{v}" for v in VARIANT) + tuple(f"auc_drift_{v}" for v in VARIANT)
# within one market: the learned aggregator (random negatives) minus the better of mean and decay
GAPS = ("gap_learned", "gap_learned_drift")


def gaps(m: dict[str, float]) -> dict[str, float]:
    return {"gap_learned": m["auc_learned_random"] - max(m["auc_mean"], m["auc_decay"]),
            "gap_learned_drift": m["auc_drift_learned_random"] - max(m["auc_drift_mean"], m["auc_drift_decay"])}


def run_point(value: object, seed: int, work: Path, quick: bool, say: Say) -> dict[str, float]:
    series, x = series_of(value)
    if series not in SERIES_KNOB:
        raise ValueError(f"activity study: unknown series {series!r} (expected one of {', '.join(SERIES_KNOB)})")
    cfg = SimConfig(members=QUICK_MEMBERS if quick else BASE_MEMBERS, days=DAYS, seed=seed, **{SERIES_KNOB[series]: x})
    with simulated_log(cfg, work, say, sessionize=True) as (log, truth):
        say("evaluate activity")
        # one architecture (the CNN, 000's pick) keeps a point inside the budget; both negative sets train it
        m = evaluate_activity(log, work / "eval", truth, quick=quick, seed=seed, say=say, arches=("cnn",),
                              negatives=NEGATIVES)
    out: dict[str, float] = {}
    for key, variant in VARIANT.items():
        out[f"auc_{key}"] = m["auc"][variant]
        drift = m["auc_drift_members"][variant]
        out[f"auc_drift_{key}"] = float("nan") if drift is None else drift
        for hist, by in m["auc_by_history"].items():
            if hist != "0":  # members with no window have no embedding: every variant scores them alike
                v = by[variant]
                out[f"auc_hist{hist.replace('-', '_')}_{key}"] = float("nan") if v is None else v
    out["auc_profile"] = m["auc"]["profile"]
    return out | gaps(out)


def conclude(rows: list[dict]) -> str:
    parts = []
    for series, knob in SERIES_KNOB.items():
        xs = sorted({series_of(r["value"])[1] for r in rows if series_of(r["value"])[0] == series})
        if not xs:
            continue
        cells = "; ".join(f"{x:g}: " + ", ".join(f"{k} {seed_mean(rows, (series, x), f'auc_{k}'):.4f}"
                                                 for k in VARIANT)
                          for x in xs)
        parts.append(f"Along {knob} — {cells}.")
    rows = [r for r in rows if "same_as" not in r]  # each run once in the totals
    overall = {k: float(np.nanmean([r[f"auc_{k}"] for r in rows])) for k in VARIANT}
    # markets differ more from seed to seed than the embeddings differ within one: compare within each run
    paired = np.array([r["gap_learned"] for r in rows])
    decay_vs_mean = np.array([r["auc_decay"] - r["auc_mean"] for r in rows])
    drifted = np.array([r["gap_learned_drift"] for r in rows if r["gap_learned_drift"] == r["gap_learned_drift"]])
    order = " > ".join(f"{k} {v:.4f}" for k, v in sorted(overall.items(), key=lambda kv: -kv[1]))
    best = max(overall, key=overall.get)
    hard_gain = overall["learned_hard"] - overall["learned_random"]
    wins = sum(r["auc_learned_hard"] > max(r["auc_mean"], r["auc_decay"]) for r in rows)
    return ("Test-week recommender AUC with each member embedding (000 reports learned > decay > mean). "
            + " ".join(parts) + f" Over all {len(rows)} runs: {order}; harder proxy negatives change the learned "
            f"aggregator's AUC by {hard_gain:+.4f}, and it beats both mean and decay in {wins} of {len(rows)} runs; "
            f"the best embedding overall is {best}. Within a run (same market), learned (random negatives) minus "
            f"the better of mean and decay: {paired.mean():+.4f} on average (range {paired.min():+.4f} to "
            f"{paired.max():+.4f}); decay minus mean: {decay_vs_mean.mean():+.4f} (range {decay_vs_mean.min():+.4f} "
            f"to {decay_vs_mean.max():+.4f})"
            + (f"; on the members whose intent drifted, learned minus the better of mean and decay: "
               f"{drifted.mean():+.4f} (ahead in {(drifted > 0).sum()} of {drifted.size} runs)." if drifted.size
               else "."))


STUDY = Study(
    name="activity",
    knob="drift_share | sessions_per_day_median (two sweeps from the default market)",
    # a 2,500-member point took 40-90 s on an idle 2-core machine (3 December): 18 runs fit 30 minutes
    grid=(("drift", 0.0), ("drift", 0.2), ("drift", 0.4), ("drift", 0.8),
          ("activity", 0.15), ("activity", 0.3), ("activity", 0.6)),
    # the default market (drift_share 0.2, sessions_per_day_median 0.3) is on both sweeps
    same_as=((("activity", 0.3), ("drift", 0.2)),),
    quick_grid=(("drift", 0.0), ("drift", 0.8)),
    seeds=(1, 2, 3),
    quick_seeds=(1,),
    run_point=run_point,
    metrics=METRICS[:4] + GAPS,
    conclude=conclude,
    panels=(("test-week AUC", METRICS[:4]),
            ("learned (random neg.) minus the better of mean and decay", ("gap_learned",)),
            ("the same, members whose intent drifted", ("gap_learned_drift",))),
    title="Member activity embeddings (seed 000) vs intent drift and sequence length, random vs hard proxy negatives",
)
