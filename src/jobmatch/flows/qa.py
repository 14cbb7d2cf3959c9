"""The daily Qualified Applicant flow: fresh labels -> incremental retrain -> quality gate -> publish.

State lives in HOME/qa/: one saved model per run (`models/<as-of>/`) and `state.json` (what is published, when
the global model was last refit, which labels the last model was trained on). Coefficients are published to the
feature store as one dataset, `qa/coefficients` (keys `global`, `m:<member>`, `j:<job>`; float32 vectors,
intercept first), plus `qa/meta` (feature names); each push is an atomic version swap, and `jobmatch qa rollback`
puts the previous version back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.metrics import auc
from jobmatch.game.model import GameModel
from jobmatch.labels import DAY_US, applications, collect_labels
from jobmatch.qa import QAFeaturizer, label_keys, qa_coordinates, subset_rows
from jobmatch.flows.state import FlowState, day_end_us
from jobmatch.store import FeatureStore

COEFFICIENTS, META = "qa/coefficients", "qa/meta"


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
    version = store.push(COEFFICIENTS, items)
    store.push(META, {"meta": {"coefficients_version": version, "as_of": as_of,
                               "global_features": list(model.coordinates_["global"].coordinate.features),
                               "member_features": list(featurizer.job_features),
                               "job_features": list(featurizer.member_features)}})
    return version


def rollback(store: FeatureStore) -> int:
    version = store.rollback(COEFFICIENTS)
    store.rollback(META)
    return version


def run_qa(data: str | Path, home: str | Path, store: FeatureStore, as_of: datetime,
           cfg: QAFlowConfig = QAFlowConfig()) -> dict:
    """One daily run as of the end of `as_of` (UTC). Returns what it decided and why."""
    data, qa_home = Path(data), Path(home) / "qa"
    flow = FlowState(qa_home)
    state = flow.data
    as_of, cutoff = day_end_us(as_of)
    tag = flow.check_after(as_of)

    t = {n: pq.read_table(data / f"{n}.parquet") for n in ("events", "feedback", "jobs", "members", "projects")}
    featurizer = QAFeaturizer(t["jobs"], t["members"], t["projects"], seed=cfg.seed)
    labels = collect_labels(applications(t["events"], t["projects"]), t["feedback"], cutoff)
    known = labels.filter(labels["label"].is_valid())
    rows = featurizer.features(known["project_id"].to_numpy(), known["member_id"].to_numpy())
    rows["response"] = known["label"].to_numpy().astype(np.int8)
    applied = known["applied_at"].cast(pa.int64()).to_numpy()
    held_out = applied >= cutoff - cfg.validation_days * DAY_US
    train, val = subset_rows(rows, ~held_out), subset_rows(rows, held_out)
    if train["response"].size == 0 or val["response"].size == 0 or np.unique(val["response"]).size < 2:
        raise ValueError(f"as_of: {tag} leaves no usable training or validation labels")

    coords = qa_coordinates(featurizer)
    current = GameModel.load(qa_home / "models" / state["published"]) if state.get("published") else None
    if current is None:
        model, mode = GameModel(coords, passes=3, seed=cfg.seed).fit(train, val), "full"
    else:
        with np.load(qa_home / "models" / state["published"] / "labels.npz") as z:
            seen = z["keys"]
        new = ~np.isin(label_keys(train), seen)
        days_since_global = (as_of.date() - datetime.fromisoformat(state["global_as_of"]).date()).days
        refit_global = days_since_global >= cfg.refit_global_days
        update = {"global": np.array([]) if refit_global else None,
                  "member": np.unique(train["member_id"][new]), "job": np.unique(train["job_id"][new])}
        model = GameModel(coords, passes=1, seed=cfg.seed).fit(subset_rows(train, new), prior=current, update=update,
                                                               keep_best=False)
        mode = "incremental" + (" (global refit)" if refit_global else "")
    new_auc = auc(val["response"], model.decision_function(val))
    old_auc = auc(val["response"], current.decision_function(val)) if current is not None else None
    publish_it = old_auc is None or new_auc >= old_auc - cfg.tolerance
    out = qa_home / "models" / tag
    model.save(out)
    np.savez(out / "labels.npz", keys=label_keys(train))
    decision = {"as_of": tag, "mode": mode, "train_labels": int(train["response"].size),
                "validation_labels": int(val["response"].size), "validation_auc": new_auc,
                "previous_validation_auc": old_auc, "published": publish_it}
    if publish_it:
        decision["version"] = publish(store, model, featurizer, tag)
        state["published"] = tag
        if current is None or mode.endswith("(global refit)"):
            state["global_as_of"] = tag
    else:
        decision["reason"] = (f"validation AUC {new_auc:.4f} is more than {cfg.tolerance} below the published "
                              f"model's {old_auc:.4f}; keeping version {store.current_version(COEFFICIENTS)}")
    state["last_as_of"] = tag
    state.setdefault("runs", []).append(decision)
    flow.save()
    return decision
