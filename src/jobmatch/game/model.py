"""GAME: a fixed effect plus per-entity random effects, fit by coordinate descent with offsets (Photon ML's GAME).

    logit P(y=1) = offset + f_global(x) + f_member[m](x_job) + f_job[j](x_member)

Each coordinate is refit with the scores of all the others as offsets, by Newton's method with the exact Hessian
(`solvers.fit_grouped`; a fixed effect with more than NEWTON_MAX_FEATURES features by L-BFGS), warm-started from its
previous coefficients. Design matrices, the random effects' rows grouped by entity and every coordinate's scores
are built once per `fit`, so a pass costs the solves plus a few whole-array operations. Validation data is
scored when asked — after every pass by default, after every coordinate update with validate="coordinate" —
from cached per-coordinate scores, and the best snapshot is kept. A coordinate with an `l2_grid` gets its l2
chosen on validation AUC the first time it is fit (strongest first, each fit warm-started from the last); later
passes keep it, so the descent stays a descent on one objective.

Data is any table (pyarrow or a dict of numpy arrays) with a 0/1 response column, optional weight and offset
columns, entity-id columns (integers or strings) and feature columns. Fitting runs with `threads` BLAS threads
(default: the cores this process may use) so that a shared machine is not oversubscribed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Union

import numpy as np
import pyarrow as pa
from scipy.special import expit
from threadpoolctl import threadpool_limits

from jobmatch.game.solvers import CHUNK_BYTES, PAIR_CACHE_BYTES, fit_grouped, fit_lbfgs, log_loss, pair_bytes
from jobmatch.metrics import auc
from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 2  # 2: string entity ids, the l2 each coordinate was fit with; version 1 files load too
NEWTON_MAX_FEATURES = 2048  # beyond this a fixed effect's d x d Hessian costs more than L-BFGS's iterations
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
    # when given, l2 is chosen from these values on validation AUC (and `l2` is unused)
    l2_grid: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in ("fixed", "random"):
            raise ValueError(f"coordinate {self.name!r}: type must be 'fixed' or 'random', got {self.type!r}")
        if self.type == "random" and not self.entity:
            raise ValueError(f"coordinate {self.name!r}: a random effect needs an entity column")
        if not self.l2 >= 0:
            raise ValueError(f"coordinate {self.name!r}: l2 must be >= 0, got {self.l2}")
        object.__setattr__(self, "l2_grid", tuple(float(v) for v in self.l2_grid))
        if not all(v >= 0 for v in self.l2_grid):
            raise ValueError(f"coordinate {self.name!r}: l2_grid values must be >= 0, got {list(self.l2_grid)}")

    @property
    def shrink_intercept(self) -> bool:
        return self.type == "random" if self.regularize_intercept is None else self.regularize_intercept


def as_ids(values: np.ndarray, column: str) -> np.ndarray:
    """Entity ids as int64 or fixed-width unicode: both sort, search and save without pickle."""
    v = np.asarray(values)
    if v.dtype.kind in "iu":
        if v.dtype == np.uint64 and v.size and v.max() > np.iinfo(np.int64).max:
            raise ValueError(f"column {column!r}: entity ids above 2**63 - 1")
        return v.astype(np.int64, copy=False)
    if v.dtype.kind == "U":
        return v
    if v.dtype.kind == "O":
        kinds = set(map(type, v))
        if kinds <= {str}:
            return v.astype(str)
        if type(None) in kinds:
            raise ValueError(f"column {column!r}: missing entity ids")
    raise ValueError(f"column {column!r}: entity ids must be integers or strings, got {v.dtype}")


@dataclass
class CoordinateModel:
    """Coefficients (intercept first) and variances; a fixed effect has one row, a random effect one per entity."""

    coordinate: Coordinate
    entity_ids: np.ndarray  # sorted; empty for a fixed effect
    coef: np.ndarray
    var: np.ndarray
    l2: float  # the l2 it was fit with (chosen from the coordinate's grid, or its l2)

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in `entity_ids`, -1 where the entity has no model."""
        if self.entity_ids.size == 0:
            return np.full(ids.size, -1)
        kind = {"U": "strings", "i": "integers"}
        if self.entity_ids.dtype.kind != ids.dtype.kind:
            theirs = kind.get(ids.dtype.kind, ids.dtype)
            raise ValueError(f"column {self.coordinate.entity!r}: the model's entity ids are "
                             f"{kind[self.entity_ids.dtype.kind]}, the data's are {theirs}")
        pos = np.clip(np.searchsorted(self.entity_ids, ids), 0, self.entity_ids.size - 1)
        return np.where(self.entity_ids[pos] == ids, pos, -1)

    @property
    def penalty(self) -> float:
        return 0.5 * float((_lambda(self.coordinate, self.coef.shape[1], self.l2) * self.coef ** 2).sum())

    def score(self, data: Table) -> np.ndarray:
        X = design(data, self.coordinate.features)
        return _apply(self, X, None if self.coordinate.type == "fixed" else
                      self.rows_of(as_ids(_column(data, self.coordinate.entity), self.coordinate.entity)))


