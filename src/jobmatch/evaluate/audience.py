"""`jobmatch evaluate audience`: audience expansion for job notifications (002 §4.3, §5.4).

Protocol. The last 7 days are the test week; T is its start. The intent models (fastText and BERT_FT user
vectors, `evaluate.intent_models`) train on the activity documents before T, and every member active before T
gets a user vector as of T, indexed in a sharded HNSW index per vector kind. The held-out postings are the jobs
posted in the test week that somebody applied to in it. For each, the *anchor set* is the exact profile match among
the indexed members (occupation, and city unless the job is remote; `ann.anchors`); the *expansion* queries the
index from the anchors — the mean of the seed set's vectors or pseudo-relevance feedback, the seed set being every
anchor or the best five as in 002 — keeps up to 500 neighbours above a cosine threshold and appends them.

Relevant members: who applied to the job in the test week; with the simulator's truth, also who was a *fit*:
seeking in the test week, targeting the job's occupation when it was posted, and wanting its setting (a remote-
minded seeker a remote job; others a remote job or one in their city) — a member who never saw the job can be a fit.

Every variant is swept over cosine thresholds and reported at two operating points chosen without looking at who
applied: 002's threshold (0.80 — on these centred vectors; 002's own scale is unknown), and an equal budget, the
threshold at which the audience is twice the anchor set (reach interpolated between the sweep's thresholds), which
compares vector kinds and query constructions at the same audience size. ANN recall is measured against exact
search on the same vectors, per shard count, with the query latency (wall time on this machine: noisy when it is
shared).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.ann.anchors import exact_match_anchors
from jobmatch.ann.expansion import ExpansionParams, expand, merge_audience
from jobmatch.ann.index import AnnParams, ShardedIndex
from jobmatch.evaluate import fmt
from jobmatch.evaluate.intent_models import VECTOR_KINDS, models_before_test_week
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.intent.config import IntentConfig

METHODS = ("mean", "prf")
SEEDS = {"all": None, "top5": 5}
# centred cosines to the query vector (002: 0.80); a mean of many seeds sits close to each of them, so the useful
# range reaches near 1
THRESHOLDS = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995)
NEIGHBOURS = 500
PAPER_THRESHOLD = 0.8
MATERIAL = 0.01  # a recall difference smaller than this between two query constructions is reported as none
ANN_K = 100
LATENCY_QUERIES = 200


def _variant(kind: str, method: str, seeds: str) -> str:
    return f"{kind}/{method}/{seeds}"


def _scores(audiences: list[np.ndarray], relevant: list[np.ndarray]) -> dict:
    """Micro-averaged over jobs: recall and precision of the audiences, their F1, the relevant members reached
    (and in all), and the mean audience size."""
    hits = sum(int(np.isin(a, r).sum()) for a, r in zip(audiences, relevant))
    size = sum(a.size for a in audiences)
    total = sum(r.size for r in relevant)
    recall = hits / total if total else float("nan")
    precision = hits / size if size else float("nan")
    f1 = 2 * recall * precision / (recall + precision) if hits else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "reached": hits, "total": total,
            "audience": size / max(len(audiences), 1), "jobs": len(audiences)}


def _fit_members(truth: Truth, jobs: pa.Table, member_ids: np.ndarray, member_location: np.ndarray,
                 test_from: int, t_end: int) -> list[np.ndarray]:
    """Per job, the indexed members the latent intent says it fits (see the module docstring)."""
    seeking = member_ids[truth.seeking(member_ids, test_from, t_end)]
    location = dict(zip(member_ids.tolist(), member_location.tolist()))
    before, _ = truth.intent_at(seeking, np.full(seeking.size, np.iinfo(np.int64).min))
    after, _ = truth.intent_at(seeking, np.full(seeking.size, np.iinfo(np.int64).max))
    posted = np.maximum(jobs["posted_at"].cast(pa.int64()).to_numpy(), test_from)
    job_occ = jobs["occupation"].to_pylist()
    # candidates: members whose target is the job's occupation before or after a drift; then the intent at posting
    cand = [seeking[(before == o) | (after == o)] for o in job_occ]
    owner = np.repeat(np.arange(len(cand)), [c.size for c in cand])
    flat = np.concatenate(cand) if cand else np.zeros(0, np.int64)
    target, remote = truth.intent_at(flat, posted[owner])
    job_remote = np.asarray(jobs["remote"].to_pylist(), bool)[owner]
    job_loc = np.asarray(jobs["location"].to_pylist(), object)[owner]
    same_city = np.array([location[m] for m in flat.tolist()], object) == job_loc
    ok = (target == np.asarray(job_occ, object)[owner]) & np.where(remote, job_remote, job_remote | same_city)
    return [flat[(owner == j) & ok] for j in range(len(cand))]


def _ann_study(vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, shard_counts: tuple[int, ...],
               params: AnnParams, seed: int) -> dict:
    """Recall@k of the sharded index against exact search, build time and per-query latency, per shard count;
    exact search's latency measured once, in the same run."""
    out = {}
    sample = np.random.default_rng(seed).permutation(queries.shape[0])[:LATENCY_QUERIES]

    def per_query_ms(search, k: int) -> float:
        started = time.perf_counter()
        for i in sample.tolist():
            search(queries[i:i + 1], k)
        return (time.perf_counter() - started) / max(sample.size, 1) * 1e3

    exact_ms = None
    for shards in shard_counts:
        started = time.perf_counter()
        index = ShardedIndex(params, shards=shards).fit(keys, vectors)
        build_s = time.perf_counter() - started
        k = min(ANN_K, index.size)
        ann, _ = index.search(queries, k)
        exact, _ = index.exact_search(queries, k)
        recall = float(np.mean([np.intersect1d(a, e).size / k for a, e in zip(ann, exact)]))
        exact_ms = exact_ms or per_query_ms(index.exact_search, k)
        out[str(shards)] = {"recall@k": recall, "k": k, "build_s": build_s, "latency_ms": per_query_ms(index.search, k),
                            "exact_latency_ms": exact_ms}
    return out


