"""`jobmatch evaluate candidate-selection`: job-recommendation retrieval with personalized clauses (002 §4.4, §5.5,
Table 6).

Protocol. The last 7 days are the test week; T is its start. The intent models (fastText and BERT_FT user vectors,
a Slice on each) train on the activity documents before T; every member active before T gets user vectors and the
top 10 predicted entities as of T, and a SANNS entity list from the applications before T (`ann.sanns`, over a
sharded index of the same vectors). The job index (tantivy) holds every job open at some time in the test week.
Members evaluated: those who applied in the test week to an indexed job and were active before T; members with an
even id fit each variant's clause weights (P(apply | clause kinds matched), `retrieval.ClauseWeights`) on their
test-week applications, members with an odd id are scored — the weights never see a scored member's applications,
and no model sees anything after T.

Variants (clause sources): the profile baseline; predicted entities only (fastText+Slice, BERT_FT+Slice);
baseline + predicted; predicted + SANNS without the baseline and baseline + predicted + SANNS (Table 6's rows).
Metrics over the scored members' test-week applications: recall, precision and F1 of the top K retrieved
(micro-averaged), and the AUC of the clause score over a shared pool per member — every job any variant's clauses
match plus the jobs applied to (a job a variant does not match scores 0 there).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.ann.index import AnnParams, ShardedIndex
from jobmatch.ann.sanns import sanns_entities
from jobmatch.evaluate import fmt
from jobmatch.evaluate.intent_models import VECTOR_KINDS, models_before_test_week
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.intent.config import IntentConfig
from jobmatch.metrics import auc
from jobmatch.retrieval import (Clause, ClauseWeights, JobIndex, entity_clauses, kinds_of, occupation_clauses,
                                profile_clauses)

K = (25, 100)
SUGGESTIONS = 10
# variant -> clause sources; a source is "profile" or (source, vector kind)
VARIANTS: dict[str, tuple] = {
    "baseline": ("profile",),
    "fasttext+slice": (("predicted", "fasttext"),),
    "bert_ft+slice": (("predicted", "bert_ft"),),
    "baseline+fasttext+slice": ("profile", ("predicted", "fasttext")),
    "baseline+bert_ft+slice": ("profile", ("predicted", "bert_ft")),
    "fasttext+slice+sanns": (("predicted", "fasttext"), ("sanns", "fasttext")),
    "baseline+fasttext+slice+sanns": ("profile", ("predicted", "fasttext"), ("sanns", "fasttext")),
    "baseline+bert_ft+slice+sanns": ("profile", ("predicted", "bert_ft"), ("sanns", "bert_ft")),
}
SEED_TABLE6 = {"fasttext+slice+sanns": (-0.0159, -0.0170), "baseline+fasttext+slice+sanns": (0.0401, 0.0388),
               "baseline+bert_ft+slice+sanns": (0.0385, 0.0341)}


def _source_name(source) -> str:
    return source if isinstance(source, str) else f"{source[0]}:{source[1]}"


def _counts_for(counts: dict, sources: tuple) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A member's matched jobs and counts per clause kind for a variant, joined over its sources."""
    kinds = kinds_of([s if isinstance(s, str) else s[0] for s in sources])
    parts = [counts[_source_name(s)] for s in sources]
    ids = np.unique(np.concatenate([p[0] for p in parts])) if parts else np.zeros(0, np.int64)
    out = np.zeros((ids.size, len(kinds)), np.float32)
    col = 0
    for job_ids, c in parts:
        out[np.searchsorted(ids, job_ids), col:col + c.shape[1]] = c
        col += c.shape[1]
    return ids, out, kinds


