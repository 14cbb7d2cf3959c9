"""`jobmatch evaluate qa`: the Qualified Applicant mixed model against its baselines, and how fast it goes stale.

Leak-free protocol, read from the event log:
  * a model trained at cutoff C sees the applications before C with their labels *as known at C* (pending ones
    left out) — what the daily flow would have had — and is validated on the applications of the last two days
    before C (GAME keeps its best snapshot on them; the GBDT early-stops on the same rows);
  * it is tested on the applications of the 7 days after C, against their labels as known at the end of the data.
Labels take up to 14 days to become conclusive, so two windows are measured: **matured** (C = 21 days before the
end of the data: every test label is final; this is the headline when the data is long enough) and **recent**
(C at 60% of the period, as before: more training data, but a share of the test labels is still pending — the
report gives that share and the AUC with pending labels left out and counted as negatives).
The skill embedding of the features is fit on the entities known at C and kept for every later row, as serving
does with the published model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xgboost as xgb

from jobmatch.events import EventLog
from jobmatch.game.model import GameModel
from jobmatch.labels import DAY_US, LabelPolicy, applications, collect_labels, positive_latency
from jobmatch.metrics import auc
from jobmatch.qa import (GLOBAL_FEATURES, QAFeaturizer, catch_up_rows, incremental_fit, new_labels, qa_coordinates,
                         subset_rows)

Say = Callable[[str], None]
TEST_DAYS, VALIDATION_DAYS = 7, 2
MATURE_DAYS = int(LabelPolicy().conclusive_days)


def _gbdt(train: dict, val: dict, names: list[str], seed: int) -> xgb.Booster:
    """XGBoost on the same features, early-stopped on GAME's validation rows."""
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "subsample": 0.8, "min_child_weight": 5,
              "seed": seed, "nthread": 2, "tree_method": "hist", "eval_metric": "auc"}
    dtrain = xgb.DMatrix(np.column_stack([train[n] for n in names]), label=train["response"], feature_names=names)
    dval = xgb.DMatrix(np.column_stack([val[n] for n in names]), label=val["response"], feature_names=names)
    return xgb.train(params, dtrain, num_boost_round=500, evals=[(dval, "validation")], early_stopping_rounds=20,
                     verbose_eval=False)


def _margin(model: xgb.Booster, cols: dict, names: list[str]) -> np.ndarray:
    X = np.column_stack([cols[n] for n in names])
    return model.inplace_predict(X, predict_type="margin", iteration_range=(0, model.best_iteration + 1))