def evaluate_audience(log: EventLog, out: str | Path, truth: Truth | None = None, config: IntentConfig | None = None,
                      ann: AnnParams | None = None, quick: bool = False, seed: int = 0,
                      say: Callable[[str], None] | None = None) -> dict:
    say = say or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or (IntentConfig.quick() if quick else IntentConfig.cpu())
    ann = ann or AnnParams(seed=seed)
    snap, (t_start, test_from, t_end), docs, models = models_before_test_week(log, config, seed, say)
    say("user vectors as of the test week")
    vectors = models.vectors(docs)
    keys = np.array([d.member_id for d in docs], np.int64)

    jobs = snap.entities("jobs")
    members = snap.entities("members")
    ev = snap.events(["member_id", "ts", "action", "job_id"], since_us=test_from)
    applies = ev.filter(pc.equal(ev["action"], "APPLY"))
    posted = jobs["posted_at"].cast(pa.int64()).to_numpy()
    new_jobs = jobs.filter(pa.array(posted >= test_from))
    applied_to = np.unique(applies["job_id"].to_numpy())
    held = new_jobs.filter(pa.array(np.isin(new_jobs["job_id"].to_numpy(), applied_to)))
    if quick and held.num_rows > 400:
        held = held.take(pa.array(np.sort(np.random.default_rng(seed).choice(held.num_rows, 400, replace=False))))
    if held.num_rows < 10:
        raise ValueError(f"data: {held.num_rows} jobs posted in the test week with an application; the evaluation "
                         "needs at least 10")
    job_ids = held["job_id"].to_numpy()
    app_job, app_member = applies["job_id"].to_numpy(), applies["member_id"].to_numpy()
    appliers = [np.unique(app_member[app_job == j]) for j in job_ids.tolist()]
    indexed = members.filter(pa.array(np.isin(members["member_id"].to_numpy(), keys)))
    anchors = exact_match_anchors(held, indexed)
    relevant = {"applied": appliers}
    if truth is not None:
        say("who fits each job (truth)")
        relevant["fit"] = _fit_members(truth, held, indexed["member_id"].to_numpy(),
                                       np.asarray(indexed["location"].to_pylist(), object), test_from, t_end)

    def scores(audiences: list[np.ndarray]) -> dict:
        return {name: _scores(audiences, rel) for name, rel in relevant.items()}

    anchor = scores(anchors)
    sweep: dict[str, dict] = {}
    indexes = {}
    for kind in VECTOR_KINDS:
        say(f"{kind}: sharded index of {keys.size:,} members")
        index = indexes[kind] = ShardedIndex(ann).fit(keys, vectors[kind])
        seed_rows = [index.rows(a) for a in anchors]
        for method in METHODS:
            for seeds_name, n_seeds in SEEDS.items():
                name = _variant(kind, method, seeds_name)
                say(f"expansion {name}")
                found = expand(index, seed_rows, ExpansionParams(method=method, k=NEIGHBOURS, threshold=min(THRESHOLDS),
                                                                 seeds=n_seeds))
                sweep[name] = {f"{th:.3f}": scores([merge_audience(a, index.keys_[r[s >= th]])
                                                    for a, (r, s) in zip(anchors, found)]) for th in THRESHOLDS}

    say("ANN recall and latency per shard count")
    index = indexes["bert_ft"]
    queries = index.vectors_[np.random.default_rng(seed).permutation(index.size)[:500]]  # members as queries
    shard_counts = (1, 4) if quick else (1, 4, 16)
    ann_study = _ann_study(vectors["bert_ft"], keys, queries, shard_counts, ann, seed)
    n_jobs = len(anchors)
    double = 2 * anchor["applied"]["audience"]
    metrics = {"anchor": anchor,
               "expansion": {name: {"at_threshold": _with_added(by_th[f"{PAPER_THRESHOLD:.3f}"], anchor, n_jobs),
                                    "at_double_audience": _with_added(_at_audience(by_th, double), anchor, n_jobs)}
                             for name, by_th in sweep.items()},
               "ann": ann_study}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    details = {"jobs": n_jobs, "members_indexed": int(keys.size), "config": asdict(config), "ann_params": asdict(ann),
               "sweep": sweep, "quick": quick, "mean_anchors": float(np.mean([a.size for a in anchors])),
               "appliers_indexed": float(np.mean(np.concatenate([np.isin(a, keys) for a in appliers]))),
               # the precision of an audience drawn at random from the indexed members
               "base_rate": {r: float(sum(np.isin(x, keys).sum() for x in rel) / (len(rel) * keys.size))
                             for r, rel in relevant.items()}}
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    _report(metrics, details, out, "fit" in relevant)
    return metrics


