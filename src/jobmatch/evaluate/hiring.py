"""`jobmatch evaluate hiring`: does per-project online learning of hirer preferences improve candidate ranking?"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobmatch.evaluate import fmt
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.metrics import ndcg_by_entity
from jobmatch.hiring.dataset import build_dataset
from jobmatch.hiring.ranker import CandidateRanker

LEARNING_CURVE_EVENTS = (0, 5, 10, 25, 50)


def _nan_to_none(x: float) -> float | None:
    return None if x != x else x


def evaluate_hiring(log: EventLog, out: str | Path, truth: Truth | None = None, train_share: float = 0.7,
                    seed: int = 0, say: Callable[[str], None] | None = None) -> dict:
    """Time split of the candidate rows; with `truth` (a simulated marketplace), the oracle ceiling too."""
    say = say or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    say("point-in-time features")
    snap = log.snapshot()
    members = snap.entities("members")
    started = time.perf_counter()
    ds = build_dataset(snap.events(), snap.feedback(), snap.entities("jobs"), members, snap.entities("projects"),
                       snap.hirer_impressions())
    build_s = time.perf_counter() - started
    rows = ds.rows
    ts = rows["ts"].cast(pa.int64()).to_numpy()
    split = ts.min() + train_share * (ts.max() - ts.min())
    groups = rows["request_id"].to_numpy(zero_copy_only=False)
    # a request belongs to one side of the split, by its first row
    first_ts = {}
    for g, t_ in zip(groups.tolist(), ts.tolist()):
        first_ts.setdefault(g, t_)
    train = np.array([first_ts[g] < split for g in groups.tolist()])
    test = ~train
    y = rows["label"].to_numpy()
    project = rows["project_id"].to_numpy()

    variants = {"without_online": (ds.standard, list(ds.standard_names)),
                "with_online": (np.hstack([ds.standard, ds.online]), list(ds.standard_names) + ds.online_names)}
    scores, models, fit_s = {}, {}, {}
    for name, (X, names) in variants.items():
        say(f"train {name}")
        started = time.perf_counter()
        models[name] = CandidateRanker(seed=seed).fit(X[train], y[train], groups[train], names)
        fit_s[name] = time.perf_counter() - started
        scores[name] = models[name].predict(X[test])
    rng = np.random.default_rng(seed)
    scores["random"] = rng.random(int(test.sum()))
    if truth is not None:
        truth_pref = truth.true_preference(members, rows["project_id"].to_numpy(), rows["member_id"].to_numpy())
        # Ceiling for the online features: the standard features plus the project's true preference score.
        say("train oracle")
        X = np.column_stack([ds.standard, truth_pref])
        names = list(ds.standard_names) + ["oracle_preference"]
        scores["oracle"] = CandidateRanker(seed=seed).fit(X[train], y[train], groups[train], names).predict(X[test])

    metrics: dict = {}
    for k in (1, 5, 10):
        metrics[f"ndcg@{k}"] = {name: ndcg_by_entity(project[test], groups[test], y[test], scores[name], k)
                                for name in ("without_online", "with_online")}
    # learning curve: NDCG@1 by how much feedback the project had before the request
    prior = rows["prior_feedback"].to_numpy()[test]
    g_test = groups[test]
    group_prior = {}
    for g, pr in zip(g_test.tolist(), prior.tolist()):
        group_prior[g] = min(pr, group_prior.get(g, pr))
    row_prior = np.array([group_prior[g] for g in g_test.tolist()])
    edges = list(LEARNING_CURVE_EVENTS) + [np.inf]
    curve = {name: [] for name in ("with_online", "without_online")}
    curve_groups = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (row_prior >= lo) & (row_prior < hi)
        curve_groups.append(int(np.unique(g_test[sel]).size))
        for name in curve:
            curve[name].append(ndcg_by_entity(project[test][sel], g_test[sel], y[test][sel], scores[name][sel], 1)
                               if sel.any() else float("nan"))
    importance = models["with_online"].importance()
    top10 = sorted(importance, key=lambda f: -importance[f])[:10]
    metrics["learning_curve"] = {"events": list(LEARNING_CURVE_EVENTS),
                                 "ndcg@1": [_nan_to_none(v) for v in curve["with_online"]]}
    metrics["top10_features"] = top10
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    random_ndcg = {k: ndcg_by_entity(project[test], groups[test], y[test], scores["random"], k) for k in (1, 5, 10)}
    oracle_ndcg = ({k: ndcg_by_entity(project[test], groups[test], y[test], scores["oracle"], k) for k in (1, 5, 10)}
                   if "oracle" in scores else None)
    details = {"rows": rows.num_rows, "train_rows": int(train.sum()), "test_rows": int(test.sum()),
               "test_requests": int(np.unique(g_test).size), "test_projects": int(np.unique(project[test]).size),
               "random_ndcg": random_ndcg, "oracle_ndcg": oracle_ndcg, "learning_curve_without_online": [_nan_to_none(v) for v in
                                                                             curve["without_online"]],
               "learning_curve_requests": curve_groups, "importance": importance,
               "seconds": {"features": build_s, **{f"fit_{k}": v for k, v in fit_s.items()}}}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    _report(metrics, details, out)
    models["with_online"].save(out / "ranker")
    return metrics


def _report(metrics: dict, details: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.2))
    ks = ["ndcg@1", "ndcg@5", "ndcg@10"]
    x = np.arange(len(ks))
    for i, (name, color) in enumerate((("without_online", "tab:gray"), ("with_online", "tab:blue"))):
        a.bar(x + (i - 0.5) * 0.38, [metrics[k][name] for k in ks], 0.38, label=name.replace("_", " "), color=color)
    a.plot(x, [details["random_ndcg"][int(k.split("@")[1])] for k in ks], "k_", ms=30, label="random order")
    a.set_xticks(x, ks)
    a.set_ylim(0, 1)
    a.legend(fontsize=8)
    a.set_title("candidate ranking, test period")
    ev = [str(e) + ("+" if i == len(metrics["learning_curve"]["events"]) - 1 else "")
          for i, e in enumerate(metrics["learning_curve"]["events"])]
    b.plot(ev, [v if v is not None else np.nan for v in metrics["learning_curve"]["ndcg@1"]], "o-",
           label="with online")
    b.plot(ev, [v if v is not None else np.nan for v in details["learning_curve_without_online"]], "s--",
           color="tab:gray", label="without online")
    b.set_xlabel("feedback events the project had before the request")
    b.set_ylabel("NDCG@1")
    b.set_title("learning curve")
    b.legend(fontsize=8)
    imp = details["importance"]
    top = sorted(imp, key=lambda f: -imp[f])[:15][::-1]
    c.barh(top, [imp[f] for f in top], color=["tab:blue" if f.startswith("z:") else "tab:gray" for f in top])
    c.set_title("feature importance (share of gain; blue = online)")
    c.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "hiring.png", dpi=110)
    plt.close(fig)

    w, o = metrics["ndcg@1"]["without_online"], metrics["ndcg@1"]["with_online"]
    n_online_top = sum(f.startswith("z:") for f in metrics["top10_features"])
    lines = [
        "# Hirer preferences learned online (seed 003)", "",
        f"Time split: {details['train_rows']:,} candidate rows for training, {details['test_rows']:,} rows in "
        f"{details['test_requests']:,} requests of {details['test_projects']:,} projects for testing. NDCG is averaged "
        "over requests within a project, then over projects; gains 2^grade - 1 (offer 4, interview 3, message 2, "
        "view profile 1, otherwise 0).", "",
        "| metric | random order | without online features | with online features | lift |", "|---|---|---|---|---|",
    ]
    for k in ("ndcg@1", "ndcg@5", "ndcg@10"):
        r = details["random_ndcg"][int(k.split("@")[1])]
        a_, b_ = metrics[k]["without_online"], metrics[k]["with_online"]
        lines.append(f"| {k.upper()} | {r:.3f} | {a_:.3f} | {b_:.3f} | {100 * (b_ / a_ - 1):+.1f}% |")
    lines += ["", f"NDCG@1 lift from the online features: **{100 * (o / w - 1):+.1f}%** (003 reports +49.6% on "
              f"LinkedIn's data). {n_online_top} of the top 10 features by gain are online features (003: 7 of 10)."]
    if details.get("oracle_ndcg"):
        c1 = details["oracle_ndcg"][1]
        lines += ["", f"How much is there to learn? A ranker given the standard features plus each project's *true* "
                  f"preference score (from the simulator's ground truth, unavailable to any real model) reaches "
                  f"NDCG@1 {c1:.3f} ({100 * (c1 / w - 1):+.1f}% over the standard features): that is the ceiling "
                  f"for any per-project preference feature on this data. The online features recover "
                  f"{100 * (o - w) / max(c1 - w, 1e-9):.0f}% of that headroom. The rest of the gap to perfect ranking "
                  "is hirer noise, member quality the hirer sees and the features do not, and skills members do "
                  "not list."]
    lines += ["", "## Learning curve", "",
              "| feedback events before the request | requests | NDCG@1 with online | NDCG@1 without |",
              "|---|---|---|---|"]
    events = metrics["learning_curve"]["events"]
    spans = [f"{lo}–{hi - 1}" for lo, hi in zip(events[:-1], events[1:])] + [f"{events[-1]}+"]
    for span, n, v1, v0 in zip(spans, details["learning_curve_requests"], metrics["learning_curve"]["ndcg@1"],
                               details["learning_curve_without_online"]):
        lines.append(f"| {span} | {n:,} | {fmt(v1)} | {fmt(v0)} |")
    lines += ["", "## Top 10 features", "", "| feature | share of gain |", "|---|---|"]
    lines += [f"| `{f}` | {details['importance'][f]:.3f} |" for f in metrics["top10_features"]]
    lines += ["", "![ranking, learning curve and importance](hiring.png)", "",
              f"Feature building {details['seconds']['features']:.1f}s; training "
              f"{details['seconds']['fit_without_online']:.1f}s / {details['seconds']['fit_with_online']:.1f}s."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
