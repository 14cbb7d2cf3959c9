"""The daily Qualified Applicant flow: fresh labels -> incremental retrain -> quality gate -> publish.

Everything is read from the event log as of the end of the run's day. State lives in HOME/qa/: one saved model
per run (`models/<as-of>/`) and `state.json` (what is published, when the global model was last refit, which
labels the last model was trained on). A model is published as one manifest of the store's group `qa`, so its
coefficients, its feature names and the skill embedding its features were computed with become current together
(and `jobmatch qa rollback` puts the previous three back together): `qa/coefficients` (keys `global`,
`m:<member>`, `j:<job>`; float32 vectors, intercept first) and `qa/meta` (key `meta`: feature names, as-of,
`skill_basis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from jobmatch.flows.state import DAY_US, FlowContext, NotEnoughData
from jobmatch.game.model import GameModel
from jobmatch.labels import applications, collect_labels
from jobmatch.metrics import auc
from jobmatch.qa import (QAFeaturizer, catch_up_rows, incremental_fit, label_keys, new_labels, qa_coordinates,
                         subset_rows)
from jobmatch.store import FeatureStore

GROUP, COEFFICIENTS, META = "qa", "qa/coefficients", "qa/meta"
MIN_TRAIN_LABELS, MIN_VALIDATION_LABELS = 50, 20


@dataclass(frozen=True)
class QAFlowConfig:
    validation_days: int = 2  # applications of the last days before as-of are held out for the quality gate
    refit_global_days: int = 7
    tolerance: float = 0.005  # publish unless validation AUC drops by more than this
    seed: int = 0


def publish(store: FeatureStore, model: GameModel, featurizer: QAFeaturizer, as_of: str) -> int:
    items: dict[str, object] = {"global": model.coordinates_["global"].coef[0]}
    for name, prefix in (("member", "m:"), ("job", "j:")):
        m = model.coordinates_.get(name)
        if m is None:  # the best snapshot came before this coordinate was fit: it contributes nothing
            continue
        items.update({f"{prefix}{e}": m.coef[i] for i, e in enumerate(m.entity_ids.tolist())})
    meta = {"as_of": as_of, "global_features": list(model.coordinates_["global"].coordinate.features),
            "member_features": list(featurizer.job_features), "job_features": list(featurizer.member_features),
            "skill_basis": featurizer.skill_basis()}
    manifest = store.publish(GROUP, {COEFFICIENTS: items, META: {"meta": meta}}, meta={"as_of": as_of})
    return manifest.version


def rollback(store: FeatureStore) -> int:
    """The previous QA model (coefficients, feature names and skill embedding together) becomes current."""
    return store.rollback_group(GROUP).version


def training_rows(ctx: FlowContext, featurizer: QAFeaturizer | None = None, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], QAFeaturizer]:
    """Every application before the cutoff with its label as known at the cutoff (pending ones left out)."""
    snap = ctx.snapshot()
    jobs, members, projects = (snap.entities(k) for k in ("jobs", "members", "projects"))
    featurizer = featurizer or QAFeaturizer(jobs, members, projects, seed=seed)
    labels = collect_labels(applications(snap.events(["event_id", "member_id", "ts", "action", "job_id"]),
                                         projects), snap.feedback(), ctx.cutoff_us)
    known = labels.filter(labels["label"].is_valid())
    rows = featurizer.features(known["project_id"].to_numpy(), known["member_id"].to_numpy())
    rows["response"] = known["label"].to_numpy().astype(np.int8)
    rows["applied_at"] = known["applied_at"].cast(pa.int64()).to_numpy()
    return rows, featurizer


def run_qa(ctx: FlowContext, cfg: QAFlowConfig = QAFlowConfig()) -> dict:
    """One daily run. Returns what it decided and why."""
    flow = ctx.state("qa")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    state, tag = flow.data, ctx.day
    rows, featurizer = training_rows(ctx, seed=cfg.seed)
    held_out = rows["applied_at"] >= ctx.cutoff_us - cfg.validation_days * DAY_US
    train, val = subset_rows(rows, ~held_out), subset_rows(rows, held_out)
    for name, part, least in (("training", train, MIN_TRAIN_LABELS), ("validation", val, MIN_VALIDATION_LABELS)):
        if part["response"].size < least or np.unique(part["response"]).size < 2:
            raise NotEnoughData(f"qa: as of {tag} there are {part['response'].size} labelled {name} applications "
                                f"({int(part['response'].sum())} positive); the model needs at least {least} "
                                "with both outcomes (more days of applications and hirer feedback)")
    coords = qa_coordinates(featurizer)
    models = flow.home / "models"
    current = GameModel.load(models / state["published"]) if state.get("published") else None
    if current is None:
        model, mode = GameModel(coords, passes=3, seed=cfg.seed).fit(train, val), "full"
    else:
        with np.load(models / state["published"] / "labels.npz", allow_pickle=False) as z:
            seen = (z["project_id"], z["member_id"], z["response"])
        new = catch_up_rows(train, new_labels(train, seen), current)
        days_since_global = (ctx.as_of.date() - datetime.fromisoformat(state["global_as_of"]).date()).days
        if days_since_global >= cfg.refit_global_days:
            # a full retrain weekly: what the diagonal-variance prior loses each day cannot pile up (study qa: the
            # chain's week-4 gap to a daily full retrain shrinks from -0.0053 to -0.0026 AUC)
            model, mode = GameModel(coords, passes=3, seed=cfg.seed).fit(train, val), "full (weekly)"
        else:
            model, mode = incremental_fit(coords, train, new, current, cfg.seed), "incremental"
    new_auc = auc(val["response"], model.decision_function(val))
    old_auc = auc(val["response"], current.decision_function(val)) if current is not None else None
    publish_it = old_auc is None or new_auc >= old_auc - cfg.tolerance
    out = models / tag
    model.save(out)
    p, m, r = label_keys(train)
    np.savez(out / "labels.npz", project_id=p, member_id=m, response=r)
    decision = {"as_of": tag, "status": "ok", "mode": mode, "train_labels": int(train["response"].size),
                "validation_labels": int(val["response"].size), "validation_auc": new_auc,
                "previous_validation_auc": old_auc, "published": publish_it}
    if publish_it:
        decision["version"] = publish(ctx.store, model, featurizer, tag)
        state["published"] = tag
        if mode.startswith("full"):
            state["global_as_of"] = tag
    else:
        kept = ctx.store.manifest(GROUP)
        decision["reason"] = (f"validation AUC {new_auc:.4f} is more than {cfg.tolerance} below the published "
                              f"model's {old_auc:.4f}; keeping version {kept.version if kept else None}")
    return flow.finish(tag, decision)
