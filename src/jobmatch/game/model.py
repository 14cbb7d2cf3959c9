"""GAME: a fixed effect plus per-entity random effects, fit by coordinate descent with offsets (Photon ML's GAME).

    logit P(y=1) = offset + f_global(x) + f_member[m](x_job) + f_job[j](x_member)

Each coordinate is refit with the scores of all the others as offsets; after every coordinate update the model is
scored on validation data and the best snapshot is kept. Data is any table (pyarrow or a dict of numpy arrays)
with a 0/1 response column, optional weight and offset columns, entity-id columns and feature columns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import pyarrow as pa

from jobmatch.metrics import auc
from jobmatch.game.solvers import fit_batched, fit_lbfgs, softplus
from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 1
Table = Union[pa.Table, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Coordinate:
    name: str
    type: Literal["fixed", "random"]
    features: tuple[str, ...]
    l2: float = 1.0
    entity: str | None = None  # random effects: the entity-id column
    min_samples: int = 1  # entities with fewer rows get no model (they score 0)
    max_samples: int | None = None  # entities with more rows are reservoir-sampled, weights scaled up
    # A random effect is a deviation from the global model, so its intercept is shrunk too by default; the fixed
    # effect's intercept is not regularized.
    regularize_intercept: bool | None = None

    def __post_init__(self) -> None:
        if self.type not in ("fixed", "random"):
            raise ValueError(f"coordinate {self.name!r}: type must be 'fixed' or 'random', got {self.type!r}")
        if self.type == "random" and not self.entity:
            raise ValueError(f"coordinate {self.name!r}: a random effect needs an entity column")
        if self.l2 < 0:
            raise ValueError(f"coordinate {self.name!r}: l2 must be >= 0, got {self.l2}")

    @property
    def shrink_intercept(self) -> bool:
        return self.type == "random" if self.regularize_intercept is None else self.regularize_intercept


@dataclass
class CoordinateModel:
    """Coefficients (intercept first) and variances; a fixed effect has one row, a random effect one per entity."""

    coordinate: Coordinate
    entity_ids: np.ndarray  # sorted; empty for a fixed effect
    coef: np.ndarray
    var: np.ndarray

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in `entity_ids`, -1 where the entity has no model."""
        if self.entity_ids.size == 0:
            return np.full(ids.size, -1)
        pos = np.clip(np.searchsorted(self.entity_ids, ids), 0, self.entity_ids.size - 1)
        return np.where(self.entity_ids[pos] == ids, pos, -1)

    def score(self, data: Table) -> np.ndarray:
        X = design(data, self.coordinate.features)
        if self.coordinate.type == "fixed":
            return X @ self.coef[0]
        rows = self.rows_of(_column(data, self.coordinate.entity))
        out = np.einsum("nd,nd->n", X, self.coef[np.maximum(rows, 0)])
        return np.where(rows >= 0, out, 0.0)  # an entity without a model contributes 0


def _column(data: Table, name: str) -> np.ndarray:
    try:
        col = data[name]
    except KeyError:
        raise KeyError(f"column {name!r} is not in the data") from None
    return col.to_numpy() if isinstance(col, (pa.ChunkedArray, pa.Array)) else np.asarray(col)


def design(data: Table, features: tuple[str, ...]) -> np.ndarray:
    n = len(_column(data, features[0])) if features else _n_rows(data)
    return np.column_stack([np.ones(n)] + [_column(data, f).astype(float) for f in features])


def _n_rows(data: Table) -> int:
    return data.num_rows if isinstance(data, pa.Table) else len(next(iter(data.values())))


@dataclass
class Step:
    pass_: int
    coordinate: str
    auc: float | None
    objective: float
    seconds: float