def _apply(model: CoordinateModel, X: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The model's scores of design rows X; `rows`: each row's entity row in the model (-1: none)."""
    coef = model.coef.astype(X.dtype, copy=False)
    if rows is None:
        return X @ coef[0]
    if coef.shape[0] == 0:
        return np.zeros(X.shape[0], X.dtype)
    out = np.einsum("nd,nd->n", X, coef[np.maximum(rows, 0)])
    return np.where(rows >= 0, out, 0.0)  # an entity without a model contributes 0


def _column(data: Table, name: str) -> np.ndarray:
    try:
        col = data[name]
    except KeyError:
        raise KeyError(f"column {name!r} is not in the data") from None
    if isinstance(col, (pa.ChunkedArray, pa.Array)):
        return col.to_numpy(zero_copy_only=False) if isinstance(col, pa.Array) else col.to_numpy()
    return np.asarray(col)


def design(data: Table, features: tuple[str, ...], dtype: type = np.float64) -> np.ndarray:
    """[1, features...] per row."""
    cols = [_column(data, f) for f in features]
    X = np.empty((len(cols[0]) if cols else _n_rows(data), len(cols) + 1), dtype)
    step = max(1, CHUNK_BYTES // X[:1].nbytes)  # filled a block of rows at a time, which stays in cache
    for lo in range(0, X.shape[0], step):
        part = X[lo:lo + step]
        part[:, 0] = 1.0
        for j, col in enumerate(cols, start=1):
            part[:, j] = col[lo:lo + step]
    return X


def _n_rows(data: Table) -> int:
    return data.num_rows if isinstance(data, pa.Table) else len(next(iter(data.values())))


def _lambda(c: Coordinate, d: int, l2: float) -> np.ndarray:
    lam = np.full(d, l2)
    if not c.shrink_intercept:
        lam[0] = 0.0
    return lam


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class Step:
    pass_: int
    coordinate: str
    auc: float | None  # None where validation was not scored
    objective: float
    seconds: float
    l2: float | None = None


@dataclass
class GameModel:
    """The estimator. Constructor arguments are the hyper-parameters; `fit` sets the learned `coordinates_`.

    validate: score validation data after every "pass" or every "coordinate" update.
    threads: BLAS threads while fitting (None: the cores this process may use).
    dtype: precision of the per-row arithmetic while fitting; sums over rows, solves and the saved coefficients
      are float64 either way.
    tol: stop an entity's Newton iterations when its objective is predicted within tol (relative) of the minimum.
    """

    coordinates: list[Coordinate]
    passes: int = 2
    response: str = "response"
    weight: str | None = None
    offset: str | None = None
    seed: int = 0
    validate: Literal["pass", "coordinate"] = "pass"
    threads: int | None = None
    dtype: Literal["float32", "float64"] = "float32"
    tol: float = 1e-9
    coordinates_: dict[str, CoordinateModel] = field(default_factory=dict, init=False, repr=False)
    steps_: list[Step] = field(default_factory=list, init=False, repr=False)
    best_auc_: float | None = field(default=None, init=False)
    l2_grid_: dict[str, dict[float, float]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.coordinates]
        if len(set(names)) != len(names):
            raise ValueError(f"coordinates: duplicate names in {names}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if self.validate not in ("pass", "coordinate"):
            raise ValueError(f"validate must be 'pass' or 'coordinate', got {self.validate!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    # -- scoring -------------------------------------------------------------------------------------------------
    def contributions(self, data: Table) -> dict[str, np.ndarray]:
        return {name: m.score(data) for name, m in self.coordinates_.items()}

    def decision_function(self, data: Table) -> np.ndarray:
        out = self._offset(data)
        for part in self.contributions(data).values():
            out = out + part
        return out

    def predict_proba(self, data: Table) -> np.ndarray:
        return expit(self.decision_function(data))

    def _offset(self, data: Table) -> np.ndarray:
        return _column(data, self.offset).astype(float) if self.offset else np.zeros(_n_rows(data))

    def _response(self, data: Table) -> np.ndarray:
        y = _column(data, self.response).astype(float)
        if not np.isin(y, (0.0, 1.0)).all():
            bad = y[~np.isin(y, (0.0, 1.0))][0]
            raise ValueError(f"{self.response}: the response must be 0 or 1, found {bad.item()!r}")
        return y

    # -- training ------------------------------------------------------------------------------------------------
    def fit(self, train: Table, validation: Table | None = None, prior: GameModel | None = None,
            update: Mapping[str, np.ndarray | None] | None = None, keep_best: bool = True,
            say: Callable[[str], None] | None = None, max_prior_precision: float | None = None) -> GameModel:
        """Coordinate descent.

        prior: a previously fit model. Its coefficients start the descent (warm start) and, for random effects,
          act as a Gaussian prior (mean = old coefficients, variance = old variances) on the entities refit now.
        update: per coordinate name, the entity ids to refit (random effects) or None to keep the coordinate as
          it is in `prior` (incremental training retrains only entities with new data, the global model rarely);
          a fixed effect named here is refit with its prior coefficients as the Gaussian prior.
        max_prior_precision: cap on the prior's precision (1 / variance) per coefficient: bounds how much the past
          can outweigh new labels, for when the diagonal variances (1 / diag(Hessian)) over-state what is known.
          Off by default: on the simulator every cap tried lowered the daily chain's AUC (issue 15, study qa).
        """
        if max_prior_precision is not None and not max_prior_precision > 0:
            raise ValueError(f"max_prior_precision must be > 0, got {max_prior_precision}")
        with threadpool_limits(limits=self.threads or available_cores()):
            return self._fit(train, validation, prior, dict(update or {}), keep_best, say or (lambda _m: None),
                             max_prior_precision)

    def _fit(self, train: Table, validation: Table | None, prior: GameModel | None,
             update: dict[str, np.ndarray | None], keep_best: bool, say: Callable[[str], None],
             max_prior_precision: float | None = None) -> GameModel:
        gridded = [c.name for c in self.coordinates if c.l2_grid]
        if gridded and validation is None:
            raise ValueError(f"coordinate {gridded[0]!r}: an l2 grid needs validation data")
        y = self._response(train)
        w = _column(train, self.weight).astype(float) if self.weight else np.ones(y.size)
        rng = np.random.default_rng(self.seed)
        self.coordinates_ = dict(prior.coordinates_) if prior is not None else {}
        active = [c for c in self.coordinates if not (c.name in update and update[c.name] is None)]
        designs = {c.name: _Design(c, train, self._dtype_of(c)) for c in self.coordinates
                   if c in active or c.name in self.coordinates_}
        scores = {c.name: (designs[c.name].score(self.coordinates_[c.name]) if c.name in self.coordinates_
                           else np.zeros(y.size)) for c in self.coordinates}
        total = self._offset(train) + sum(scores.values())
        val = _Validation(validation, self._response(validation), self._offset(validation)) \
            if validation is not None else None
        fits: dict[str, _FixedFit | _RandomFit] = {}
        chosen: dict[str, float] = {}
        self.steps_, self.l2_grid_, best, best_auc = [], {}, None, -np.inf
        for p in range(1, self.passes + 1):
            for c in active:
                start = time.perf_counter()
                offset = total - scores[c.name]
                current = self.coordinates_.get(c.name)
                prior_model = prior.coordinates_.get(c.name) if prior is not None and (
                    c.type == "random" or c.name in update) else None
                if prior_model is not None:
                    prior_model = cap_prior_precision(prior_model, max_prior_precision)
                if c.name not in fits:
                    fits[c.name] = _FixedFit(c, designs[c.name], y, w, self.tol) if c.type == "fixed" else \
                        _RandomFit(c, designs[c.name], y, w, update.get(c.name), rng, self.tol,
                                   known=prior.coordinates_[c.name].entity_ids
                                   if prior is not None and c.name in prior.coordinates_ else None)
                if c.l2_grid and prior_model is None and c.name not in chosen:
                    (model, scores[c.name]), self.l2_grid_[c.name] = self._choose_l2(c, fits[c.name], offset,
                                                                                     current, val)
                    chosen[c.name] = model.l2
                else:
                    l2 = chosen.get(c.name, prior_model.l2 if prior_model is not None else c.l2)
                    model, scores[c.name] = fits[c.name].fit(offset, l2, current, prior_model)
                self.coordinates_[c.name] = model
                total = offset + scores[c.name]
                value = float(w @ log_loss(total, y)) + sum(m.penalty for m in self.coordinates_.values())
                val_auc = None
                if val is not None and (self.validate == "coordinate" or c is active[-1]):
                    val_auc = val.auc(self.coordinates_)
                self.steps_.append(Step(p, c.name, val_auc, value, time.perf_counter() - start, model.l2))
                say(f"pass {p} {c.name}: objective {value:.4f}" + (f", validation AUC {val_auc:.4f}" if val_auc
                                                                       is not None else ""))
                if val_auc is not None and val_auc > best_auc:
                    best_auc, best = val_auc, dict(self.coordinates_)
        if keep_best and best is not None:
            self.coordinates_ = best
        self.best_auc_ = None if best is None else float(best_auc)
        return self

    def _dtype_of(self, c: Coordinate) -> type:
        # L-BFGS works in float64 throughout: a float32 design would be converted on every evaluation
        lbfgs = c.type == "fixed" and len(c.features) + 1 > NEWTON_MAX_FEATURES
        return np.float64 if lbfgs else np.dtype(self.dtype).type

    def _choose_l2(self, c: Coordinate, fit: _FixedFit | _RandomFit, offset: np.ndarray,
                   current: CoordinateModel | None,
                   val: _Validation) -> tuple[tuple[CoordinateModel, np.ndarray], dict[float, float]]:
        """Fit every l2 of the grid, strongest first, each warm-started from the last; keep the best on validation.

        Returns (the best model, its training scores) and the validation AUC of each l2."""
        results: dict[float, float] = {}
        best = None
        for l2 in sorted(set(c.l2_grid), reverse=True):
            current, scores = fit.fit(offset, l2, current, None)
            results[l2] = val.auc({**self.coordinates_, c.name: current})
            if best is None or results[l2] > results[best[0].l2]:
                best = current, scores
        return best, dict(sorted(results.items()))

    # -- persistence ---------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "model.json", type(self), FORMAT_VERSION,
                   params={"coordinates": [asdict(c) for c in self.coordinates], "passes": self.passes,
                           "response": self.response, "weight": self.weight, "offset": self.offset,
                           "seed": self.seed, "validate": self.validate, "threads": self.threads,
                           "dtype": self.dtype, "tol": self.tol},
                   fitted=list(self.coordinates_), best_auc=self.best_auc_, steps=[asdict(s) for s in self.steps_],
                   l2={name: m.l2 for name, m in self.coordinates_.items()},
                   l2_grid={name: {repr(k): v for k, v in g.items()} for name, g in self.l2_grid_.items()})
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
        found = json.loads((d / "model.json").read_text())
        old = found.get("class") == cls.__name__ and found.get("version") == 1
        meta = read_meta(d / "model.json", cls, 1 if old else FORMAT_VERSION)
        params = dict(meta["params"])
        params["coordinates"] = [Coordinate(**{**c, "features": tuple(c["features"])}) for c in params["coordinates"]]
        model = cls(**params)
        by_name = {c.name: c for c in model.coordinates}
        l2 = meta.get("l2", {})
        with np.load(d / "coefficients.npz", allow_pickle=False) as z:
            for name in meta["fitted"]:
                model.coordinates_[name] = CoordinateModel(by_name[name], z[f"{name}/entity_ids"], z[f"{name}/coef"],
                                                           z[f"{name}/var"], l2.get(name, by_name[name].l2))
        model.best_auc_ = meta["best_auc"]
        model.steps_ = [Step(**s) for s in meta["steps"]]
        model.l2_grid_ = {name: {float(k): v for k, v in g.items()} for name, g in meta.get("l2_grid", {}).items()}
        return model


class _Design:
    """One coordinate's design matrix and entity ids on one dataset; a model's entity lookup is kept for reuse."""

    def __init__(self, c: Coordinate, data: Table, dtype: type):
        self.X = design(data, c.features, dtype)
        self.ids = None if c.type == "fixed" else as_ids(_column(data, c.entity), c.entity)
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    def score(self, model: CoordinateModel, rows: np.ndarray | None = None) -> np.ndarray:
        """The model's scores of all rows, or of `rows`."""
        if rows is not None:
            lookup = None if self.ids is None else model.rows_of(self.ids[rows])
            return _apply(model, self.X[rows], lookup).astype(np.float64, copy=False)
        lookup = None
        if self.ids is not None:
            # the entity set stays the same from pass to pass, so the lookup is done once per fit
            if self._lookup is None or not np.array_equal(self._lookup[0], model.entity_ids):
                self._lookup = (model.entity_ids, model.rows_of(self.ids))
            lookup = self._lookup[1]
        return _apply(model, self.X, lookup).astype(np.float64, copy=False)


class _Validation:
    """Validation data with each coordinate model's scores cached: only a changed coordinate is rescored.

    Float64 designs, added in the order of `decision_function`, so the AUC reported is the returned model's.
    """

    def __init__(self, data: Table, y: np.ndarray, base: np.ndarray):
        self.data, self.y, self.base = data, y, base
        self._designs: dict[str, _Design] = {}
        self._scores: dict[str, tuple[CoordinateModel, np.ndarray]] = {}

    def auc(self, models: Mapping[str, CoordinateModel]) -> float:
        total = self.base
        for name, m in models.items():
            if name not in self._scores or self._scores[name][0] is not m:
                if name not in self._designs:
                    self._designs[name] = _Design(m.coordinate, self.data, np.float64)
                self._scores[name] = (m, self._designs[name].score(m))
            total = total + self._scores[name][1]
        return auc(self.y, total)


class _FixedFit:
    """A fixed effect's training problem, set up once per `fit`; `fit` returns the model and its training scores."""

    def __init__(self, c: Coordinate, d: _Design, y: np.ndarray, w: np.ndarray, tol: float):
        self.c, self.X, self.tol = c, d.X, tol
        self.y, self.w = y.astype(d.X.dtype), w.astype(d.X.dtype)

    def fit(self, offset: np.ndarray, l2: float, start: CoordinateModel | None,
            prior: CoordinateModel | None) -> tuple[CoordinateModel, np.ndarray]:
        d = self.X.shape[1]
        lam, mu = _lambda(self.c, d, l2), np.zeros(d)
        if prior is not None:
            lam, mu = 1.0 / prior.var[0], prior.coef[0]
        x0 = np.zeros(d) if start is None else start.coef[0]
        if d <= NEWTON_MAX_FEATURES:
            coef, var, scores = fit_grouped(self.X, self.y, self.w, np.array([0, self.y.size]), offset, lam[None],
                                            mu[None], x0[None], self.tol)
        else:  # the objective is a sum over rows: the gradient test scales with their total weight
            b, v = fit_lbfgs(self.X, self.y, self.w, offset, lam, mu, x0, tol=self.tol * max(self.w.sum(), 1.0),
                             ftol=self.tol)
            coef, var, scores = b[None], v[None], self.X @ b
        return CoordinateModel(self.c, np.zeros(0, np.int64), coef, var, l2), scores.astype(np.float64)


class _RandomFit:
    """A random effect's training problem, set up once per `fit`: eligible entities, sampled rows, grouped rows.

    `fit` returns the model and its training scores: those of the rows fit come from the solver, in its order.
    """

    def __init__(self, c: Coordinate, d: _Design, y: np.ndarray, w: np.ndarray, only: np.ndarray | None,
                 rng: np.random.Generator, tol: float, known: np.ndarray | None = None):
        self.c, self.design, self.tol, self.refit_some = c, d, tol, only is not None
        order = np.argsort(d.ids, kind="stable")  # one sort groups the rows and finds the entities
        ids = d.ids[order]
        first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if ids.size else np.zeros(0, np.int64)
        counts = np.diff(np.r_[first, ids.size])
        eligible = counts >= c.min_samples
        if known is not None and known.size:
            # An entity the prior already models has had min_samples rows: its prior stands for them, so any new
            # row updates it. Counting only today's rows would skip an entity whose labels arrive one a day — in
            # a daily incremental chain most members, whose models then never learn again (issue 15: this, not
            # compounding precision, was the chain's AUC gap to a full retrain).
            eligible |= np.isin(ids[first], known)
        if only is not None:
            eligible &= np.isin(ids[first], as_ids(np.asarray(only), c.entity)) if len(only) else False
        self.ids = ids[first][eligible]
        rows = order[np.repeat(eligible, counts)]
        group = np.repeat(np.arange(self.ids.size), counts[eligible])
        weights = w[rows]
        if c.max_samples is not None:
            kept, scale = reservoir(group, c.max_samples, rng)
            rows, group, weights = rows[kept], group[kept], weights[kept] * scale
        self.rows, self.indptr = rows, np.r_[0, np.cumsum(np.bincount(group, minlength=self.ids.size))]
        self.X, self.y, self.w = d.X[rows], y[rows].astype(d.X.dtype), weights.astype(d.X.dtype)
        rest = np.ones(y.size, bool)
        rest[rows] = False
        self.others = np.flatnonzero(rest)  # scored by looking their entities up: not fit, or sampled out
        self.cache = {} if pair_bytes(self.X) <= PAIR_CACHE_BYTES else None

    def fit(self, offset: np.ndarray, l2: float, start: CoordinateModel | None,
            prior: CoordinateModel | None) -> tuple[CoordinateModel, np.ndarray]:
        n, d = self.ids.size, self.X.shape[1]
        lam, mu, x0 = np.tile(_lambda(self.c, d, l2), (n, 1)), np.zeros((n, d)), np.zeros((n, d))
        if start is not None:
            at = start.rows_of(self.ids)
            x0[at >= 0] = start.coef[at[at >= 0]]
        if prior is not None:
            at = prior.rows_of(self.ids)
            mu[at >= 0], lam[at >= 0] = prior.coef[at[at >= 0]], 1.0 / prior.var[at[at >= 0]]
        coef, var, fitted = fit_grouped(self.X, self.y, self.w, self.indptr, offset[self.rows], lam, mu, x0, self.tol,
                                        cache=self.cache)
        model = CoordinateModel(self.c, self.ids, coef, var, l2)
        if self.refit_some and start is not None:  # entities not refit keep their previous model
            keep = ~np.isin(start.entity_ids, self.ids)
            ids = np.concatenate([start.entity_ids[keep], self.ids])
            order = np.argsort(ids, kind="stable")
            model = CoordinateModel(self.c, ids[order], np.vstack([start.coef[keep], coef])[order],
                                    np.vstack([start.var[keep], var])[order], l2)
        scores = np.zeros(self.design.X.shape[0])
        scores[self.rows] = fitted
        if self.others.size:
            scores[self.others] = self.design.score(model, self.others)
        return model, scores


def cap_prior_precision(pm: CoordinateModel, cap: float | None) -> CoordinateModel:
    """`pm` as a prior whose precision (1 / variance) per coefficient is at most `cap` (None: unchanged)."""
    return pm if cap is None else replace(pm, var=np.maximum(pm.var, 1.0 / cap))


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


__all__ = ["Coordinate", "CoordinateModel", "GameModel", "NEWTON_MAX_FEATURES", "Step", "as_ids", "available_cores",
           "design", "reservoir"]
