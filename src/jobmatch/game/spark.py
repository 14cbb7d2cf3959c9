"""GAME on Spark: the same coordinate descent as `GameModel.fit`, with the rows on a cluster.

  * The fixed effect: Newton's method on the driver over distributed sums. Every partition builds its rows' design
    and returns the data term's objective, gradient and Hessian at the current coefficients (`solvers.Blocks`,
    the local solver's own arithmetic); the driver adds the penalty, solves the d x d system and line-searches
    with the local solver's rules (`solvers.newton`: its finish tests, step acceptance and backtracking), one
    pass over the data per trial point. It is the local iteration with its sums taken over partitions.
  * Each random effect: rows hashed by entity into buckets, each bucket cogrouped with its entities' current
    coefficients (the warm start) and prior, and fit by the local batched per-entity solver (`_RandomFit`, i.e.
    `fit_grouped`) inside the executor. Only coefficients come back, as a table keyed by entity.
  * Scores (the next coordinate's offsets, validation, `score`): the fixed effect as a literal expression (its
    coefficients travel with the query plan, a broadcast), a random effect by a join on entity.

Results match the local engine's to rounding: the sums are the same sums in another order. Exceptions: with
`max_samples` an entity's rows are sampled by a per-bucket generator, so a capped entity keeps other rows than
locally (the same distribution); with dtype float32 scores are summed in float64 here and in float32 locally, so
the two agree to float32 rounding — dtype float64 makes them agree to about 1e-9. A fixed effect has at most
NEWTON_MAX_FEATURES features (the local engine's L-BFGS path beyond that is not distributed), and incremental
`update` (refitting some entities only) is not offered: the prior (with `max_prior_precision`) and the warm
start are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobmatch.engine import Source, list_column, list_matrix
from jobmatch.engine.spark import SparkEngine
from jobmatch.game.job import GameJobError, columns_of, load_job, write_results
from jobmatch.game.model import (NEWTON_MAX_FEATURES, Coordinate, CoordinateModel, GameModel, Step, _Design,
                                 _lambda, _RandomFit, as_ids, cap_prior_precision, design)
from jobmatch.game.solvers import Blocks, log_loss
from jobmatch.metrics import auc

COEF, VAR, ROLE = "_coef", "_var", "_role"  # the columns of a random effect's coefficient table
START, PRIOR = 0, 1  # roles of the rows cogrouped with a bucket: warm start, Gaussian prior


@dataclass
class _Fitted:
    """A coordinate's model on Spark: a fixed effect's coefficients on the driver, a random effect's as a
    DataFrame (entity, _coef, _var) on the executors."""

    coordinate: Coordinate
    l2: float
    fixed: CoordinateModel | None = None
    table: object | None = None  # pyspark DataFrame
    penalty: float | None = None  # a random effect's, summed on first use: its (checkpointed) table never changes


def _coordinate_model(c: Coordinate, table: pa.Table, l2: float) -> CoordinateModel:
    """A random effect's coefficient table (any order) as the local CoordinateModel (ids sorted)."""
    d = len(c.features) + 1
    ids = as_ids(table[c.entity].to_numpy(), c.entity)
    order = np.argsort(ids, kind="stable")
    return CoordinateModel(c, ids[order], list_matrix(table[COEF], d)[order], list_matrix(table[VAR], d)[order],
                           l2)


def _coef_table(m: CoordinateModel) -> pa.Table:
    return pa.table({m.coordinate.entity: m.entity_ids, COEF: list_column(m.coef.astype(np.float64)),
                     VAR: list_column(m.var.astype(np.float64))})