def _at_audience(by_threshold: dict, size: float) -> dict:
    """The sweep's operating point where the mean audience is `size` (reach interpolated linearly between the two
    thresholds around it; the largest audience when no threshold reaches `size`)."""
    points = sorted(by_threshold.values(), key=lambda m: m["applied"]["audience"])
    sizes = np.array([m["applied"]["audience"] for m in points])
    size = float(min(max(size, sizes[0]), sizes[-1]))
    out = {}
    for name in points[0]:
        reached = float(np.interp(size, sizes, [m[name]["reached"] for m in points]))
        total = points[0][name]["total"]
        recall, precision = reached / total, reached / (size * points[0][name]["jobs"])
        out[name] = {"recall": recall, "precision": precision, "reached": reached, "audience": size,
                     "f1": 2 * recall * precision / (recall + precision) if reached else 0.0, "total": total,
                     "jobs": points[0][name]["jobs"]}
    return out


def _with_added(point: dict, anchor: dict, n_jobs: int) -> dict:
    """The operating point, and what the expansion adds to the anchors there: members per job and the share of them
    who applied (or fit)."""
    out = {}
    for name, m in point.items():
        extra = (m["audience"] - anchor[name]["audience"]) * n_jobs
        out[name] = {**m, "added_per_job": extra / n_jobs,
                     "added_precision": (m["reached"] - anchor[name]["reached"]) / extra if extra > 0 else None,
                     "reach_growth": m["reached"] / anchor[name]["reached"] - 1 if anchor[name]["reached"] else None}
    return out


