"""Intent study (seed 002): query-suggestion precision and coverage of BERT_FT vs fastText, with Slice and with an
end-to-end sigmoid layer, as three things vary:

- document richness: what an activity document carries of each job (titles only; + company tokens, 002's
  Figure 2 and the default; + the job's skills);
- label-space size: how many occupations the market has (the built-in taxonomy's 42; O*NET 29.3 cut to 120, 400
  or 900 occupations — `SimConfig.max_occupations` — which multiplies the distinct queries and titles that are
  the labels, so coverage@100 no longer saturates);
- pre-training budget: BERT's masked-LM epochs over the training documents (0 = fine-tuned from random weights),
  reported as tokens seen.

Each point is simulated, ingested through validated ingest, sessionized and evaluated by `evaluate_intent` (the
protocol of `jobmatch evaluate intent`: members split by id into train/validation/test, labels counted on training
members only). Figures are D1's (the labels of a member's held-out last 20% of sessions: what they will look for
next). The O*NET points read the tables from JOBMATCH_ONET_PATH; without it they fail with that message and the
rest of the study still runs. No GPU was used for the grid below (none was lent); on one, the same code runs the
pre-training on it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from jobmatch.config import Settings
from jobmatch.evaluate.intent import evaluate_intent
from jobmatch.intent.config import IntentConfig
from jobmatch.simulate import SimConfig
from jobmatch.studies.base import Say, Study, seed_mean, series_of, simulated_log

BUILTIN_OCCUPATIONS = 42
QUICK_MEMBERS, BASE_MEMBERS = 1_200, 2_500
DAYS = 21
# metric suffix -> evaluate_intent's variant
VARIANT = {"bert_ft_slice": "bert_ft+slice", "fasttext_slice": "fasttext+slice", "fasttext_e2e": "fasttext+e2e",
           "bert_e2e": "bert+e2e", "bert_pt_slice": "bert_pt+slice", "copy_context": "copy-context"}
MODELS = ("bert_ft_slice", "fasttext_slice", "fasttext_e2e", "bert_e2e")
METRICS = (tuple(f"p1_{v}" for v in VARIANT) + tuple(f"cov5_{v}" for v in MODELS)
           + tuple(f"cov100_{v}" for v in MODELS) + ("p1_gap_bert_ft_fasttext", "labels", "pretrain_mtokens"))


def config_for(series: str, x: object, quick: bool) -> tuple[IntentConfig, str, int | None]:
    """(the intent config, the taxonomy spec, max_occupations) of a grid point."""
    base = replace(IntentConfig.quick(), max_members=None) if quick else IntentConfig(
        name="study", labels=1000, vocab=4000, finetune_epochs=1, fasttext_dim=64, fasttext_epochs=3, e2e_epochs=10,
        bert=IntentConfig.main().bert)
    if series == "document":
        return replace(base, document=str(x)), "builtin", None
    if series == "pretrain":
        return replace(base, pretrain_epochs=int(x)), "builtin", None
    if series == "occupations":
        if int(x) == BUILTIN_OCCUPATIONS:
            return base, "builtin", None
        onet = Settings().onet_path
        if onet is None:
            raise ValueError(f"intent study: the point occupations={x} simulates an O*NET market; set "
                             "JOBMATCH_ONET_PATH to a directory of the O*NET tables (the other points need nothing)")
        return base, f"onet:{onet}", int(x)
    raise ValueError(f"intent study: unknown series {series!r} (expected document, occupations or pretrain)")


def run_point(value: object, seed: int, work: Path, quick: bool, say: Say) -> dict[str, float]:
    series, x = series_of(value)
    config, taxonomy, occupations = config_for(series, x, quick)
    sim = {"max_occupations": occupations} if occupations else {}
    cfg = SimConfig(members=QUICK_MEMBERS if quick else BASE_MEMBERS, days=DAYS, seed=seed, **sim)
    with simulated_log(cfg, work, say, sessionize=True, taxonomy=taxonomy) as (log, _truth):
        say(f"evaluate intent ({config.document}, {config.pretrain_epochs} pre-training epoch(s))")
        m = evaluate_intent(log, work / "eval", config, seed=seed, say=say, datasets=("D1",))
    details = json.loads((work / "eval" / "details.json").read_text())
    d1, cov5 = m["D1"], details["coverage@5"]["D1"]
    out = {f"p1_{k}": d1[v]["p@1"] for k, v in VARIANT.items()}
    out |= {f"cov5_{k}": cov5[VARIANT[k]] for k in MODELS}
    out |= {f"cov100_{k}": d1[VARIANT[k]]["coverage"] for k in MODELS}
    out["p1_gap_bert_ft_fasttext"] = out["p1_bert_ft_slice"] - out["p1_fasttext_slice"]  # paired: one test set
    out |= {"labels": details["labels"], "pretrain_mtokens": details["pretrain_tokens"] / 1e6,
            "p1_se_bert_ft_minus_fasttext": details["bert_ft_minus_fasttext_slice_p@1_se"]["D1"],
            "test_members": details["test_members"]}
    return out


def conclude(rows: list[dict]) -> str:
    parts = []
    for series, what in (("document", "document content"), ("occupations", "occupations in the market"),
                         ("pretrain", "pre-training epochs")):
        xs = [x for s, x in dict.fromkeys(series_of(r["value"]) for r in rows) if s == series]
        if not xs:
            continue
        cells = []
        for x in xs:
            v = (series, x)
            gap = seed_mean(rows, v, "p1_bert_ft_slice") - seed_mean(rows, v, "p1_fasttext_slice")
            extra = (f", {seed_mean(rows, v, 'pretrain_mtokens'):.2f}M tokens" if series == "pretrain" else
                     f", {seed_mean(rows, v, 'labels'):.0f} labels" if series == "occupations" else "")
            cells.append(f"{x}: BERT_FT+Slice {seed_mean(rows, v, 'p1_bert_ft_slice'):.3f} vs fastText+Slice "
                         f"{seed_mean(rows, v, 'p1_fasttext_slice'):.3f} ({gap:+.3f}), coverage@5 "
                         f"{seed_mean(rows, v, 'cov5_bert_ft_slice'):.3f} vs "
                         f"{seed_mean(rows, v, 'cov5_fasttext_slice'):.3f}, "
                         f"coverage@100 {seed_mean(rows, v, 'cov100_bert_ft_slice'):.3f} vs "
                         f"{seed_mean(rows, v, 'cov100_fasttext_slice'):.3f}{extra}")
        parts.append(f"By {what} — " + "; ".join(cells) + ".")
        gaps = [seed_mean(rows, (series, x), "p1_gap_bert_ft_fasttext") for x in xs]
        copied = [x for x in xs if seed_mean(rows, (series, x), "p1_copy_context") >
                  max(seed_mean(rows, (series, x), f"p1_{k}") for k in MODELS)]
        parts.append(f"Along {what} BERT_FT+Slice minus fastText+Slice goes {gaps[0]:+.3f} -> {gaps[-1]:+.3f}"
                     + (f"; copying the member's own context beats every model at {', '.join(map(str, copied))}"
                        if copied else "") + ".")
    rows = [r for r in rows if "same_as" not in r]  # each run once in the totals
    wins = sum(r["p1_bert_ft_slice"] > r["p1_fasttext_slice"] for r in rows)
    gaps = np.array([r["p1_bert_ft_slice"] - r["p1_fasttext_slice"] for r in rows])
    slice_wins = sum(min(r["cov5_bert_ft_slice"], r["cov5_fasttext_slice"]) >
                     max(r["cov5_bert_e2e"], r["cov5_fasttext_e2e"]) for r in rows)
    return ("D1 (next sessions' queries and applied titles) precision@1 and Suggestion Coverage; 002 reports "
            "BERT_FT beating fastText clearly, and Slice covering more labels than e2e. " + " ".join(parts)
            + f" Over all {len(rows)} runs BERT_FT+Slice beats fastText+Slice in {wins} (mean difference "
            f"{gaps.mean():+.3f}, range {gaps.min():+.3f} to {gaps.max():+.3f}); both Slice variants cover more "
            f"labels in their top 5 than both e2e variants in {slice_wins} of {len(rows)}.")


STUDY = Study(
    name="intent",
    knob="document content | max_occupations (O*NET) | BERT pre-training epochs (three sweeps)",
    grid=(("document", "titles"), ("document", "titles+companies"), ("document", "titles+companies+skills"),
          ("occupations", BUILTIN_OCCUPATIONS), ("occupations", 120), ("occupations", 400), ("occupations", 900),
          ("pretrain", 0), ("pretrain", 1), ("pretrain", 3)),
    quick_grid=(("document", "titles"), ("document", "titles+companies"), ("pretrain", 0), ("pretrain", 1)),
    seeds=(1, 2, 3),  # 8 distinct points x 3 seeds: about 25 minutes on 2 cores
    quick_seeds=(1,),
    # the default market and config, shared by the three sweeps
    same_as=((("occupations", BUILTIN_OCCUPATIONS), ("document", "titles+companies")),
             (("pretrain", 1), ("document", "titles+companies"))),
    run_point=run_point,
    metrics=METRICS,
    conclude=conclude,
    title="User intent (seed 002): BERT_FT vs fastText vs documents, label space and pre-training budget",
    panels=(("D1 P@1", tuple(f"p1_{v}" for v in (*MODELS, "copy_context"))),
            ("D1 P@1, BERT_FT+Slice minus fastText+Slice", ("p1_gap_bert_ft_fasttext",)),
            ("coverage@5", tuple(f"cov5_{v}" for v in MODELS)),
            ("coverage@100", tuple(f"cov100_{v}" for v in MODELS))),
)
