"""GAME jobs on Parquet files: what `jobmatch game train` and `jobmatch game score` do.

Every mistake a user can make — a missing file or column, a bad game.toml, a response that is not 0/1, ids that
are neither integers nor strings, a directory that holds no GAME model — raises `GameJobError` with one line
that names the file and the field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit

from jobmatch.game.config import GameJob
from jobmatch.game.model import GameModel, as_ids, available_cores


class GameJobError(ValueError):
    """A mistake in a GAME job's configuration, data or model directory, in one line naming what and where."""


def load_job(config: Path) -> GameJob:
    """The job in `config` (game.toml), or a GameJobError naming the file and what is wrong with it."""
    try:
        return GameJob.from_toml(config)
    except FileNotFoundError:
        raise GameJobError(f"{config}: no such file") from None
    except ValueError as e:
        raise GameJobError(str(e)) from None


def train_job(config: Path, out: Path, threads: int | None = None,
              say: Callable[[str], None] | None = None) -> dict:
    """Fit the job in `config` (game.toml); write the model, OUT/metrics.json and OUT/report.md; return the metrics."""
    config, out = Path(config), Path(out)
    job = load_job(config)
    model = job.model(threads)
    train = read_columns(job.data.train, model, f"{config}: data.train")
    validation = read_columns(job.data.validation, model, f"{config}: data.validation") \
        if job.data.validation is not None else None
    start = time.perf_counter()
    try:
        model.fit(train, validation, say=say)
    except ValueError as e:  # what the files disagree on, e.g. integer entity ids in one and strings in the other
        raise GameJobError(f"{config}: {e}") from None
    seconds = time.perf_counter() - start
    return write_results(config, model, out, {
        "train_rows": len(train[model.response]),
        "validation_rows": None if validation is None else len(validation[model.response]),
        "threads": model.threads or available_cores(), "seconds": seconds})


def write_results(config: Path, model, out: Path, run: dict) -> dict:
    """Save the fitted model with its metrics.json (the fit's steps and choices, then `run`'s sizes and times) and
    report.md; returns the metrics. Shared by the local and the Spark engine."""
    model.save(out)
    metrics = {"steps": [{"pass": s.pass_, "coordinate": s.coordinate, "auc": s.auc, "objective": s.objective,
                          "seconds": s.seconds, "l2": s.l2} for s in model.steps_],
               "best_auc": model.best_auc_,
               "l2": {name: m.l2 for name, m in model.coordinates_.items()},
               "l2_grid": {name: {repr(k): v for k, v in grid.items()} for name, grid in model.l2_grid_.items()},
               **run}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(_report(config, model, metrics))
    return metrics


def score_file(model_dir: Path, data: Path, out: Path) -> int:
    """Score the Parquet file `data` with the model in `model_dir`; write `out` with a probability column and
    score_<coordinate> (each coordinate's log-odds); return the number of rows."""
    model = load_model(model_dir)
    cols = read_columns(Path(data), model, "data to score", with_response=False)
    try:
        parts = model.contributions(cols)
    except ValueError as e:
        raise GameJobError(f"{data}: {e}") from None
    margin = cols[model.offset].astype(float) if model.offset else np.zeros(_rows(cols))
    for part in parts.values():  # the order of GameModel.decision_function, so the sums are the same
        margin = margin + part
    table = pa.table({"probability": expit(margin), **{f"score_{name}": v for name, v in parts.items()}})
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return table.num_rows


def load_model(model_dir: Path) -> GameModel:
    model_dir = Path(model_dir)
    if not (model_dir / "model.json").is_file():
        raise GameJobError(f"{model_dir}: not a GAME model (no model.json)")
    try:
        return GameModel.load(model_dir)
    except ValueError as e:  # a model of another kind or version; read_meta names the directory
        raise GameJobError(str(e).splitlines()[0]) from None
    except (KeyError, OSError, TypeError) as e:
        raise GameJobError(f"{model_dir}: not a readable GAME model ({type(e).__name__}: {e})") from None


def columns_of(model: GameModel, with_response: bool = True) -> list[str]:
    """The columns a model reads: response, weight, offset, features and entity ids."""
    names = ([model.response] if with_response else []) + [c for c in (model.weight, model.offset) if c]
    for c in model.coordinates:
        names += list(c.features) + ([c.entity] if c.entity else [])
    return list(dict.fromkeys(names))


def read_columns(path: Path | None, model: GameModel, role: str, with_response: bool = True) -> dict[str, np.ndarray]:
    """The model's columns from a Parquet file, checked: numeric without gaps, 0/1 response, integer or string ids.

    `role` says where the path came from (e.g. "game.toml: data.train"), for the error when it does not exist.
    """
    if path is None or not path.is_file():
        raise GameJobError(f"{role}: no such file {path}")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise GameJobError(f"{path}: not a Parquet file ({e})".splitlines()[0]) from None
    names = columns_of(model, with_response)
    missing = [n for n in names if n not in schema.names]
    if missing:
        more = f" (and {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else ""
        raise GameJobError(f"{path}: no column {missing[0]!r}{more}")
    table = pq.read_table(path, columns=names)
    ids = {c.entity for c in model.coordinates if c.entity}
    cols = {}
    for name in names:
        column = table[name]
        if column.null_count:
            raise GameJobError(f"{path}: column {name!r} has {column.null_count:,} missing values")
        if name in ids:
            try:
                cols[name] = as_ids(column.to_numpy(), name)
            except ValueError as e:
                raise GameJobError(f"{path}: {e}") from None
            continue
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
            raise GameJobError(f"{path}: column {name!r} must be numeric, found {kind}")
        cols[name] = column.to_numpy()
    if with_response:
        y = cols[model.response]
        bad = y[(y != 0) & (y != 1)]
        if bad.size:
            raise GameJobError(f"{path}: column {model.response!r} must be 0 or 1, found {bad[0].item()!r}")
    return cols


def _rows(cols: dict[str, np.ndarray]) -> int:
    return len(next(iter(cols.values())))


def _report(config: Path, model: GameModel, metrics: dict) -> str:
    val = metrics["validation_rows"]
    lines = [f"# GAME training: {config}", "",
             f"{metrics['train_rows']:,} training rows, " + (f"{val:,} validation rows" if val else "no validation")
             + f"; {model.passes} passes on {metrics['threads']} threads in {metrics['seconds']:.2f} s.", "",
             "| pass | coordinate | l2 | objective | validation AUC | seconds |", "|---:|---|---:|---:|---:|---:|"]
    for s in metrics["steps"]:
        auc = "–" if s["auc"] is None else f"{s['auc']:.4f}"
        lines.append(f"| {s['pass']} | {s['coordinate']} | {s['l2']:g} | {s['objective']:.2f} | {auc} | "
                     f"{s['seconds']:.3f} |")
    if metrics["best_auc"] is not None:
        lines += ["", f"Best validation AUC {metrics['best_auc']:.4f}: the saved model is that snapshot."]
    if model.l2_grid_:
        lines += ["", "## l2 chosen on validation AUC", "", "| coordinate | chosen | validation AUC by l2 |",
                  "|---|---:|---|"]
        lines += [f"| {name} | {metrics['l2'][name]:g} | " + ", ".join(f"{k:g}: {v:.4f}" for k, v in grid.items())
                  + " |" for name, grid in model.l2_grid_.items()]
    return "\n".join(lines) + "\n"