@dataclass
class GameModel:
    """The estimator. Constructor arguments are the hyper-parameters; `fit` sets the learned `coordinates_`."""

    coordinates: list[Coordinate]
    passes: int = 2
    response: str = "response"
    weight: str | None = None
    offset: str | None = None
    seed: int = 0
    coordinates_: dict[str, CoordinateModel] = field(default_factory=dict, init=False, repr=False)
    steps_: list[Step] = field(default_factory=list, init=False, repr=False)
    best_auc_: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.coordinates]
        if len(set(names)) != len(names):
            raise ValueError(f"coordinates: duplicate names in {names}")

    # -- scoring -------------------------------------------------------------------------------------------------
    def contributions(self, data: Table) -> dict[str, np.ndarray]:
        return {name: m.score(data) for name, m in self.coordinates_.items()}

    def decision_function(self, data: Table) -> np.ndarray:
        out = self._offset(data)
        for part in self.contributions(data).values():
            out = out + part
        return out

    def predict_proba(self, data: Table) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision_function(data)))

    def _offset(self, data: Table) -> np.ndarray:
        return _column(data, self.offset).astype(float) if self.offset else np.zeros(_n_rows(data))

    # -- training ------------------------------------------------------------------------------------------------
    def fit(self, train: Table, validation: Table | None = None, prior: GameModel | None = None,
            update: Mapping[str, np.ndarray | None] | None = None, keep_best: bool = True,
            say: Callable[[str], None] | None = None) -> GameModel:
        """Coordinate descent.

        prior: a previously fit model. Its coefficients start the descent (warm start) and, for random effects,
          act as a Gaussian prior (mean = old coefficients, variance = old variances) on the entities refit now.
        update: per coordinate name, the entity ids to refit (random effects) or None to keep the coordinate as
          it is in `prior` (incremental training retrains only entities with new data, the global model rarely).
        """
        say = say or (lambda _m: None)
        y = _column(train, self.response).astype(float)
        if not np.isin(y, (0.0, 1.0)).all():
            bad = y[~np.isin(y, (0.0, 1.0))][0]
            raise ValueError(f"{self.response}: the response must be 0 or 1, found {bad!r}")
        w = _column(train, self.weight).astype(float) if self.weight else np.ones(y.size)
        base = self._offset(train)
        rng = np.random.default_rng(self.seed)
        update = dict(update or {})
        self.coordinates_ = dict(prior.coordinates_) if prior is not None else {}
        scores = {c.name: (self.coordinates_[c.name].score(train) if c.name in self.coordinates_
                           else np.zeros(y.size)) for c in self.coordinates}
        self.steps_, best, best_auc = [], None, -np.inf
        for p in range(1, self.passes + 1):
            for c in self.coordinates:
                if c.name in update and update[c.name] is None:
                    continue
                start = time.perf_counter()
                offset = base + sum(s for name, s in scores.items() if name != c.name)
                old = self.coordinates_.get(c.name)
                if c.type == "fixed":
                    model = _fit_fixed(c, train, y, w, offset, old, prior is not None and c.name in update)
                else:
                    model = _fit_random(c, train, y, w, offset, old, update.get(c.name), rng,
                                        use_prior=prior is not None)
                self.coordinates_[c.name] = model
                scores[c.name] = model.score(train)
                total = base + sum(scores.values())
                value = float(w @ (softplus(total) - y * total)) + self._penalty()
                val_auc = None
                if validation is not None:
                    val_auc = auc(_column(validation, self.response), self.decision_function(validation))
                self.steps_.append(Step(p, c.name, val_auc, value, time.perf_counter() - start))
                say(f"pass {p} {c.name}: objective {value:.4f}" + (f", validation AUC {val_auc:.4f}" if val_auc
                                                                       is not None else ""))
                if val_auc is not None and val_auc > best_auc:
                    best_auc, best = val_auc, dict(self.coordinates_)
        if keep_best and best is not None:
            self.coordinates_ = best
        self.best_auc_ = None if best is None else float(best_auc)
        return self

    def _penalty(self) -> float:
        total = 0.0
        for m in self.coordinates_.values():
            lam = _lambda(m.coordinate, m.coef.shape[1])
            total += 0.5 * float((lam * m.coef ** 2).sum())
        return total

    # -- persistence ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "model.json", type(self), FORMAT_VERSION,
                   params={"coordinates": [asdict(c) for c in self.coordinates], "passes": self.passes,
                           "response": self.response, "weight": self.weight, "offset": self.offset,
                           "seed": self.seed},
                   fitted=list(self.coordinates_), best_auc=self.best_auc_, steps=[asdict(s) for s in self.steps_])
        arrays = {}
        for name, m in self.coordinates_.items():
            arrays[f"{name}/entity_ids"] = m.entity_ids
            arrays[f"{name}/coef"] = m.coef
            arrays[f"{name}/var"] = m.var
        np.savez(d / "coefficients.npz", **arrays)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> GameModel:
        d = Path(directory)
        meta = read_meta(d / "model.json", cls, FORMAT_VERSION)
        params = dict(meta["params"])
        params["coordinates"] = [Coordinate(**{**c, "features": tuple(c["features"])}) for c in params["coordinates"]]
        model = cls(**params)
        by_name = {c.name: c for c in model.coordinates}
        with np.load(d / "coefficients.npz", allow_pickle=False) as z:
            for name in meta["fitted"]:
                model.coordinates_[name] = CoordinateModel(by_name[name], z[f"{name}/entity_ids"],
                                                           z[f"{name}/coef"], z[f"{name}/var"])
        model.best_auc_ = meta["best_auc"]
        model.steps_ = [Step(**s) for s in meta["steps"]]
        return model