class SparkGame:
    """Fits `model` (its hyper-parameters; the fit sets its learned attributes as `GameModel.fit` does) on Spark.

    `buckets`: the random effects' entity buckets (default: spark.sql.shuffle.partitions); a bucket's rows must
    fit in one executor's Python memory. `timings` holds the seconds spent per stage after `fit`.
    """

    def __init__(self, model: GameModel, engine: SparkEngine, buckets: int | None = None):
        if any(c.type == "fixed" and len(c.features) + 1 > NEWTON_MAX_FEATURES for c in model.coordinates):
            big = next(c for c in model.coordinates if c.type == "fixed" and len(c.features) + 1 > NEWTON_MAX_FEATURES)
            raise ValueError(f"coordinate {big.name!r}: {len(big.features)} features; on Spark a fixed effect has at "
                             f"most {NEWTON_MAX_FEATURES - 1} (train it with --engine local)")
        self.model, self.engine = model, engine
        self.buckets = buckets or int(engine.session.conf.get("spark.sql.shuffle.partitions"))
        self.dtype = np.dtype(model.dtype).type
        self.timings: dict[str, float] = {}
        self.fixed_passes = 0  # passes over the rows for fixed-effect Newton steps (a Spark job each)
        self.fitted_: dict[str, _Fitted] = {}  # after `fit`: the coordinates as the executors hold them

    # -- data ----------------------------------------------------------------------------------------------------
    def frame(self, source: Source, role: str, with_response: bool = True):
        """The model's columns with _y (response, 0/1), _w (weight) and _o (offset) as doubles, integer ids as
        long; checked for gaps, a non-0/1 response and id or feature columns of the wrong type."""
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        m = self.model
        df = self.engine.frame(source)
        names = columns_of(m, with_response)
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise GameJobError(f"{role}: no column {missing[0]!r}")
        ids = {c.entity for c in m.coordinates if c.entity}
        for name in names:
            kind = df.schema[name].dataType
            if name in ids and not isinstance(kind, (T.IntegralType, T.StringType)):
                raise GameJobError(f"{role}: column {name!r}: entity ids must be integers or strings, got {kind}")
            if name not in ids and not isinstance(kind, (T.NumericType, T.BooleanType)):
                raise GameJobError(f"{role}: column {name!r} must be numeric, found {kind}")
        df = df.select(*[F.col(n).cast("long") if n in ids and isinstance(df.schema[n].dataType, T.IntegralType)
                         else F.col(n) for n in names])
        checks = [F.sum(F.col(n).isNull().cast("long")).alias(n) for n in names]
        if with_response:
            checks.append(F.sum((~F.col(m.response).isin(0, 1)).cast("long")).alias("_bad"))
        found = df.agg(*checks).first().asDict()
        for n in names:
            if found[n]:
                raise GameJobError(f"{role}: column {n!r} has {found[n]:,} missing values")
        if with_response and found["_bad"]:
            bad = df.filter(~F.col(m.response).isin(0, 1)).first()[m.response]
            raise GameJobError(f"{role}: column {m.response!r} must be 0 or 1, found {bad!r}")
        extra = {"_w": F.col(m.weight).cast("double") if m.weight else F.lit(1.0),
                 "_o": F.col(m.offset).cast("double") if m.offset else F.lit(0.0)}
        if with_response:
            extra["_y"] = F.col(m.response).cast("double")
        return df.withColumns(extra)

    def _checkpoint(self, df):
        # cuts the lineage: every coordinate update adds a join, and a plan rebuilt from the first read on every
        # pass would grow with the number of updates
        return df.localCheckpoint(eager=True)

    # -- scoring -------------------------------------------------------------------------------------------------
    @staticmethod
    def _dot(coef, features: tuple[str, ...]):
        """intercept + sum coef_k x_k as a column expression; `coef(k)` gives coefficient k's expression."""
        from pyspark.sql import functions as F

        out = coef(0)
        for k, f in enumerate(features, start=1):
            out = out + coef(k) * F.col(f).cast("double")
        return out

    def _with_score(self, df, fitted: _Fitted, column: str):
        """`df` with `column` = the coordinate's score of each row (0 for an entity without a model)."""
        from pyspark.sql import functions as F

        c = fitted.coordinate
        if fitted.fixed is not None:
            b = fitted.fixed.coef[0]
            return df.withColumn(column, self._dot(lambda k: F.lit(float(b[k])), c.features))
        coefs = fitted.table.select(F.col(c.entity), F.col(COEF).alias("_c"))
        joined = df.join(coefs, on=c.entity, how="left")
        return joined.withColumn(column, F.coalesce(self._dot(lambda k: F.col("_c")[k], c.features),
                                                    F.lit(0.0))).drop("_c")

    def margins(self, df, fitted: dict[str, _Fitted]):
        """`df` (from `_frame`) with _margin = offset + every coordinate's score, in `GameModel.decision_function`'s
        order."""
        from pyspark.sql import functions as F

        total = F.col("_o")
        for i, f in enumerate(fitted.values()):
            df = self._with_score(df, f, f"_v{i}")
            total = total + F.col(f"_v{i}")
        return df.withColumn("_margin", total)

    def scored(self, source: Source):
        """The rows of `source` with _margin, as `GameModel.decision_function` (after `fit`)."""
        return self.margins(self.frame(source, "data", with_response=False), self.fitted_)

    def _auc(self, validation, fitted: dict[str, _Fitted]) -> float:
        start = time.perf_counter()
        t = self.margins(validation, fitted).select("_y", "_margin").toArrow()
        self._tick("validation", start)
        return auc(t["_y"].to_numpy(), t["_margin"].to_numpy())

    def _tick(self, stage: str, start: float) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    # -- fitting -------------------------------------------------------------------------------------------------
    def _fit_fixed(self, rows, c: Coordinate, l2: float, start: _Fitted | None,
                   prior: CoordinateModel | None) -> _Fitted:
        d, dtype, features, tol = len(c.features) + 1, self.dtype, c.features, self.model.tol
        lam, mu = _lambda(c, d, l2), np.zeros(d)
        if prior is not None:
            lam, mu = 1.0 / prior.var[0], prior.coef[0]
        b = np.zeros(d) if start is None else start.fixed.coef[0].astype(np.float64)

        def data_terms(at: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            """The data term's objective, gradient and Hessian at `at`, summed over the partitions."""
            def one(t: pa.Table) -> np.ndarray:
                X = design(t, features, dtype)
                blocks = Blocks(X, t["_y"].to_numpy(), t["_w"].to_numpy(), np.array([0, t.num_rows]), pairs=False)
                z = blocks.margins(at[None], t["_off"].to_numpy().astype(dtype, copy=False))
                zero = np.zeros((1, d))
                f, e = blocks.objectives(z, at[None], zero, zero)
                g, s = blocks.gradients(z, e)
                return np.concatenate([f, g.ravel(), blocks.hessians(z, e, s).ravel()])

            self.fixed_passes += 1
            v = self.engine.partition_sum(rows, one, size=1 + d + d * d)
            return float(v[0]), v[1:1 + d], v[1 + d:].reshape(d, d)

        def objective(at: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
            f, g, h = data_terms(at)
            return f + 0.5 * float((lam * (at - mu) ** 2).sum()), g + lam * (at - mu), h

        # `solvers.newton`'s iteration for one block, each evaluation a pass over the partitions
        slack = 10 * np.finfo(dtype).eps
        f, g, h = objective(b)
        for _ in range(50):
            with np.errstate(divide="ignore", invalid="ignore"):  # lam = 0 (an unshrunk intercept): no bound
                bound = np.where(lam > 0, g * g / lam, np.inf).sum()
            if 0.5 * bound <= tol * max(abs(f), 1.0):
                break
            step = np.linalg.solve(h + np.diag(lam + 1e-12), g)
            decrement = float(g @ step)
            finished = 0.5 * decrement <= tol * max(abs(f), 1.0)  # the step is still taken
            alpha = 1.0
            while True:
                trial = b - alpha * step
                f_t, g_t, h_t = objective(trial)
                if f_t <= f - 1e-4 * alpha * decrement + slack * abs(f):
                    b, f, g, h = trial, f_t, g_t, h_t
                    break
                alpha /= 2
                if alpha <= 1e-10:  # no step decreases f in rounding: as good as it gets
                    finished = True
                    break
            if finished:
                break
        var = 1.0 / np.maximum(np.diag(h) + lam, 1e-12)
        return _Fitted(c, l2, fixed=CoordinateModel(c, np.zeros(0, np.int64), b[None], var[None], l2))

    def _fit_random(self, rows, c: Coordinate, l2: float, start: _Fitted | None, prior: _Fitted | None,
                    seed: tuple[int, ...]) -> _Fitted:
        from pyspark.sql import functions as F

        dtype, tol = self.dtype, self.model.tol
        key_type = pa.int64() if rows.schema[c.entity].dataType.typeName() == "long" else pa.string()
        schema = pa.schema([(c.entity, key_type), (COEF, pa.list_(pa.float64())), (VAR, pa.list_(pa.float64()))])
        known = [f.table.withColumn(ROLE, F.lit(role)) for f, role in ((start, START), (prior, PRIOR))
                 if f is not None]
        if known:
            right = known[0] if len(known) == 1 else known[0].unionByName(known[1])
        else:  # nothing known yet: an empty table of the right shape, so every bucket has its cogroup
            right = self.engine.session.createDataFrame(
                [], f"{c.entity} {'long' if key_type == pa.int64() else 'string'}, {COEF} array<double>, "
                    f"{VAR} array<double>, {ROLE} int")

        def fit_bucket(bucket: int, left: pa.Table, known: pa.Table) -> pa.Table:
            if left.num_rows == 0:  # entities known from before with no rows now: no model, as locally
                return schema.empty_table()
            role = known[ROLE].to_numpy()
            models = {r: _coordinate_model(c, known.filter(pa.array(role == r)), l2) if (role == r).any() else None
                      for r in (START, PRIOR)}
            # the bucket's prior entities are all those of its keys: as locally, they count as having min_samples
            fit = _RandomFit(c, _Design(c, left, dtype), left["_y"].to_numpy(), left["_w"].to_numpy(), None,
                             np.random.default_rng([*seed, bucket]), tol,
                             known=None if models[PRIOR] is None else models[PRIOR].entity_ids)
            model, _ = fit.fit(left["_off"].to_numpy(), l2, models[START], models[PRIOR])
            return _coef_table(model).cast(schema)

        table = self.engine.cogroup_map(rows, right.select(c.entity, COEF, VAR, ROLE), c.entity, self.buckets,
                                        fit_bucket, schema)
        return _Fitted(c, l2, table=self._checkpoint(table))

    def _fit_coordinate(self, data, i: int, c: Coordinate, l2: float, current: _Fitted | None,
                        prior: _Fitted | None, p: int) -> _Fitted:
        from pyspark.sql import functions as F

        others = [F.col(f"_s{j}") for j in range(len(self.model.coordinates)) if j != i]
        offset = F.col("_o")
        for s in others:
            offset = offset + s
        rows = data.select(*([c.entity] if c.entity else []), *c.features, "_y", "_w", offset.alias("_off"))
        start = time.perf_counter()
        if c.type == "fixed":
            fitted = self._fit_fixed(rows, c, l2, current, prior.fixed if prior is not None else None)
        else:
            fitted = self._fit_random(rows, c, l2, current, prior, (self.model.seed, i, p))
        self._tick(f"{c.type} effect fits", start)
        return fitted

    def _objective(self, data, fitted: dict[str, _Fitted]) -> float:
        """The training objective: weighted log loss of the rows' margins plus every coordinate's penalty."""
        from pyspark.sql import functions as F

        start = time.perf_counter()
        total = F.col("_o")
        for j in range(len(self.model.coordinates)):
            total = total + F.col(f"_s{j}")
        loss = self.engine.partition_sum(data.select(total.alias("_z"), "_y", "_w"), lambda t: np.array(
            [float(t["_w"].to_numpy() @ log_loss(t["_z"].to_numpy(), t["_y"].to_numpy()))]), size=1)[0]
        penalty = 0.0
        for f in fitted.values():
            if f.fixed is not None:
                penalty += f.fixed.penalty
            else:
                if f.penalty is None:
                    c, l2 = f.coordinate, f.l2
                    f.penalty = float(self.engine.partition_sum(f.table, lambda t, c=c, l2=l2: np.array(
                        [_coordinate_model(c, t, l2).penalty]), size=1)[0])
                penalty += f.penalty
        self._tick("objective", start)
        return float(loss + penalty)

    def fit(self, train: Source, validation: Source | None = None, prior: GameModel | None = None,
            keep_best: bool = True, say: Callable[[str], None] | None = None,
            max_prior_precision: float | None = None) -> GameModel:
        """Coordinate descent as `GameModel.fit(train, validation, prior, max_prior_precision=...)`; sets and
        returns `self.model`."""
        if max_prior_precision is not None and not max_prior_precision > 0:
            raise ValueError(f"max_prior_precision must be > 0, got {max_prior_precision}")
        from pyspark.sql import functions as F

        say = say or (lambda _m: None)
        m, coords = self.model, self.model.coordinates
        gridded = [c.name for c in coords if c.l2_grid]
        if gridded and validation is None:
            raise ValueError(f"coordinate {gridded[0]!r}: an l2 grid needs validation data")
        start = time.perf_counter()
        data = self.frame(train, "data.train")
        val = self._checkpoint(self.frame(validation, "data.validation")) if validation is not None else None
        fitted: dict[str, _Fitted] = {}
        priors: dict[str, _Fitted] = {}
        if prior is not None:
            for name, pm in prior.coordinates_.items():
                if pm.coordinate.type == "random":  # a fixed effect's prior is unused
                    pm = cap_prior_precision(pm, max_prior_precision)
                priors[name] = _Fitted(pm.coordinate, pm.l2, fixed=pm) if pm.coordinate.type == "fixed" else \
                    _Fitted(pm.coordinate, pm.l2, table=self._checkpoint(self.engine.frame(_coef_table(pm))))
            fitted = dict(priors)
        for i, c in enumerate(coords):
            data = self._with_score(data, fitted[c.name], f"_s{i}") if c.name in fitted else \
                data.withColumn(f"_s{i}", F.lit(0.0))
        if data.rdd.getNumPartitions() < self.engine.parallelism:  # a file smaller than a split reads as one
            data = data.repartition(self.engine.parallelism)
        data = self._checkpoint(data)
        self.train_rows = data.count()
        self.validation_rows = None if val is None else val.count()
        self._tick("load", start)
        chosen: dict[str, float] = {}
        m.steps_, m.l2_grid_, best, best_auc = [], {}, None, -np.inf
        for p in range(1, m.passes + 1):
            for i, c in enumerate(coords):
                started = time.perf_counter()
                current = fitted.get(c.name)
                prior_fit = priors.get(c.name) if c.type == "random" else None
                if c.l2_grid and prior_fit is None and c.name not in chosen:
                    grid = {}
                    for l2 in sorted(set(c.l2_grid), reverse=True):  # strongest first, each warm-starting the next
                        current = self._fit_coordinate(data, i, c, l2, current, None, p)
                        grid[l2] = (current, self._auc(val, {**fitted, c.name: current}))
                    new = max(grid.values(), key=lambda x: x[1])[0]  # the first best, as `GameModel._choose_l2`
                    m.l2_grid_[c.name] = {l2: a for l2, (_, a) in sorted(grid.items())}
                    chosen[c.name] = new.l2
                else:
                    l2 = chosen.get(c.name, prior_fit.l2 if prior_fit is not None else c.l2)
                    new = self._fit_coordinate(data, i, c, l2, current, prior_fit, p)
                fitted[c.name] = new
                t = time.perf_counter()
                data = self._checkpoint(self._with_score(data.drop(f"_s{i}"), new, f"_s{i}"))
                self._tick("score and join", t)
                value = self._objective(data, fitted)
                val_auc = None
                if val is not None and (m.validate == "coordinate" or c is coords[-1]):
                    val_auc = self._auc(val, fitted)
                m.steps_.append(Step(p, c.name, val_auc, value, time.perf_counter() - started, new.l2))
                say(f"pass {p} {c.name}: objective {value:.4f}" + (f", validation AUC {val_auc:.4f}" if val_auc
                                                                       is not None else ""))
                if val_auc is not None and val_auc > best_auc:
                    best_auc, best = val_auc, dict(fitted)
        if keep_best and best is not None:
            fitted = best
        self.fitted_ = fitted
        start = time.perf_counter()
        m.coordinates_ = {name: f.fixed if f.fixed is not None else _coordinate_model(f.coordinate, f.table.toArrow(),
                                                                                      f.l2)
                          for name, f in fitted.items()}
        self._tick("collect", start)
        m.best_auc_ = None if best is None else float(best_auc)
        return m


def train_job_spark(config: Path, out: Path, engine: SparkEngine, say: Callable[[str], None] | None = None) -> dict:
    """`jobmatch game train --engine spark`: the job in `config` fit on Spark; writes what `train_job` writes."""
    config, out = Path(config), Path(out)
    job = load_job(config)
    model = job.model()
    for role, path in (("data.train", job.data.train), ("data.validation", job.data.validation)):
        if path is not None and not path.exists():
            raise GameJobError(f"{config}: {role}: no such file {path}")
    trainer = SparkGame(model, engine)
    start = time.perf_counter()
    try:
        trainer.fit(job.data.train, job.data.validation, say=say)
    except ValueError as e:
        raise GameJobError(f"{config}: {e}") from None
    seconds = time.perf_counter() - start
    return write_results(config, model, out, {
        "train_rows": trainer.train_rows, "validation_rows": trainer.validation_rows,
        "threads": engine.parallelism, "seconds": seconds, "engine": f"spark ({engine.master})",
        "stages": trainer.timings})