def _report(metrics: dict, details: dict, out: Path, has_fit: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    anchor = metrics["anchor"]
    a.plot([anchor["applied"]["audience"]], [anchor["applied"]["recall"]], "k*", markersize=12, label="anchor only")
    for name, by_th in details["sweep"].items():
        a.plot([v["applied"]["audience"] for v in by_th.values()], [v["applied"]["recall"] for v in by_th.values()],
               ".-", label=name, alpha=0.8)
    a.set_xlabel("mean audience per job")
    a.set_ylabel("recall of appliers")
    a.set_title("anchor + expansion, threshold sweep")
    a.legend(fontsize=7)
    shards = list(metrics["ann"])
    b.plot(shards, [metrics["ann"][s]["latency_ms"] for s in shards], "o-", label="ANN query (ms)")
    b.axhline(metrics["ann"][shards[0]]["exact_latency_ms"], color="k", linestyle="--", label="exact query (ms)")
    b.set_xlabel("shards")
    b.set_ylabel("ms per query")
    for s in shards:
        b.annotate(f"recall {metrics['ann'][s]['recall@k']:.3f}", (s, metrics["ann"][s]["latency_ms"]), fontsize=8)
    b.set_title(f"ANN vs exact, k = {metrics['ann'][shards[0]]['k']}")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "audience.png", dpi=110)
    plt.close(fig)

    rel = ("applied", "fit") if has_fit else ("applied",)
    base = details["base_rate"]
    lines = ["# Audience expansion for job notifications (seed 002 §4.3, §5.4)", "",
             f"{details['jobs']:,} jobs posted in the test week with at least one application; "
             f"{details['members_indexed']:,} members with activity before the test week indexed; "
             f"{details['appliers_indexed']:.0%} of the test-week applications come from them (the rest no audience "
             f"built from user vectors can reach). Mean anchor set {details['mean_anchors']:.1f} members. A random "
             "audience's precision: " + ", ".join(f"{r} {base[r]:.4f}" for r in rel) + ".", ""]

    def table(point: str, title: str) -> list[str]:
        head = "| variant | audience | " + " | ".join(f"recall ({r}) | precision ({r})" for r in rel) + \
            " | added per job | appliers reached | " + " | ".join(f"precision of the added ({r})" for r in rel) + " |"
        rows = [f"### {title}", "", head, "|" + "---|" * (4 + 3 * len(rel)),
                f"| anchor only | {anchor['applied']['audience']:.1f} | " +
                " | ".join(f"{fmt(anchor[r]['recall'])} | {fmt(anchor[r]['precision'], 4)}" for r in rel) +
                " | – | – | " + " | ".join("–" for _ in rel) + " |"]
        for name, m in metrics["expansion"].items():
            p = m[point]
            rows.append(f"| {name} | {p['applied']['audience']:.1f} | " +
                        " | ".join(f"{fmt(p[r]['recall'])} | {fmt(p[r]['precision'], 4)}" for r in rel) +
                        f" | {p['applied']['added_per_job']:.1f} | {p['applied']['reach_growth']:+.0%} | " +
                        " | ".join(fmt(p[r]["added_precision"], 4) for r in rel) + " |")
        return rows + [""]

    lines += table("at_threshold", f"At 002's threshold (cosine >= {PAPER_THRESHOLD:.2f} to the query)")
    lines += table("at_double_audience", "At an equal budget: the threshold that doubles the anchor audience")
    e = metrics["expansion"]
    at2 = {n: m["at_double_audience"]["applied"]["recall"] for n, m in e.items()}
    kinds = sorted({n.split("/")[0] for n in e})
    pairs = [(k, s) for k in kinds for s in SEEDS]
    mean_gap = [at2[f"{k}/mean/{s}"] - at2[f"{k}/prf/{s}"] for k, s in pairs]
    top5_gap = [at2[f"{k}/{m}/top5"] - at2[f"{k}/{m}/all"] for k in kinds for m in METHODS]

    def verdict(gaps: list[float]) -> str:
        if max(abs(g) for g in gaps) < MATERIAL:
            return f"makes no material difference here (recall within {max(abs(g) for g in gaps):.3f})"
        wins = sum(g >= 0 for g in gaps)
        return f"**{'holds' if 2 * wins >= len(gaps) else 'does not hold'}** (ahead in {wins} of {len(gaps)})"

    paper = e["fasttext/mean/all"]["at_threshold"]["applied"]
    best = {k: max((n for n in e if n.startswith(k + "/")), key=at2.get) for k in kinds}
    lines += ["002's findings here:",
              f"* expansion reaches job-seekers the exact match misses — "
              f"**{'holds' if (paper['reach_growth'] or 0) > 0 else 'does not hold'}**: at 002's threshold the "
              f"fastText mean expansion adds {paper['added_per_job']:.0f} members per job "
              f"({paper['audience'] / anchor['applied']['audience'] - 1:+.0%} audience) and reaches "
              f"{paper['reach_growth']:+.0%} more appliers (002 online, over exact matches: +79% unique candidates, "
              "+127% notification applies; marketplace-wide +0.43% unique applies, +1.45% predicted confirmed hires "
              f"— an A/B test we cannot run offline). The added members apply at {paper['added_precision']:.4f}, "
              f"{paper['added_precision'] / base['applied']:.0f}x a random audience but below the anchors' "
              f"{anchor['applied']['precision']:.4f}: reach bought with precision, which 002 judged online by "
              "neutral dismiss rates;"]
    if has_fit:
        fit = e["fasttext/mean/all"]["at_threshold"]["fit"]
        lines.append(f"* by the latent truth, the added members are rarely a *fit* ({fit['added_precision']:.4f}, "
                     f"{fit['added_precision'] / base['fit']:.0f}x a random audience, against the anchors' "
                     f"{anchor['fit']['precision']:.4f}): a fit needs the job's city for an "
                     "on-site job, and activity documents say what a seeker wants to do, not where — the vectors "
                     "pull in seekers of the right occupation from other cities, who still apply sometimes;")
    lines += [f"* the mean query vector is at least as good as pseudo-relevance feedback (002 found mean better; "
              f"recall of appliers at the doubled audience, per vector x seed set) — {verdict(mean_gap)}; the five "
              f"best anchors as the seed set (002's choice) rather than all of them — {verdict(top5_gap)};",
              "* at the doubled audience: " + ", ".join(
                  f"best {k} variant {best[k]} (recall {at2[best[k]]:.3f})" for k in kinds) +
              " — 002 served fastText vectors for memory and latency.", ""]
    lines += ["## ANN recall vs exact search", "", "| shards | recall@k | build (s) | ms / query | exact ms / query |",
              "|---|---|---|---|---|"]
    for s, m in metrics["ann"].items():
        lines.append(f"| {s} | {m['recall@k']:.4f} | {m['build_s']:.2f} | {m['latency_ms']:.2f} | "
                     f"{m['exact_latency_ms']:.2f} |")
    p = details["ann_params"]
    met = min(m["recall@k"] for m in metrics["ann"].values()) >= 0.95
    one = metrics["ann"][shards[0]]
    lines += ["", f"HNSW M {p['M']}, efC {p['ef_construction']}, efS {p['ef_search']} (at least 2k per query; 002: 16 "
              f"shards, M 48, efC 32, efS 1000); target recall >= 0.95 — **{'met' if met else 'not met'}**. Latencies "
              f"are wall time on this machine, one query at a time: with one shard the index answers in "
              f"{one['latency_ms'] / one['exact_latency_ms']:.2f}x the time of exact search over "
              f"{details['members_indexed']:,} vectors; more shards add thread hand-offs that only pay once each "
              "shard is large (002: hundreds of millions of vectors; see benchmarks/ann_bench.py).", "",
              "![sweep and ANN](audience.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