def _lambda(c: Coordinate, d: int) -> np.ndarray:
    lam = np.full(d, c.l2)
    if not c.shrink_intercept:
        lam[0] = 0.0
    return lam


def _fit_fixed(c: Coordinate, data: Table, y, w, offset, old: CoordinateModel | None,
               use_prior: bool) -> CoordinateModel:
    X = design(data, c.features)
    lam = _lambda(c, X.shape[1])
    mu = np.zeros(X.shape[1])
    if use_prior and old is not None:
        lam, mu = 1.0 / old.var[0], old.coef[0]
    x0 = old.coef[0] if old is not None else None
    coef, var = fit_lbfgs(X, y, w, offset, lam, mu, x0)
    return CoordinateModel(c, np.zeros(0, np.int64), coef[None, :], var[None, :])


def reservoir(groups: np.ndarray, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most `cap` rows per group, uniformly at random; returns (kept row indices, weight multiplier)."""
    key = rng.random(groups.size)
    order = np.lexsort((key, groups))
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    sizes = np.diff(np.r_[starts, g.size])
    rank = np.arange(g.size) - np.repeat(starts, sizes)
    kept = order[rank < cap]
    scale = np.repeat(np.maximum(sizes / cap, 1.0), sizes)[rank < cap]
    return kept, scale


def _fit_random(c: Coordinate, data: Table, y, w, offset, old: CoordinateModel | None, only: np.ndarray | None,
                rng: np.random.Generator, use_prior: bool) -> CoordinateModel:
    ids = _column(data, c.entity)
    X = design(data, c.features)
    uniq, codes, counts = np.unique(ids, return_inverse=True, return_counts=True)
    eligible = counts >= c.min_samples
    if only is not None:
        eligible &= np.isin(uniq, only)
    rows = np.flatnonzero(eligible[codes])
    weights = w[rows]
    if c.max_samples is not None:
        kept, scale = reservoir(codes[rows], c.max_samples, rng)
        rows, weights = rows[kept], weights[kept] * scale
    fit_ids = uniq[eligible]
    local = np.searchsorted(fit_ids, ids[rows])
    d = X.shape[1]
    lam = np.tile(_lambda(c, d), (fit_ids.size, 1))
    mu = np.zeros((fit_ids.size, d))
    x0 = None
    if old is not None:
        old_rows = old.rows_of(fit_ids)
        has = old_rows >= 0
        x0 = np.zeros((fit_ids.size, d))
        x0[has] = old.coef[old_rows[has]]
        if use_prior:
            mu[has] = old.coef[old_rows[has]]
            lam[has] = 1.0 / old.var[old_rows[has]]
    coef, var = fit_batched(local, fit_ids.size, X[rows], y[rows], weights, offset[rows], lam, mu, x0)
    if old is not None and only is not None:
        # entities not refit keep their previous model
        keep = ~np.isin(old.entity_ids, fit_ids)
        all_ids = np.concatenate([old.entity_ids[keep], fit_ids])
        order = np.argsort(all_ids, kind="stable")
        return CoordinateModel(c, all_ids[order], np.vstack([old.coef[keep], coef])[order],
                               np.vstack([old.var[keep], var])[order])
    return CoordinateModel(c, fit_ids, coef, var)


__all__ = ["Coordinate", "CoordinateModel", "GameModel", "Step", "design", "reservoir"]
