"""`jobmatch evaluate activity`: what each member activity embedding buys a JYMBII-style job recommender (000).

Protocol: the last 7 days are the test week, the 7 before it the training week (its last 2 days validate the
decay rate). The job encoder and the learned aggregators train on events before the training week; member
embeddings are snapshots as of the start of each week (a weekly refresh). The recommender is a GBDT on
impressions (label: applied or saved), with profile features only, then with each embedding added as its raw
vector plus the cosine of each of its vectors with the candidate job's embedding.
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

from jobmatch.embed.aggregators import DecayAggregator, LearnedAggregator, MeanAggregator, gather
from jobmatch.embed.jobs import JobEncoder, co_interaction_pairs, job_tokens
from jobmatch.embed.sequences import (DAY_US, DEFAULT_NEGATIVES, PAD, POSITIVE, action_log, member_sequences,
                                      proxy_examples)
from jobmatch.metrics import auc, ndcg_by_entity
from jobmatch.evaluate import fmt
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.features import IdIndex, PairFeaturizer

# members by how many actions their 28-day window holds at the week's start (0: no activity embedding at all)
HISTORY_BINS = ((0, 0), (1, 7), (8, 32))
DECAY_GRID = (0.5, 0.7, 0.85, 0.95)
CHANNELS = ("search", "recommendations", "alerts", "notifications")


def _gbdt(X: np.ndarray, y: np.ndarray, rounds: int, seed: int) -> xgb.Booster:
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "subsample": 0.8, "min_child_weight": 5,
              "colsample_bytree": 0.8, "seed": seed, "nthread": 2, "tree_method": "hist"}
    return xgb.train(params, xgb.DMatrix(X, label=y), num_boost_round=rounds)


def _member_features(vectors: np.ndarray, found: np.ndarray, job_vec: np.ndarray, parts: int) -> np.ndarray:
    """Raw member vector(s) and the cosine of each part with the candidate job; zeros when the member has none."""
    d = job_vec.shape[1]
    cos = []
    for k in range(parts):
        v = vectors[:, k * d:(k + 1) * d]
        norm = np.linalg.norm(v, axis=1) * np.linalg.norm(job_vec, axis=1)
        cos.append(np.where(norm > 0, (v * job_vec).sum(1) / np.maximum(norm, 1e-12), 0.0))
    return np.column_stack([vectors * found[:, None], np.column_stack(cos)])


def _cosine_proxy(ex, job_emb: np.ndarray) -> float:
    """The proxy task scored without learning: cosine of the mean positive context job with the target job."""
    emb, _ = gather(ex.context, job_emb)
    w = np.isin(ex.context.action, POSITIVE).astype(np.float32)
    centre = (emb * w[..., None]).sum(1)
    target = job_emb[np.maximum(ex.target_job, 0)]
    norm = np.linalg.norm(centre, axis=1) * np.linalg.norm(target, axis=1)
    return auc(ex.label, np.where(norm > 0, (centre * target).sum(1) / np.maximum(norm, 1e-12), 0.0))


def history_bin(lo: int, hi: int) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def evaluate_activity(log: EventLog, out: str | Path, truth: Truth | None = None, quick: bool = False, seed: int = 0,
                      say: Callable[[str], None] | None = None, arches: tuple[str, ...] = ("cnn", "transformer"),
                      negatives: dict[str, tuple[str, ...]] | None = None) -> dict:
    """With `truth` (a simulated marketplace), AUC is also reported for members whose intent drifted.

    `negatives` names the proxy-task negative sets the learned aggregators train with: {suffix: kinds}, each giving
    the variants `learned-<arch><suffix>` (default: {"": DEFAULT_NEGATIVES}); see `proxy_examples`."""
    negatives = {"": DEFAULT_NEGATIVES} if negatives is None else negatives
    learned_names = [f"learned-{a}{suffix}" for suffix in negatives for a in arches]
    variants = ["profile", "mean", "decay", *learned_names]
    say = say or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    snap = log.snapshot()
    t = {n: snap.entities(n) for n in ("jobs", "members", "projects", "companies")}
    rng = np.random.default_rng(seed)
    ev = snap.events(["event_id", "member_id", "ts", "action", "job_id"])
    ts_all = ev["ts"].cast(pa.int64()).to_numpy()
    t_start, t_end = int(ts_all.min()), int(ts_all.max()) + 1
    n_days = (t_end - t_start) // DAY_US + 1
    test_from = t_start + (n_days - 7) * DAY_US
    train_from = test_from - 7 * DAY_US
    val_from = test_from - 2 * DAY_US
    if train_from - t_start < 7 * DAY_US:
        raise ValueError(f"data: {n_days} days of events; the protocol needs at least 21")
    seconds: dict[str, float] = {}

    say("job encoder")
    industry = dict(zip(t["companies"]["company_id"].to_pylist(), t["companies"]["industry"].to_pylist()))
    tokens = job_tokens(t["jobs"], industry)
    before = ev.filter(pc.less(ev["ts"].cast(pa.int64()), train_from))
    job_ids = t["jobs"]["job_id"].to_numpy()
    job_row = {int(j): i for i, j in enumerate(job_ids.tolist())}
    started = time.perf_counter()
    encoder = JobEncoder(epochs=1 if quick else 2, seed=seed).fit(tokens, co_interaction_pairs(before, job_row))
    seconds["job_encoder"] = time.perf_counter() - started
    job_emb = encoder.transform(tokens)
    log = action_log(ev, job_row)

    say("learned aggregators")
    past = tuple(a[log[3] < train_from] for a in log)
    occupation = np.unique(t["jobs"]["occupation"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    aggregators = {"mean": MeanAggregator()}
    proxy_auc: dict[str, float] = {}
    proxy_sizes: dict[str, dict[str, float]] = {}
    for suffix, kinds in negatives.items():
        examples = proxy_examples(past, np.random.default_rng(seed), negatives=kinds, job_group=occupation)
        # a tenth of the members' windows are held out to measure the proxy task itself
        held = (examples.context.member_id % 10) == 0
        fit_ex, held_ex = examples.subset(~held), examples.subset(held)
        label = "+".join(kinds)
        proxy_sizes[label] = {"examples": int(examples.label.size), "positive_share": float(examples.label.mean())}
        proxy_auc[f"cosine to mean of positive context [{label}]"] = _cosine_proxy(held_ex, job_emb)
        for arch in arches:
            name = f"learned-{arch}{suffix}"
            started = time.perf_counter()
            model = LearnedAggregator(arch, epochs=1 if quick else 3, seed=seed).fit(fit_ex, job_emb)
            seconds[name] = time.perf_counter() - started
            aggregators[name] = model
            proxy_auc[f"{name} [{label}]"] = auc(held_ex.label, model.predict_proba(held_ex.context,
                                                                                      held_ex.target_job, job_emb))

    say("impressions")
    imp = snap.impression_outcomes()
    its = imp["ts"].cast(pa.int64()).to_numpy()
    cap = 30_000 if quick else 300_000

    # request ids as integer codes: np.isin over 500k Python strings takes minutes, over integers milliseconds
    request = imp["request_id"].combine_chunks().dictionary_encode().indices.to_numpy()

    def rows(lo: int, hi: int) -> dict[str, np.ndarray]:
        idx = np.flatnonzero((its >= lo) & (its < hi))
        reqs = np.unique(request[idx])
        if idx.size > cap:  # sample whole requests, so ranking metrics stay meaningful
            keep = rng.choice(reqs, int(reqs.size * cap / idx.size), replace=False)
            idx = idx[np.isin(request[idx], keep)]
        take = pa.array(idx)
        c = {k: imp[k].take(take).to_numpy(zero_copy_only=False) for k in ("member_id", "job_id", "request_id",
                                                                           "channel", "saved", "applied")}
        c["ts"] = its[idx]
        c["label"] = (c["saved"] | c["applied"]).astype(np.int8)
        return c

    train, test = rows(train_from, test_from), rows(test_from, t_end)
    pairs = PairFeaturizer(t["jobs"], t["members"], t["projects"])
    project_of_job = dict(zip(t["projects"]["job_id"].to_pylist(), t["projects"]["project_id"].to_pylist()))

    def profile(c: dict) -> np.ndarray:
        proj = np.fromiter((project_of_job[int(j)] for j in c["job_id"]), np.int64, c["job_id"].size)
        chan = np.stack([c["channel"] == ch for ch in CHANNELS], 1).astype(float)
        return np.column_stack([pairs.features(proj, c["member_id"]), chan])

    for c in (train, test):
        c["profile"] = profile(c)
        c["job_vec"] = job_emb[np.fromiter((job_row[int(j)] for j in c["job_id"]), np.int64, c["job_id"].size)]

    def history(c: dict, as_of: int) -> np.ndarray:
        """Actions in each row's member's window at `as_of` (0 for members with none)."""
        seqs = member_sequences(log, as_of, members=np.unique(c["member_id"]))
        rows = IdIndex(seqs.member_id, "member_id").rows(c["member_id"], strict=False)
        n = (seqs.action != PAD).sum(axis=1)
        return np.where(rows >= 0, n[np.maximum(rows, 0)] if n.size else 0, 0)

    def embed(agg, c: dict, as_of: int) -> np.ndarray:
        seqs = member_sequences(log, as_of, members=np.unique(c["member_id"]))
        vec = agg.transform(seqs, job_emb)
        rows = IdIndex(seqs.member_id, "member_id").rows(c["member_id"], strict=False)
        found = rows >= 0
        vectors = np.zeros((rows.size, vec.shape[1]))  # members without activity: zeros
        vectors[found] = vec[rows[found]]
        return _member_features(vectors, found, c["job_vec"], vec.shape[1] // job_emb.shape[1])

    rounds = 60 if quick else 200

    def fit_score(Xtr: np.ndarray, Xte: np.ndarray) -> np.ndarray:
        return _gbdt(Xtr, train["label"], rounds, seed).inplace_predict(Xte)

    say("decay grid")
    is_val = train["ts"] >= val_from
    grid = {}
    for r in DECAY_GRID[1:3] if quick else DECAY_GRID:
        agg = DecayAggregator(r)
        X = np.column_stack([train["profile"], embed(agg, train, train_from)])
        model = _gbdt(X[~is_val], train["label"][~is_val], rounds, seed)
        grid[r] = auc(train["label"][is_val], model.inplace_predict(X[is_val]))
    best_r = max(grid, key=grid.get)
    aggregators["decay"] = DecayAggregator(best_r)

    say("recommenders")
    scores = {}
    for name in variants:
        if name == "profile":
            Xtr, Xte = train["profile"], test["profile"]
        else:
            agg = aggregators[name]
            Xtr = np.column_stack([train["profile"], embed(agg, train, train_from)])
            Xte = np.column_stack([test["profile"], embed(agg, test, test_from)])
        scores[name] = fit_score(Xtr, Xte)

    drift = np.zeros(test["member_id"].size, bool)
    if truth is not None:  # simulated data only: whose latent intent drifted in the two weeks
        drift = np.isin(test["member_id"], truth.drifted_members(train_from, t_end))
    metrics: dict[str, dict] = {"auc": {}, "ndcg@10": {}, "auc_drift_members": {}, "bytes_per_member": {},
                                "auc_by_history": {}}
    n_hist = history(test, test_from)
    for lo, hi in HISTORY_BINS:
        sel = (n_hist >= lo) & (n_hist <= hi)
        both = sel.any() and 0 < test["label"][sel].mean() < 1  # AUC needs both classes
        metrics["auc_by_history"][history_bin(lo, hi)] = {
            name: auc(test["label"][sel], scores[name][sel]) if both else None for name in variants}
    for name in variants:
        metrics["auc"][name] = auc(test["label"], scores[name])
        metrics["ndcg@10"][name] = ndcg_by_entity(test["request_id"], test["request_id"], test["label"], scores[name],
                                                  10)
        metrics["auc_drift_members"][name] = auc(test["label"][drift], scores[name][drift]) if drift.any() else None
        if name != "profile":
            dim = 3 * job_emb.shape[1] if name in ("mean", "decay") else aggregators[name].dim
            metrics["bytes_per_member"][name] = 4 * dim
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    details = {"decay_grid": {str(k): v for k, v in grid.items()}, "decay_r": best_r, "seconds": seconds,
               "rows": {"train": int(train["label"].size), "test": int(test["label"].size),
                        "test_drift_members": int(drift.sum())},
               "proxy": proxy_sizes, "proxy_auc_held_out": proxy_auc, "variants": variants,
               "history_rows": {history_bin(lo, hi): int(((n_hist >= lo) & (n_hist <= hi)).sum())
                                for lo, hi in HISTORY_BINS},
               "positive_rate_test": float(test["label"].mean()), "quick": quick}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    _report(metrics, details, out)
    return metrics


def _report(metrics: dict, details: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = details["variants"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    x = np.arange(len(variants))
    a.bar(x - 0.2, [metrics["auc"][v] for v in variants], 0.4, label="all test members")
    a.bar(x + 0.2, [metrics["auc_drift_members"][v] or 0 for v in variants], 0.4, label="members whose intent drifted")
    lo = min(v for v in list(metrics["auc"].values()) + [v for v in metrics["auc_drift_members"].values() if v])
    a.set_ylim(max(0.5, lo - 0.02), max(metrics["auc"].values()) + 0.02)
    a.set_xticks(x, variants, rotation=15, fontsize=8)
    a.set_title("job recommendation AUC (test week)")
    a.legend(fontsize=8)
    g = details["decay_grid"]
    b.plot([float(k) for k in g], list(g.values()), "o-")
    b.set_xlabel("decay rate r")
    b.set_ylabel("validation AUC")
    b.set_title("grid search for r")
    fig.tight_layout()
    fig.savefig(out / "activity.png", dpi=110)
    plt.close(fig)
    auc_ = metrics["auc"]
    order = ["profile", "mean", "decay", max((v for v in variants if v.startswith("learned-")), key=lambda v: auc_[v])]
    holds = all(auc_[order[i]] < auc_[order[i + 1]] for i in range(3))
    lines = ["# Member activity embeddings (seed 000)", "",
             f"A GBDT job recommender on impressions (label: applied or saved), trained on "
             f"{details['rows']['train']:,} impressions of the week before the test week and tested on "
             f"{details['rows']['test']:,} of the last week ({details['rows']['test_drift_members']:,} of them shown to "
             f"members whose intent drifted in those two weeks). Decay rate r = {details['decay_r']} by grid search.", "",
             "| variant | AUC | NDCG@10 | AUC, drifted members | bytes / member |", "|---|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {v} | {fmt(auc_[v], 4)} | {fmt(metrics['ndcg@10'][v], 4)} | {fmt(metrics['auc_drift_members'][v], 4)} |"
                     f" {metrics['bytes_per_member'].get(v, '–')} |")
    lines += ["", f"000's ordering profile < mean < decay < best learned on AUC: **{'holds' if holds else 'does not hold'}**"
              f" ({' < '.join(f'{v} {auc_[v]:.4f}' for v in order)}).", "",
              "Proxy task (negatives added per positive: " + "; ".join(
                  f"{k}: {v['examples']:,} examples, {v['positive_share']:.0%} positive" for k, v in
                  details["proxy"].items()) + "). Held-out proxy AUC: " + ", ".join(
                  f"{k} {v:.3f}" for k, v in details["proxy_auc_held_out"].items()) + ".", "",
              "![AUC by variant and the decay grid](activity.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
