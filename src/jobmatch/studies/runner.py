"""Run a study's grid (point x seed), resumably and in parallel, and write metrics.json and report.md.

Layout of OUT:
  study.json                    what this folder is a run of (study, quick, grid, seeds): a re-run must match
  points/<key>/result.json      one finished point x seed (written atomically, so a kill never leaves half of one)
  points/<key>/work/            the point's simulation and models while it runs; removed once its result is kept
  metrics.json, report.md, <name>.png
A re-run skips every point x seed whose result.json exists, so an interrupted study resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import multiprocessing
import os
import re
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from jobmatch.studies.base import Say, Study, series_of, tupled


def load_study(name: str) -> Study:
    """`jobmatch.studies.<name>.STUDY`; a ValueError naming the study if there is none."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"study: not a study name {name!r}")
    try:
        module = importlib.import_module(f"jobmatch.studies.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"jobmatch.studies.{name}":
            raise ValueError(f"study: no study named {name!r} (no module jobmatch.studies.{name})") from None
        raise
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ValueError(f"study: jobmatch.studies.{name} defines no STUDY")
    return study


def _jsonable(value: object) -> object:
    return list(map(_jsonable, value)) if isinstance(value, (tuple, list)) else value


def point_key(value: object, seed: int) -> str:
    """A folder name per (value, seed): readable, and unique through a hash of the exact value."""
    text = json.dumps(_jsonable(value))
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:40]
    return f"{slug}-s{seed}-{hashlib.sha1(f'{text}|{seed}'.encode()).hexdigest()[:8]}"


def _write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _study_in(module: str) -> Study:
    """The `STUDY` of a module: how a worker process finds its study without unpickling code."""
    study = getattr(importlib.import_module(module), "STUDY", None)
    if not isinstance(study, Study):
        raise ValueError(f"study: module {module} defines no STUDY")
    return study


def _run_one(study: Study | str, value: object, seed: int, folder: str, quick: bool) -> dict:
    """One point x seed; in a worker process `study` is the module that defines it (only data is pickled)."""
    study = _study_in(study) if isinstance(study, str) else study
    name = study.name
    folder_ = Path(folder)
    work = folder_ / "work"
    shutil.rmtree(work, ignore_errors=True)  # a killed earlier attempt's leftovers
    work.mkdir(parents=True)
    log_path = folder_ / "log.txt"
    started = time.perf_counter()
    with log_path.open("a") as log:
        def say(msg: str) -> None:
            log.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            log.flush()

        metrics = study.run_point(value, seed, work, quick, say)
    if not any(m in metrics for m in study.metrics):
        raise ValueError(f"study {name}: run_point for {value!r} returned none of the metrics {study.metrics}")
    # a series of a multi-series study may measure only some metrics: the others are NaN, shown as "–"
    metrics = {**{m: float("nan") for m in study.metrics}, **metrics}
    row = {"value": _jsonable(value), "seed": seed, **{k: float(v) for k, v in metrics.items()},
           "seconds": time.perf_counter() - started, "quick": quick}
    _write_json(folder_ / "result.json", row)
    shutil.rmtree(work, ignore_errors=True)  # the result is kept; the point's simulation is not worth the disk
    return row