class _Data:
    """Applications and feedback of the whole log, and rows as known at any cutoff."""

    def __init__(self, log: EventLog, seed: int):
        snap = log.snapshot()
        self.log, self.seed = log, seed
        self.projects = snap.entities("projects")
        self.apps = applications(snap.events(["event_id", "member_id", "ts", "action", "job_id"]), self.projects)
        self.feedback = snap.feedback()
        applied = self.apps["applied_at"].cast(pa.int64()).to_numpy()
        if applied.size == 0:
            raise ValueError("data: the log holds no applications to a known project's job")
        self.t_start = int(applied.min()) // DAY_US * DAY_US
        self.t_end = snap.time_range()[1] + 1
        self.n_days = int((self.t_end - self.t_start - 1) // DAY_US) + 1

    def featurizer(self, cutoff_us: int, basis: dict | None = None) -> QAFeaturizer:
        """Features over every entity, with the skill embedding fit on the entities known at `cutoff_us`."""
        snap = self.log.snapshot()
        jobs, members = snap.entities("jobs"), snap.entities("members")
        if basis is None:
            known = self.log.snapshot(cutoff_us)
            basis = QAFeaturizer(known.entities("jobs"), members, known.entities("projects"),
                                 seed=self.seed).skill_basis()
        return QAFeaturizer(jobs, members, self.projects, skill_basis=basis)

    def rows(self, featurizer: QAFeaturizer, labels_at_us: int, applied_from: int | None = None,
             applied_to: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Applications in [applied_from, applied_to) with labels as known at `labels_at_us`; returns the rows of
        the known labels and the mask of pending ones among all applications in the range."""
        labels = collect_labels(self.apps, self.feedback, labels_at_us)
        applied = labels["applied_at"].cast(pa.int64()).to_numpy()
        keep = np.ones(applied.size, bool)
        if applied_from is not None:
            keep &= applied >= applied_from
        if applied_to is not None:
            keep &= applied < applied_to
        labels = labels.filter(pa.array(keep))
        known = labels["label"].is_valid().to_numpy(zero_copy_only=False)
        cols = featurizer.features(labels["project_id"].to_numpy(), labels["member_id"].to_numpy())
        cols["response"] = labels["label"].fill_null(0).to_numpy().astype(np.int8)
        cols["applied_at"] = labels["applied_at"].cast(pa.int64()).to_numpy()
        return cols, known


def _window(data: _Data, cutoff: int, coords_fn, seed: int, say: Say) -> dict:
    """Train at `cutoff` (labels as known then), test on the next TEST_DAYS with the labels known at the end."""
    featurizer = data.featurizer(cutoff)
    known_rows, known = data.rows(featurizer, cutoff, applied_to=cutoff)
    rows = subset_rows(known_rows, known)
    val_mask = rows["applied_at"] >= cutoff - VALIDATION_DAYS * DAY_US
    tr, va = subset_rows(rows, ~val_mask), subset_rows(rows, val_mask)
    test_all, test_known = data.rows(featurizer, data.t_end, cutoff, cutoff + TEST_DAYS * DAY_US)
    te = subset_rows(test_all, test_known)
    pending_as_negative = test_all  # pending labels filled with 0 by `rows`
    names = list(dict.fromkeys(GLOBAL_FEATURES + featurizer.job_features + featurizer.member_features))
    say("gbdt")
    gbdt = _gbdt(tr, va, names, seed)
    scores_known = {"gbdt": _margin(gbdt, te, names)}
    scores_all = {"gbdt": _margin(gbdt, pending_as_negative, names)}
    coords = coords_fn(featurizer)
    timings, models = {}, {}
    for name, k in (("global", 1), ("global+member", 2), ("global+member+job", 3)):
        say(name)
        start = time.perf_counter()
        models[name] = GameModel(coords[:k], passes=3, seed=seed).fit(tr, va)
        timings[name] = time.perf_counter() - start
        scores_known[name] = models[name].decision_function(te)
        scores_all[name] = models[name].decision_function(pending_as_negative)
    # GAME with the GBDT as offset; the training offset is cross-fitted so the GBDT does not see its own labels
    say("gbdt offset")
    fold = (tr["member_id"] % 2).astype(bool)
    offset = np.zeros(fold.size)
    for f_ in (False, True):
        part = _gbdt(subset_rows(tr, fold == f_), va, names, seed)
        offset[fold != f_] = _margin(part, subset_rows(tr, fold != f_), names)
    tr_o, va_o = dict(tr, gbdt=offset), dict(va, gbdt=_margin(gbdt, va, names))
    game = GameModel(coords, passes=3, offset="gbdt", seed=seed).fit(tr_o, va_o)
    scores_known["game"] = game.decision_function(dict(te, gbdt=scores_known["gbdt"]))
    scores_all["game"] = game.decision_function(dict(pending_as_negative, gbdt=scores_all["gbdt"]))
    return {"cutoff_day": int((cutoff - data.t_start) // DAY_US),
            "rows": {"train": int(tr["response"].size), "validation": int(va["response"].size),
                     "test": int(test_known.size), "test_pending": int((~test_known).sum())},
            "pending_share": float((~test_known).mean()) if test_known.size else 0.0,
            "auc": {n: auc(te["response"], s) for n, s in scores_known.items()},
            "auc_pending_as_negative": {n: auc(pending_as_negative["response"], s) for n, s in scores_all.items()},
            "gbdt_rounds": int(gbdt.best_iteration + 1), "fit_seconds": timings,
            "game_steps": [{"pass": s.pass_, "coordinate": s.coordinate, "auc": s.auc} for s in game.steps_],
            "_game": game}


def _matured_cut(data: _Data) -> int | None:
    """The training cutoff whose test week's labels have all matured by the end of the data, if there is one."""
    cut = data.t_end - (MATURE_DAYS + TEST_DAYS) * DAY_US
    return cut // DAY_US * DAY_US if cut - data.t_start >= (VALIDATION_DAYS + 3) * DAY_US else None


def compare_models(log: EventLog, seed: int = 0, say: Say | None = None) -> dict:
    """GBDT vs the GAME components on the matured window alone (`evaluate_qa`'s headline, without the freshness
    and latency parts): for studies that sweep the data's shape. Adds the data's applicants per job."""
    say = say or (lambda _m: None)
    data = _Data(log, seed)
    cut = _matured_cut(data)
    if cut is None:
        raise ValueError(f"data: {data.n_days} days are too short for a matured window (needs "
                         f"{MATURE_DAYS + TEST_DAYS + VALIDATION_DAYS + 3})")
    window = _window(data, cut, qa_coordinates, seed, say)
    window.pop("_game")
    per_job = np.unique(data.apps["job_id"].to_numpy(), return_counts=True)[1]
    return window | {"applicants_per_job_median": float(np.median(per_job)),
                     "applications": int(data.apps.num_rows)}


def retrain_chains(data: _Data, t0_day: int, policies: dict[str, dict], seed: int, say: Say,
                   last_day: int | None = None, keep_rows: bool = False) -> dict:
    """Models fit at the end of day t0 - 1 (labels as known then), then kept up to date by each policy, tested on
    every later day's applications (labels as known at the end of the data).

    policies: name -> {"kind": "frozen" | "incremental" | "full", and optionally, for incremental,
    "max_prior_precision" (the prior's precision cap, see `GameModel.fit`), "refit_global_days" (default 7, as the
    flow), "passes" (default 1), "catch_up" (see `catch_up_rows`) and "full_every" (a full retrain every that many
    days instead of the update); for frozen, "global_only" (the global model alone, a baseline)}.
      frozen:      never retrained (how stale a model gets);
      incremental: every day, yesterday's posterior is the prior and only labels new (or changed) since yesterday
                   are fit, the global model too every "refit_global_days"; with "catch_up" and "full_every" 7 it
                   is what the daily QA flow does (incremental days with catch-up rows, a full retrain weekly);
      full:        every day, a fresh fit on everything known by the end of yesterday.
    Returns per-day AUC and training seconds per policy, and each policy's last model.
    """
    featurizer = data.featurizer(data.t_start + t0_day * DAY_US)
    all_rows, all_known = data.rows(featurizer, data.t_end)
    days = (all_rows["applied_at"] - data.t_start) // DAY_US
    coords = qa_coordinates(featurizer)
    end = data.n_days - 3 if last_day is None else min(last_day + 1, data.n_days - 3)
    horizon = [d for d in range(t0_day, end) if ((days == d) & all_known).sum() > 200]

    def as_of(day_end: int) -> dict[str, np.ndarray]:
        """Training rows as known at the end of `day_end`: applied by then, label known by then."""
        cut = data.t_start + (day_end + 1) * DAY_US
        rows, known = data.rows(featurizer, cut, applied_to=cut)
        return subset_rows(rows, known)

    base = as_of(t0_day - 1)
    models, seconds, out = {}, {}, {"days": [], "auc": {name: [] for name in policies}}
    first: dict[bool, tuple[GameModel, float]] = {}  # every policy starts from the same fit (one per model shape)
    for name, p in policies.items():
        shape = bool(p.get("global_only"))
        if shape not in first:
            start = time.perf_counter()
            model = GameModel(coords[:1] if shape else coords, passes=1 if shape else 3, seed=seed).fit(base)
            first[shape] = model, time.perf_counter() - start
        models[name], seconds[name] = first[shape][0], [first[shape][1]]
    prev_rows = base
    for i, d in enumerate(horizon):
        if i > 0:  # retrain with everything known by the end of yesterday
            rows = as_of(d - 1)
            new = new_labels(rows, (prev_rows["project_id"], prev_rows["member_id"], prev_rows["response"]))
            for name, p in policies.items():
                start = time.perf_counter()
                if p["kind"] == "incremental" and p.get("full_every") and i % p["full_every"] == 0:
                    models[name] = GameModel(coords, passes=3, seed=seed).fit(rows)
                elif p["kind"] == "incremental":
                    refit_global = i % p.get("refit_global_days", 7) == 0
                    fit = catch_up_rows(rows, new, models[name]) if p.get("catch_up") else new
                    models[name] = incremental_fit(coords, rows, fit, models[name], seed, refit_global,
                                                   p.get("passes", 1), p.get("max_prior_precision"))
                elif p["kind"] == "full":
                    models[name] = GameModel(coords, passes=3, seed=seed).fit(rows)
                elif p["kind"] != "frozen":
                    raise ValueError(f"policies: {name!r} has unknown kind {p['kind']!r}")
                seconds[name].append(time.perf_counter() - start)
            prev_rows = rows
            say(f"day {d - t0_day + 1} of {len(horizon)}")
        today = subset_rows(all_rows, all_known & (days == d))
        out["days"].append(int(d - t0_day + 1))
        for name, model in models.items():
            out["auc"][name].append(auc(today["response"], model.decision_function(today)))
    out |= {"seconds": seconds, "models": models, "t0_day": t0_day, "horizon": horizon, "last_rows": prev_rows}
    if keep_rows:
        out |= {"all_rows": all_rows, "all_known": all_known, "row_days": days, "coords": coords}
    return out


def evaluate_qa(log: EventLog, out: str | Path, seed: int = 0, say: Say | None = None) -> dict:
    say = say or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = _Data(log, seed)
    n_days, t_start = data.n_days, data.t_start
    final = collect_labels(data.apps, data.feedback, data.t_end)
    latency = positive_latency(final)
    coords_fn = qa_coordinates
    windows = {}
    matured_cut = _matured_cut(data)
    if matured_cut is not None:
        say("matured window")
        windows["matured"] = _window(data, matured_cut, coords_fn, seed, lambda m: say(f"matured window: {m}"))
    say("recent window")
    recent_cut = t_start + int(0.6 * n_days) * DAY_US
    windows["recent"] = _window(data, recent_cut, coords_fn, seed, lambda m: say(f"recent window: {m}"))
    headline = "matured" if "matured" in windows else "recent"
    game = windows[headline].pop("_game")
    for w in windows.values():
        w.pop("_game", None)

    # -- freshness: fit at day T0 with the labels known then; frozen vs retrained every day (incremental)
    say("freshness")
    chains = retrain_chains(data, int(0.35 * n_days), {"frozen": {"kind": "frozen"},
                                                        "daily": {"kind": "incremental"},
                                                        "global": {"kind": "frozen", "global_only": True}},
                            seed, lambda m: say(f"freshness: {m}"), keep_rows=True)
    t0_day, horizon = chains["t0_day"], chains["horizon"]
    fresh = {"days": chains["days"], "auc_frozen": chains["auc"]["frozen"], "auc_daily": chains["auc"]["daily"],
             "auc_global": chains["auc"]["global"]}
    daily, prev_rows, inc_seconds = chains["models"]["daily"], chains["last_rows"], chains["seconds"]["daily"][1:]
    all_rows, all_known, days, coords = chains["all_rows"], chains["all_known"], chains["row_days"], chains["coords"]

    # -- incremental vs full retrain on the last day's data
    say("full retrain")
    start = time.perf_counter()
    full = GameModel(coords, passes=3, seed=seed).fit(prev_rows)
    full_seconds = time.perf_counter() - start
    last = subset_rows(all_rows, all_known & (days >= horizon[-1]) & (days < horizon[-1] + 2)) if horizon else None
    compare = None
    if last is not None:
        compare = {"incremental": {"auc": auc(last["response"], daily.decision_function(last)),
                                   "seconds_per_day": float(np.mean(inc_seconds)) if inc_seconds else None},
                   "full": {"auc": auc(last["response"], full.decision_function(last)), "seconds": full_seconds}}

    metrics = {"auc": windows[headline]["auc"],
               "freshness": {k: fresh[k] for k in ("days", "auc_frozen", "auc_daily")},
               "protocol": headline, "windows": windows}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    details = {"label_latency": latency, "label_status": {r["values"]: r["counts"] for r in
                                                          pc.value_counts(final["status"]).to_pylist()},
               "auc_global_frozen": fresh["auc_global"], "incremental_vs_full": compare,
               "freshness_start_day": t0_day, "days": n_days}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    game.save(out / "model")
    _report(metrics, details, out)
    return metrics


def _report(metrics: dict, details: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows, headline = metrics["windows"], metrics["protocol"]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(16, 4.4))
    names = list(metrics["auc"])
    x = np.arange(len(names))
    for k, (w, color) in enumerate(zip(windows, ("tab:blue", "tab:orange"))):
        a.bar(x + (k - (len(windows) - 1) / 2) * 0.38, [windows[w]["auc"][n] for n in names], 0.38,
              label=f"{w} window (train cut day {windows[w]['cutoff_day']})", color=color)
    a.set_ylim(0.5, 1.0)
    a.set_ylabel("test AUC (axis starts at 0.5 = chance)")
    a.set_xticks(x, names, fontsize=8, rotation=20)
    a.set_title("test AUC by component")
    a.legend(fontsize=8)
    f = metrics["freshness"]
    t0 = details["freshness_start_day"]
    b.plot(f["days"], f["auc_daily"], "o-", label="retrained daily (incremental)")
    b.plot(f["days"], f["auc_frozen"], "s-", label=f"frozen at day {t0} of the data")
    b.plot(f["days"], details["auc_global_frozen"], "k--", label="global only, frozen (baseline)")
    b.set_xlabel(f"days since the frozen model was trained (day {t0} of the data)")
    b.set_ylabel("AUC on that day's applications")
    b.set_title("freshness (001's decay figure)")
    b.legend(fontsize=8)
    lat = details["label_latency"]
    c.bar(range(1, len(lat) + 1), lat)
    c.set_ylim(0, 1)
    c.set_xlabel("days after the application")
    c.set_ylabel("share of positives known")
    c.set_title("label latency")
    fig.tight_layout()
    fig.savefig(out / "qa.png", dpi=110)
    plt.close(fig)
    lines = ["# Qualified Applicant: mixed model (seed 001)", "",
             "P(positive hirer action | member applied to job): a global logistic model on member x job features, "
             "a per-member model on job features and a per-job model on member features, fit by coordinate descent. "
             "Each model is trained at a cutoff on the applications before it with their labels as known at the "
             f"cutoff, validated on the last {VALIDATION_DAYS} days before it (GAME keeps its best snapshot there; "
             f"the GBDT early-stops there), and tested on the {TEST_DAYS} days after it against the labels known at "
             f"the end of the data ({details['days']} days).", ""]
    head = ["| model |"] + [f" {w} window: test AUC |" for w in windows] + \
        [" recent: pending as negative |" if "recent" in windows else ""]
    lines += ["".join(head), "|---|" + "---|" * (len(windows) + ("recent" in windows))]
    for n in names:
        row = f"| {n} |" + "".join(f" {windows[w]['auc'][n]:.4f} |" for w in windows)
        if "recent" in windows:
            row += f" {windows['recent']['auc_pending_as_negative'][n]:.4f} |"
        lines.append(row)
    for w, v in windows.items():
        r = v["rows"]
        lines += ["", f"**{w} window**: training cutoff at day {v['cutoff_day']}; {r['train']:,} training and "
                  f"{r['validation']:,} validation applications with known labels; {r['test']:,} test applications, "
                  f"{100 * v['pending_share']:.1f}% of them still pending at the end of the data"
                  + (" (left out of the AUC; counted as negatives in the last column)" if v["pending_share"] else
                     " (all labels final)") + f"; the GBDT stopped after {v['gbdt_rounds']} rounds."]
    lines += ["", f"Headline (metrics.json `auc`): the **{headline}** window"
              + (", the only one whose test labels have all matured." if headline == "matured" else
                 ": the data is too short for a window whose labels have all matured (needs "
                 f"{MATURE_DAYS + TEST_DAYS + VALIDATION_DAYS + 3} days)."),
              "", "`game` is global + per-member + per-job with the GBDT's score as offset (cross-fitted on the "
              "training data).", "", "## Freshness", "",
              f"A model trained at day {t0} of the data (labels as known then) is frozen, or updated every day "
              "with the labels known by the end of the previous day (incremental: yesterday's posterior is the prior).",
              "", "| day | retrained daily | frozen | global only |", "|---|---|---|---|"]
    lines += [f"| {d} | {x_:.4f} | {y:.4f} | {z:.4f} |" for d, x_, y, z in
              zip(f["days"], f["auc_daily"], f["auc_frozen"], details["auc_global_frozen"])]
    g = details["auc_global_frozen"]
    gap_f = [x_ - z for x_, z in zip(f["auc_frozen"], g)]
    gap_d = [x_ - z for x_, z in zip(f["auc_daily"], g)]
    if gap_f:
        lines += ["", f"Advantage over the global-only baseline: frozen {gap_f[0]:+.4f} on day 1 -> {gap_f[-1]:+.4f} on "
                  f"day {f['days'][-1]}; retrained daily {gap_d[0]:+.4f} -> {gap_d[-1]:+.4f}. All three curves fall "
                  "over time for a reason that is not staleness: later days' applications have had less time for "
                  "their labels to arrive, so compare the gaps."]
    inc = details["incremental_vs_full"]
    if inc:
        lines += ["", f"Incremental vs full retrain on the last day: AUC {inc['incremental']['auc']:.4f} vs "
                  f"{inc['full']['auc']:.4f}; {inc['incremental']['seconds_per_day'] or 0:.1f} s per incremental day "
                  f"vs {inc['full']['seconds']:.1f} s for a full fit."]
    lines += ["", "## Labels", "", "| status (as of the end) | applications |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in sorted(details["label_status"].items(), key=lambda kv: -kv[1])]
    lines += ["", "Share of positives known within N days: " +
              ", ".join(f"{i + 1}d {v:.0%}" for i, v in enumerate(details["label_latency"][:14])) + ".",
              "", "![components, freshness, label latency](qa.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