def evaluate_candidate_selection(log: EventLog, out: str | Path, truth: Truth | None = None,
                                 config: IntentConfig | None = None, ann: AnnParams | None = None, quick: bool = False,
                                 seed: int = 0, say: Callable[[str], None] | None = None) -> dict:
    """With `truth` (a simulated marketplace), recall is also reported for the members whose intent drifted during
    the period — their profiles no longer say what they look for — and for the rest."""
    say = say or (lambda _m: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = config or (IntentConfig.quick() if quick else IntentConfig.cpu())
    ann = ann or AnnParams(seed=seed)
    snap, (t_start, test_from, t_end), docs, models = models_before_test_week(log, config, seed, say)
    say("user vectors and predicted entities as of the test week")
    vectors = models.vectors(docs)
    keys = np.array([d.member_id for d in docs], np.int64)
    predicted = {kind: dict(zip(keys.tolist(), models.suggest(kind, vectors[kind], SUGGESTIONS)[0]))
                 for kind in VECTOR_KINDS}

    jobs = snap.entities("jobs")
    ev = snap.events(["member_id", "ts", "action", "job_id"])
    applies = ev.filter(pc.equal(ev["action"], "APPLY"))
    a_ts = applies["ts"].cast(pa.int64()).to_numpy()
    a_member, a_job = applies["member_id"].to_numpy(), applies["job_id"].to_numpy()
    before = a_ts < test_from
    sanns = {}
    for kind in VECTOR_KINDS:
        say(f"SANNS entities ({kind})")
        index = ShardedIndex(ann).fit(keys, vectors[kind])
        sanns[kind] = sanns_entities(index, a_member[before], a_job[before], a_ts[before], jobs["job_id"].to_numpy(),
                                     np.asarray(jobs["title"].to_pylist(), object),
                                     np.asarray(jobs["occupation"].to_pylist(), object))

    say("job index")
    posted, expires = (jobs[c].cast(pa.int64()).to_numpy() for c in ("posted_at", "expires_at"))
    open_jobs = jobs.filter(pa.array((posted < t_end) & (expires > test_from)))
    job_index = JobIndex.build(open_jobs)
    skills = {s.lower() for sk in open_jobs["skills"].to_pylist() for s in sk or ()}
    test_applies = ~before & np.isin(a_job, open_jobs["job_id"].to_numpy())
    by_member: dict[int, set[int]] = {}
    for m, j in zip(a_member[test_applies].tolist(), a_job[test_applies].tolist()):
        by_member.setdefault(m, set()).add(j)
    applied = {m: np.array(sorted(js), np.int64) for m, js in by_member.items() if m in predicted["fasttext"]}
    members = np.array(sorted(applied), np.int64)
    if quick and members.size > 600:
        members = np.sort(np.random.default_rng(seed).choice(members, 600, replace=False))
    if members.size < 20:
        raise ValueError(f"data: {members.size} members applied in the test week after activity before it; the "
                         "evaluation needs at least 20")
    profiles = snap.entities("members")
    prof_rows = {m: i for i, m in enumerate(profiles["member_id"].to_pylist())}
    p_occ, p_title, p_skills, p_loc = (profiles[c].to_pylist() for c in ("occupation", "title", "skills", "location"))

    say(f"clauses and matches of {members.size:,} members")
    clauses: dict[int, dict[str, list[Clause]]] = {}
    counts: dict[int, dict] = {}
    for m in members.tolist():
        r = prof_rows[m]
        sets = {"profile": profile_clauses(p_occ[r], p_title[r], p_skills[r] or (), p_loc[r])}
        for kind in VECTOR_KINDS:
            sets[f"predicted:{kind}"] = entity_clauses(predicted[kind][m], "predicted", skills)
            titles, occupations = sanns[kind].get(m, ([], []))
            sets[f"sanns:{kind}"] = entity_clauses(titles, "sanns", skills) + occupation_clauses(occupations, "sanns")
        clauses[m] = sets
        counts[m] = {name: job_index.kind_counts(cs, kinds_of([name.split(":")[0]])) for name, cs in sets.items()}

    fit_members = members[members % 2 == 0]
    scored = members[members % 2 == 1]
    metrics: dict = {v: {} for v in VARIANTS}
    details: dict = {"weights": {}, "per_member_recall": {}}
    pools = {m: np.union1d(np.unique(np.concatenate([c[0] for c in counts[m].values()])), applied[m])
             for m in scored.tolist()}
    for variant, sources in VARIANTS.items():
        say(f"variant {variant}")
        X, y = [], []
        for m in fit_members.tolist():
            ids, c, kinds = _counts_for(counts[m], sources)
            X.append(c)
            y.append(np.isin(ids, applied[m]))
        weights = ClauseWeights(seed=seed).fit(np.concatenate(X), np.concatenate(y), kinds)
        details["weights"][variant] = {"weights": weights.weights, "intercept": weights.intercept_}
        hits = {k: 0 for k in K}
        retrieved = {k: 0 for k in K}
        recall_member = []
        pool_y, pool_s = [], []
        for m in scored.tolist():
            cs = [c for s in sources for c in clauses[m][_source_name(s)]]
            top, _ = job_index.search(cs, weights.weights, k=max(K))
            for k in K:
                hits[k] += int(np.isin(top[:k], applied[m]).sum())
                retrieved[k] += int(min(k, top.size))
            recall_member.append(np.isin(applied[m], top[:max(K)]).mean())
            ids, c, _ = _counts_for(counts[m], sources)
            score = np.zeros(pools[m].size)
            score[np.searchsorted(pools[m], ids)] = weights.score(c)
            pool_s.append(score)
            pool_y.append(np.isin(pools[m], applied[m]))
        n_applied = sum(applied[m].size for m in scored.tolist())
        for k in K:
            recall, precision = hits[k] / n_applied, hits[k] / max(retrieved[k], 1)
            metrics[variant][f"recall@{k}"] = recall
            metrics[variant][f"precision@{k}"] = precision
            metrics[variant][f"f1@{k}"] = 2 * recall * precision / (recall + precision) if hits[k] else 0.0
        metrics[variant]["auc"] = auc(np.concatenate(pool_y), np.concatenate(pool_s))
        details["per_member_recall"][variant] = recall_member
    if truth is not None:
        drifted = np.isin(scored, truth.drifted_members(t_start, t_end))
        details["scored_drifted"] = int(drifted.sum())
        for variant, m in metrics.items():
            recall = np.array(details["per_member_recall"][variant])
            m[f"recall@{K[-1]}_drifted"] = float(recall[drifted].mean()) if drifted.any() else None
            m[f"recall@{K[-1]}_not_drifted"] = float(recall[~drifted].mean()) if (~drifted).any() else None
    base = metrics["baseline"]
    for variant, m in metrics.items():
        m["auc_lift"] = m["auc"] / base["auc"] - 1
        m[f"f1@{K[-1]}_lift"] = m[f"f1@{K[-1]}"] / base[f"f1@{K[-1]}"] - 1 if base[f"f1@{K[-1]}"] else None
        diff = np.array(details["per_member_recall"][variant]) - np.array(details["per_member_recall"]["baseline"])
        m[f"recall@{K[-1]}_diff_se"] = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else None
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    details |= {"members": {"fit": int(fit_members.size), "scored": int(scored.size)}, "open_jobs": job_index.size,
                "members_with_vectors": int(keys.size), "config": asdict(config), "quick": quick,
                "mean_clauses": {name: float(np.mean([len(clauses[m][name]) for m in members.tolist()]))
                                 for name in clauses[int(members[0])]},
                "examples": [{"member_id": m, "clauses": {name: [[c.kind, list(map(list, c.conditions))]
                                                                 for c in cs[:6]]
                                                          for name, cs in clauses[m].items()}}
                             for m in scored[:2].tolist()]}
    details.pop("per_member_recall")
    (out / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    _report(metrics, details, out)
    return metrics


def _report(metrics: dict, details: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    fig, ax = plt.subplots(figsize=(11, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [metrics[v][f"recall@{K[-1]}"] for v in names], 0.4, label=f"recall@{K[-1]}")
    ax.bar(x + 0.2, [metrics[v]["auc"] for v in names], 0.4, label="AUC")
    ax.set_xticks(x, names, rotation=20, fontsize=7, ha="right")
    ax.legend(fontsize=8)
    ax.set_title("candidate selection by clause sources")
    fig.tight_layout()
    fig.savefig(out / "candidate_selection.png", dpi=110)
    plt.close(fig)
    k, last = K[0], K[-1]
    lines = ["# Candidate selection with personalized clauses (seed 002 §4.4, §5.5, Table 6)", "",
             f"{details['open_jobs']:,} jobs open in the test week indexed (tantivy); clause weights fit on "
             f"{details['members']['fit']:,} members' test-week applications, scored on "
             f"{details['members']['scored']:,} other members'. Mean clauses per member: " +
             ", ".join(f"{n} {v:.1f}" for n, v in details["mean_clauses"].items()) + ".", "",
             f"| clauses | recall@{k} | precision@{k} | F1@{k} | recall@{last} | precision@{last} | F1@{last} | AUC | "
             f"AUC vs baseline | F1@{last} vs baseline | 002 (AUC, F1) |", "|" + "---|" * 11]
    for v, m in metrics.items():
        seed_row = SEED_TABLE6.get(v)
        lines.append(f"| {v} | {fmt(m[f'recall@{k}'])} | {fmt(m[f'precision@{k}'], 4)} | {fmt(m[f'f1@{k}'], 4)} | "
                     f"{fmt(m[f'recall@{last}'])} | {fmt(m[f'precision@{last}'], 4)} | {fmt(m[f'f1@{last}'], 4)} | "
                     f"{fmt(m['auc'], 4)} | {m['auc_lift']:+.2%} | "
                     f"{'–' if m[f'f1@{last}_lift'] is None else format(m[f'f1@{last}_lift'], '+.2%')} | "
                     f"{'–' if seed_row is None else f'{seed_row[0]:+.2%}, {seed_row[1]:+.2%}'} |")
    ft, bert, alone = (metrics[v] for v in ("baseline+fasttext+slice+sanns", "baseline+bert_ft+slice+sanns",
                                           "fasttext+slice+sanns"))
    se = ft[f"recall@{last}_diff_se"]
    lines += ["", "002's findings here:",
              f"* baseline + predicted + SANNS beats the baseline on AUC and F1 — "
              f"**{'holds' if ft['auc_lift'] > 0 and (ft[f'f1@{last}_lift'] or 0) > 0 else 'does not hold'}** "
              f"(fastText: {ft['auc_lift']:+.2%} AUC, {ft[f'f1@{last}_lift']:+.2%} F1@{last}; recall@{last} "
              f"{ft[f'recall@{last}'] - metrics['baseline'][f'recall@{last}']:+.3f} ± {se:.3f} paired SE);",
              f"* predicted entities + SANNS alone are worse than the baseline — "
              f"**{'holds' if alone['auc_lift'] < 0 else 'does not hold'}** ({alone['auc_lift']:+.2%} AUC);",
              f"* the fastText variant is at least as good as BERT_FT — "
              f"**{'holds' if ft['auc'] >= bert['auc'] else 'does not hold'}** ({ft['auc']:.4f} vs {bert['auc']:.4f} "
              "AUC)."]
    if f"recall@{last}_drifted" in metrics["baseline"]:
        b_d, b_n = (metrics["baseline"][f"recall@{last}_{seg}"] for seg in ("drifted", "not_drifted"))
        f_d, f_n = (ft[f"recall@{last}_{seg}"] for seg in ("drifted", "not_drifted"))
        lines += [f"* members whose intent drifted ({details['scored_drifted']:,} scored): recall@{last} per member "
                  f"{b_d:.3f} with the profile clauses, {f_d:.3f} with baseline + fastText+Slice + SANNS "
                  f"({f_d - b_d:+.3f}); the rest {b_n:.3f} -> {f_n:.3f} ({f_n - b_n:+.3f}). A profile is blind to a "
                  "change of intent; the predicted entities are read from what the member did."]
    lines += ["", "Learned clause weights (per matched clause; 0 drops the kind):", ""]
    for v, w in details["weights"].items():
        lines.append(f"* {v}: " + ", ".join(f"{kind} {val:.2f}" for kind, val in w["weights"].items()))
    lines += ["", "![recall and AUC](candidate_selection.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