def _ci(values: list[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95% t-interval over seeds (None with one seed: no band to draw from one draw)."""
    v = np.array([x for x in values if x == x], float)
    if v.size == 0:
        return float("nan"), None, None
    mean = float(v.mean())
    if v.size < 2:
        return mean, None, None
    from scipy.stats import t

    half = float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def summarize(study: Study, grid: tuple, rows: list[dict]) -> list[dict]:
    """Per grid value: the number of seeds and each metric's mean and 95% interval, in grid order."""
    points = []
    for value in grid:
        mine = [r for r in rows if tupled(r["value"]) == value]
        if not mine:
            continue
        point = {"value": _jsonable(value), "seeds": len(mine)}
        for m in study.metrics:
            mean, lo, hi = _ci([r[m] for r in mine])
            point[m] = {"mean": mean, "ci_low": lo, "ci_high": hi}
        points.append(point)
    return points


def run_study(study: Study, out: str | Path, quick: bool = False, jobs: int = 1, say: Say | None = None) -> dict:
    """Run every point x seed not already finished in `out`, then (re)write metrics.json and report.md."""
    say = say or (lambda _m: None)
    if jobs < 1:
        raise ValueError(f"jobs: must be >= 1, got {jobs}")
    out = Path(out)
    grid = tuple(study.quick_grid if quick else study.grid)
    seeds = tuple(study.quick_seeds if quick else study.seeds)
    header = {"study": study.name, "knob": study.knob, "quick": quick}
    out.mkdir(parents=True, exist_ok=True)
    if (out / "study.json").exists():
        before = json.loads((out / "study.json").read_text())
        if {k: before.get(k) for k in header} != header:
            raise ValueError(f"out: {out} holds a run of {before.get('study')!r} (quick={before.get('quick')}); "
                             f"give another folder for {study.name!r} (quick={quick})")
    _write_json(out / "study.json", {**header, "grid": _jsonable(grid), "seeds": list(seeds)})
    aliases = {value: target for value, target in study.same_as if value in grid}
    if any(target not in grid or target in aliases for target in aliases.values()):
        raise ValueError(f"study {study.name}: same_as must name grid values that are run themselves")
    todo, rows = [], []
    # every point's first seed before any point's second: an interrupted run has already covered the grid once
    for seed in seeds:
        for value in grid:
            if value in aliases:
                continue
            folder = out / "points" / point_key(value, seed)
            if (folder / "result.json").exists():
                rows.append(json.loads((folder / "result.json").read_text()))
            else:
                folder.mkdir(parents=True, exist_ok=True)
                todo.append((value, seed, folder))
    say(f"{study.name}: {len(rows)} of {len(rows) + len(todo)} points x seeds already done; running {len(todo)}"
        + (f" in {jobs} processes" if jobs > 1 and len(todo) > 1 else ""))
    failed: list[str] = []

    def record(value: object, seed: int, folder: Path, row: dict | None, error: str | None) -> None:
        if row is not None:
            rows.append(row)
            say(f"{study.name}: {value!r} seed {seed} done in {row['seconds']:.0f}s: "
                + ", ".join(f"{m} {row[m]:.4g}" for m in study.metrics))
        else:
            (folder / "error.txt").write_text(error or "")
            failed.append(f"{value!r} seed {seed}: {(error or '').strip().splitlines()[-1]}")
            say(f"{study.name}: {value!r} seed {seed} FAILED (see {folder / 'error.txt'})")
        if len(rows) + len(failed) < len(todo) + done_before:  # the report so far, so a long run shows progress
            finish(partial=True)

    def finish(partial: bool = False) -> dict:
        copies = [{**r, "value": _jsonable(value), "same_as": _jsonable(target)} for value, target in aliases.items()
                  for r in rows
                  if tupled(r["value"]) == target]
        ordered = sorted(rows + copies, key=lambda r: (grid.index(tupled(r["value"])) if tupled(r["value"]) in grid
                                              else len(grid), r["seed"]))
        result = {**header, "grid": _jsonable(grid), "seeds": list(seeds), "metrics": list(study.metrics),
                  "rows": ordered, "points": summarize(study, grid, ordered)}
        result["conclusion"] = study.conclude(ordered) if ordered else "No point finished."
        if failed:
            result["failed"] = list(failed)
        if partial:
            result["partial"] = f"{len(rows)} of {len(todo) + done_before} points x seeds finished so far"
        _write_json(out / "metrics.json", result)
        write_report(study, result, out)
        return result

    done_before = len(rows)

    if jobs == 1 or len(todo) <= 1:
        for value, seed, folder in todo:
            say(f"{study.name}: {value!r} seed {seed}")
            try:
                record(value, seed, folder, _run_one(study, value, seed, str(folder), quick), None)
            except Exception:  # one point failing must not lose the others: it is reported below
                record(value, seed, folder, None, traceback.format_exc())
    else:
        # spawn, not fork: a forked child would inherit the parent's BLAS/XGBoost thread pools mid-state
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx) as pool:
            module = study.run_point.__module__
            futures = {pool.submit(_run_one, module, v, s, str(f), quick): (v, s, f) for v, s, f in todo}
            for fut in as_completed(futures):
                v, s, f = futures[fut]
                try:
                    record(v, s, f, fut.result(), None)
                except Exception:
                    record(v, s, f, None, traceback.format_exc())

    result = finish()
    if failed:
        raise RuntimeError(f"study {study.name}: {len(failed)} point(s) failed (the others are kept and reported; "
                           f"re-run to retry them): {failed[0]}")
    return result


def _plot(study: Study, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = result["points"]
    by_series: dict[str, list[dict]] = {}
    for p in points:
        by_series.setdefault(series_of(tupled(p["value"]))[0], []).append(p)
    def measured(pts: list[dict], m: str) -> bool:
        return any(p[m]["mean"] == p[m]["mean"] for p in pts)

    # one row per series, one panel per metric group that series measures (a multi-series study's series may
    # measure different metrics)
    groups = study.panels or tuple((m, (m,)) for m in study.metrics)
    panels = {series: [(title, [m for m in ms if measured(pts, m)]) for title, ms in groups
                       if any(measured(pts, m) for m in ms)] for series, pts in by_series.items()}
    n_rows, n_cols = len(panels), max(1, max(len(ps) for ps in panels.values()))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.3 * n_rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (series, pts) in enumerate(by_series.items()):
        xs = [series_of(tupled(p["value"]))[1] for p in pts]
        numeric = all(isinstance(x, (int, float)) for x in xs)
        pos = np.array(xs, float) if numeric else np.arange(len(xs), dtype=float)
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(panels[series]):
                ax.axis("off")
                continue
            title, ms = panels[series][j]
            for k, m in enumerate(ms):
                color = colors[k % len(colors)]
                mean = np.array([p[m]["mean"] for p in pts], float)
                lo = np.array([np.nan if p[m]["ci_low"] is None else p[m]["ci_low"] for p in pts], float)
                hi = np.array([np.nan if p[m]["ci_high"] is None else p[m]["ci_high"] for p in pts], float)
                ax.plot(pos, mean, "o-", color=color, label=m if len(ms) > 1 else "mean over seeds")
                if len(ms) == 1:  # several metrics' bands on one panel would hide each other: dots show the seeds
                    ax.fill_between(pos, lo, hi, color=color, alpha=0.2, label="95% CI over seeds")
                for p, x in zip(pts, pos):  # every seed's own value, so the band's support is visible
                    ys = [r[m] for r in result["rows"] if tupled(r["value"]) == tupled(p["value"])]
                    ax.plot([x] * len(ys), ys, ".", color=color if len(ms) > 1 else "k", alpha=0.5, ms=4)
            if numeric and len(pos) > 2 and pos.min() > 0 and pos.max() / pos.min() > 8:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(pos, [str(x) for x in xs], fontsize=8)
            ax.set_xlabel(series or study.knob, fontsize=8)
            ax.set_title(title, fontsize=9)
            if (i == 0 and j == 0) or len(ms) > 1 and i == 0:
                ax.legend(fontsize=7)
    fig.suptitle(study.title or study.name)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(stat: dict) -> str:
    if stat["mean"] != stat["mean"]:
        return "–"
    if stat["ci_low"] is None:
        return f"{stat['mean']:.4g}"
    return f"{stat['mean']:.4g} [{stat['ci_low']:.4g}, {stat['ci_high']:.4g}]"


def write_report(study: Study, result: dict, out: Path) -> None:
    png = f"{study.name}.png"
    _plot(study, result, out / png)
    lines = [f"# Study: {study.title or study.name}", "",
             f"Knob: {study.knob}. Grid{' (--quick)' if result['quick'] else ''}: "
             f"{len(result['points'])} points x seeds {result['seeds']}; each point simulated, ingested through "
             "validated ingest into an event log, trained and evaluated through the normal flows. Cells: mean over "
             "seeds [95% t-interval].", "",
             "| value | seeds | " + " | ".join(study.metrics) + " |",
             "|---|---|" + "---|" * len(study.metrics)]
    for p in result["points"]:
        series, x = series_of(tupled(p["value"]))
        label = f"{series} = {x}" if series else str(x)
        lines.append(f"| {label} | {p['seeds']} | " + " | ".join(_fmt(p[m]) for m in study.metrics) + " |")
    if result.get("partial"):
        lines += ["", f"**Partial**: {result['partial']} (the run is going on, or was interrupted: re-run to resume)."]
    lines += ["", f"![{study.name}: each metric against the knob, 95% bands over seeds]({png})", "",
              "## Conclusion", "", result["conclusion"]]
    if result.get("failed"):
        lines += ["", "## Failed points (re-run to retry)", ""] + [f"- {f}" for f in result["failed"]]
    runs = [r for r in result["rows"] if "same_as" not in r]  # a same_as point's rows are copies
    seconds = sum(r.get("seconds", 0.0) for r in runs)
    lines += ["", f"Compute: {seconds / 60:.1f} min over {len(runs)} points x seeds "
              "(sum of the points' own times)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
