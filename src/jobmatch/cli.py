"""`jobmatch` command line."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from jobmatch.config import Settings
from jobmatch.events import EventLog, IngestError, read_batch
from jobmatch.simulate import SimConfig

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Personalization signals for job marketplaces.")
run_app = typer.Typer(no_args_is_help=True, help="Run a flow.")
store_app = typer.Typer(no_args_is_help=True, help="Inspect and manage the feature store.")
evaluate_app = typer.Typer(no_args_is_help=True, help="Offline evaluations with reports and metrics.json.")
game_app = typer.Typer(no_args_is_help=True, help="Generalized additive mixed models on any Parquet data.")
qa_app = typer.Typer(no_args_is_help=True, help="The Qualified Applicant model's published versions.")
app.add_typer(run_app, name="run")
app.add_typer(store_app, name="store")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(game_app, name="game")
app.add_typer(qa_app, name="qa")
console = Console(stderr=True)

Members = Annotated[int, typer.Option(help="number of members to simulate")]
Days = Annotated[int, typer.Option(help="length of the simulated period in days")]
Seed = Annotated[int, typer.Option(help="random seed; the same seed gives byte-identical files")]
TaxonomyOpt = Annotated[str, typer.Option(help="'builtin' or 'onet:PATH' (a directory of O*NET tables)")]
Db = Annotated[Path, typer.Option(help="event log file (DuckDB)")]
DataDir = Annotated[Path, typer.Option(help="simulated (or exported) marketplace directory")]
OutDir = Annotated[Path, typer.Option(help="where report.md, plots and metrics.json go")]


@contextmanager
def _progress(title: str) -> Iterator:
    """A live status line with elapsed time; yields a function that names the current stage."""
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(title, total=None)
        yield lambda msg: bar.update(task, description=f"{title}: {msg}")
        bar.update(task, description=f"{title}: done")


IntentSize = Annotated[str, typer.Option(help="model sizes: cpu (the default: evaluation in 30 minutes on 2 cores) "
                                             "| paper (002's BERT, for a GPU) | quick")]


def _intent_config(quick: bool, size: str):
    from jobmatch.intent.config import IntentConfig

    try:
        return IntentConfig.named("quick" if quick else size)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--size") from None


def _taxonomy_spec(spec: str) -> str:
    if spec == "onet":
        path = Settings().onet_path
        if path is None:
            raise typer.BadParameter("--taxonomy onet needs JOBMATCH_ONET_PATH, or use onet:PATH")
        return f"onet:{path}"
    return spec


@app.command()
def simulate(out: Annotated[Path, typer.Option(help="output directory")],
             members: Members = 20_000, days: Days = 28, seed: Seed = 1, taxonomy: TaxonomyOpt = "builtin") -> None:
    """Simulate a marketplace; write its tables as Parquet and the ground truth under OUT/truth/."""
    from jobmatch.simulate import simulate as run, write_market
    from jobmatch.taxonomy import resolve_taxonomy

    spec = _taxonomy_spec(taxonomy)
    cfg = SimConfig(members=members, days=days, seed=seed)
    start = time.perf_counter()
    with _progress("simulate") as say:
        market = run(resolve_taxonomy(spec), cfg, progress=say)
        say("write")
        write_market(market, out, cfg, spec)
    secs = time.perf_counter() - start
    console.print(f"{market.events.num_rows:,} events, {market.feedback.num_rows:,} feedback events "
                  f"in {secs:.1f}s -> {out}")


@app.command()
def ingest(file: Annotated[Path, typer.Argument(help="JSONL or Parquet batch")], db: Db,
           kind: Annotated[Optional[str], typer.Option(help="events | feedback (default: from the fields)")] = None,
           skip_bad: Annotated[bool, typer.Option("--skip-bad", help="ingest the good rows, reject the bad")] = False,
           rejects: Annotated[Optional[Path], typer.Option(help="where --skip-bad writes bad rows")] = None) -> None:
    """Validate and append a batch of events (or hirer feedback) to the event log, atomically."""
    if kind not in (None, "events", "feedback"):
        raise typer.BadParameter(f"expected events or feedback, got {kind!r}", param_hint="--kind")
    with _progress(f"ingest {file.name}") as say:
        say("validate")
        batch = read_batch(file, kind)  # type: ignore[arg-type]
        if batch.errors and not skip_bad:
            console.print(f"[red]{IngestError(file, batch.errors)}")
            raise typer.Exit(2)
        if batch.errors:
            rejects = rejects or file.with_name(file.name + ".rejects.jsonl")
            rejects.write_text("".join(json.dumps(r) + "\n" for r in batch.rejected))
        say("append")
        with EventLog(db) as log:
            inserted = log.append(batch.kind, batch.rows, source=str(file))
    console.print(f"{inserted:,} new {batch.kind} ({batch.rows.num_rows - inserted:,} already present)"
                  + (f"; {len(batch.errors)} error(s) written to {rejects}" if batch.errors else ""))


@app.command("load-entities")
def load_entities(directory: Annotated[Path, typer.Argument(help="directory with companies/jobs/members/projects"
                                                                 ".parquet")], db: Db) -> None:
    """Upsert entity tables (companies, jobs, members, projects) into the event log."""
    import pyarrow.parquet as pq

    with EventLog(db) as log:
        for name in ("companies", "jobs", "members", "projects"):
            path = directory / f"{name}.parquet"
            if path.is_file():
                log.put_entities(name, pq.read_table(path))
                console.print(f"{name}: {log.count(name):,}")


@app.command()
def sessionize(db: Db, gap_minutes: Annotated[float, typer.Option(help="idle minutes that end a session")] = 30.0
               ) -> None:
    """Bring sessions up to date with the events ingested since the last run (incremental)."""
    with _progress("sessionize"), EventLog(db) as log:
        n = log.sessionize(gap_minutes)
    console.print(f"{n:,} sessions built or rebuilt")


@app.command()
def documents(member_ids: Annotated[list[int], typer.Argument(help="member ids")], db: Db) -> None:
    """Print members' activity documents (one line per session), as in 002's Figure 2."""
    with EventLog(db, read_only=True) as log:
        docs = log.documents(member_ids)
    for m in member_ids:
        typer.echo(f"# member {m}")
        for line in docs.get(m, []):
            typer.echo(line)


@app.command()
def report(db: Db, out: Annotated[Path, typer.Option(help="report directory")]) -> None:
    """Marketplace statistics and plots from an event log."""
    from jobmatch.evaluate.marketplace import marketplace_stats, write_marketplace_report

    with _progress("report"), EventLog(db, read_only=True) as log:
        events, sessions = log.table("events"), log.table("sessions")
        path = write_marketplace_report(marketplace_stats(events, sessions, log.table("feedback")), sessions,
                                        events, out)
    console.print(f"wrote {path}")


def _run_flow(title: str, flow, as_of: str, store_spec: str) -> None:
    """Parse --as-of, open the store, run a dated flow and print its decision as JSON (exit 2 on bad input)."""
    from datetime import datetime

    try:
        day = datetime.fromisoformat(as_of)
    except ValueError:
        raise typer.BadParameter(f"expected a date like 2026-01-20, got {as_of!r}", param_hint="--as-of") from None
    with _progress(title), _open(store_spec) as fs:
        try:
            result = flow(fs, day)
        except ValueError as e:
            console.print(f"[red]{e}")
            raise typer.Exit(2) from None
    typer.echo(json.dumps(result))


@run_app.command("qa")
def run_qa_cmd(as_of: Annotated[str, typer.Option(help="run as of the end of this UTC date (YYYY-MM-DD)")],
               data: DataDir, home: Annotated[Path, typer.Option(help="flow state directory")] = Path("runs/qa"),
               store: Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://…")] = None) -> None:
    """Daily Qualified Applicant run: fresh labels, incremental retrain, quality gate, publish."""
    from jobmatch.flows.qa import run_qa

    _run_flow(f"qa {as_of}", lambda fs, day: run_qa(data, home, fs, day), as_of,
              store or f"sqlite:{home / 'store.sqlite'}")


@run_app.command("activity-embeddings")
def run_activity_cmd(as_of: Annotated[str, typer.Option(help="run as of the end of this UTC date (YYYY-MM-DD)")],
                     data: DataDir, home: Annotated[Path, typer.Option(help="flow state directory")] = Path("runs/activity"),
                     store: Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://…")] = None,
                     epochs: Annotated[int, typer.Option(help="training epochs of the learned aggregators")] = 3) -> None:
    """Compute every registered activity embedding for members with new events and publish them."""
    from jobmatch.flows.activity import run_activity_embeddings

    _run_flow(f"activity embeddings {as_of}",
              lambda fs, day: run_activity_embeddings(data, home, fs, day, epochs=epochs),
              as_of, store or f"sqlite:{home / 'store.sqlite'}")


@run_app.command("intent")
def run_intent_cmd(as_of: Annotated[str, typer.Option(help="run as of the end of this UTC date (YYYY-MM-DD)")],
                   data: DataDir, home: Annotated[Path, typer.Option(help="flow state directory")] = Path("runs/intent"),
                   store: Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://…")] = None,
                   quick: Annotated[bool, typer.Option("--quick", help="tiny models (for trying it out)")] = False,
                   size: IntentSize = "cpu") -> None:
    """Daily user-intent run: user vectors and query suggestions for every active member, published versioned."""
    from jobmatch.flows.intent import run_intent

    config = _intent_config(quick, size)
    _run_flow(f"intent {as_of}", lambda fs, day: run_intent(data, home, fs, day, config=config), as_of,
              store or f"sqlite:{home / 'store.sqlite'}")


@app.command()
def suggest(member_id: Annotated[int, typer.Argument(help="member id")],
            store: Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://…")] = None) -> None:
    """Print a member's suggested job searches (published by `jobmatch run intent`)."""
    from jobmatch.flows.intent import SUGGESTIONS

    with _open(store) as fs:
        found = fs.get_one(SUGGESTIONS, str(member_id))
    if found is None:
        console.print(f"[red]member_id: no suggestions for member {member_id}")
        raise typer.Exit(2)
    for s in found:
        typer.echo(f"{s['score']:.3f}\t{s['query']}")


@run_app.command("main")
def run_main_cmd(out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/main"),
                 members: Members = 20_000, days: Days = 28, seed: Seed = 1,
                 taxonomy: TaxonomyOpt = "builtin") -> None:
    """The main job on embedded defaults: simulate -> ingest -> sessionize -> report -> hiring -> QA -> activity."""
    from jobmatch.flows.main import run_main

    start = time.perf_counter()
    with _progress("main") as say:
        try:
            path = run_main(out, SimConfig(members=members, days=days, seed=seed), _taxonomy_spec(taxonomy), say)
        except ValueError as e:
            console.print(f"[red]{e}")
            raise typer.Exit(2) from None
    console.print(f"wrote {path} in {time.perf_counter() - start:.0f}s")




@evaluate_app.command("hiring")
def evaluate_hiring_cmd(data: DataDir, out: OutDir, seed: Seed = 0) -> None:
    """Candidate ranking with and without per-project online term weights (seed 003)."""
    from jobmatch.evaluate.hiring import evaluate_hiring

    with _progress("evaluate hiring") as say:
        metrics = evaluate_hiring(data, out, seed=seed, say=say)
    n1 = metrics["ndcg@1"]
    console.print(f"NDCG@1 without online {n1['without_online']:.3f}, with online {n1['with_online']:.3f} "
                  f"-> {out / 'report.md'}")


@evaluate_app.command("activity")
def evaluate_activity_cmd(data: DataDir, out: OutDir, seed: Seed = 0,
                          quick: Annotated[bool, typer.Option("--quick", help="small samples, one epoch")] = False
                          ) -> None:
    """Job recommendation with profile features vs each member activity embedding (seed 000)."""
    from jobmatch.evaluate.activity import evaluate_activity

    with _progress("evaluate activity") as say:
        metrics = evaluate_activity(data, out, quick=quick, seed=seed, say=say)
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics["auc"].items()) + f" -> {out / 'report.md'}")


@evaluate_app.command("intent")
def evaluate_intent_cmd(data: DataDir, out: OutDir, seed: Seed = 0,
                        quick: Annotated[bool, typer.Option("--quick", help="1,500 members, tiny models")] = False,
                        size: IntentSize = "cpu") -> None:
    """Query suggestions from user vectors: fastText / BERT with e2e and Slice classifiers (seed 002)."""
    from jobmatch.evaluate.intent import evaluate_intent

    config = _intent_config(quick, size)
    with _progress("evaluate intent") as say:
        evaluate_intent(data, out, config, seed=seed, say=say)
    console.print(f"-> {out / 'report.md'}")


@evaluate_app.command("qa")
def evaluate_qa_cmd(data: DataDir, out: OutDir, seed: Seed = 0) -> None:
    """Qualified Applicant: GBDT vs global vs +per-member vs +per-job, freshness, label latency (seed 001)."""
    from jobmatch.evaluate.qa import evaluate_qa

    with _progress("evaluate qa") as say:
        metrics = evaluate_qa(data, out, seed=seed, say=say)
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics["auc"].items()) + f" -> {out / 'report.md'}")


def _read_columns(path: Path, names: list[str]) -> dict:
    import pyarrow.parquet as pq

    available = set(pq.read_schema(path).names)
    missing = [n for n in names if n not in available]
    if missing:
        console.print(f"[red]{path}: missing column(s) {', '.join(map(repr, missing))}")
        raise typer.Exit(2)
    table = pq.read_table(path, columns=names)
    return {n: table[n].to_numpy() for n in names}


def _columns_of(model) -> list[str]:
    names = [model.response] + [c for c in (model.weight, model.offset) if c]
    for c in model.coordinates:
        names += list(c.features) + ([c.entity] if c.entity else [])
    return list(dict.fromkeys(names))


@game_app.command("train")
def game_train(config: Annotated[Path, typer.Option(help="game.toml")], out: OutDir) -> None:
    """Train a GAME model from a TOML job; writes the model and OUT/metrics.json (AUC after every update)."""
    from jobmatch.game.config import GameJob

    try:
        job = GameJob.from_toml(config)
    except (ValueError, FileNotFoundError) as e:
        console.print(f"[red]{e}")
        raise typer.Exit(2) from None
    model = job.model()
    names = _columns_of(model)
    train = _read_columns(job.data.train, names)
    validation = _read_columns(job.data.validation, names) if job.data.validation else None
    with _progress("game train") as say:
        try:
            model.fit(train, validation, say=say)
        except ValueError as e:
            console.print(f"[red]{e}")
            raise typer.Exit(2) from None
    model.save(out)
    metrics = {"steps": [{"pass": s.pass_, "coordinate": s.coordinate, "auc": s.auc} for s in model.steps_],
               "best_auc": model.best_auc_}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    console.print(f"best validation AUC {model.best_auc_} -> {out}" if model.best_auc_ is not None else f"-> {out}")


@game_app.command("score")
def game_score(model_dir: Annotated[Path, typer.Option("--model", help="a saved GAME model")],
               data: Annotated[Path, typer.Option(help="Parquet to score")],
               out: Annotated[Path, typer.Option(help="Parquet with probability and per-coordinate scores")]) -> None:
    """Score a Parquet file with a saved model: probability plus each coordinate's contribution (log-odds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobmatch.game.model import GameModel

    model = GameModel.load(model_dir)
    names = [n for n in _columns_of(model) if n != model.response]
    cols = _read_columns(data, names)
    parts = model.contributions(cols)
    table = pa.table({"probability": model.predict_proba(cols), **{f"score_{k}": v for k, v in parts.items()}})
    pq.write_table(table, out)
    console.print(f"{table.num_rows:,} rows -> {out}")


@qa_app.command("rollback")
def qa_rollback(store: Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://…")] = None) -> None:
    """Put the previously published Qualified Applicant coefficients back."""
    from jobmatch.flows.qa import rollback

    with _open(store) as fs:
        typer.echo(f"qa/coefficients: version {rollback(fs)} is current")


StoreSpec = Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://HOST:PORT/DB (default: settings)")]


def _open(spec: Optional[str]):
    from jobmatch.store import open_store

    return open_store(spec or Settings().store_spec)


@store_app.command("ls")
def store_ls(store: StoreSpec = None) -> None:
    """Datasets with their current and kept versions."""
    with _open(store) as fs:
        for name in fs.datasets():
            typer.echo(f"{name}\tcurrent={fs.current_version(name)}\tversions={fs.versions(name)}")


@store_app.command("get")
def store_get(dataset: str, keys: list[str], store: StoreSpec = None,
              version: Annotated[Optional[int], typer.Option()] = None) -> None:
    """Print values (vectors as lists) of KEYS in DATASET."""
    import numpy as np

    with _open(store) as fs:
        for k, v in zip(keys, fs.get(dataset, keys, version)):
            typer.echo(f"{k}\t{json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)}")


@store_app.command("rollback")
def store_rollback(dataset: str, store: StoreSpec = None) -> None:
    """Make the previous version of DATASET current again."""
    with _open(store) as fs:
        typer.echo(f"{dataset}: version {fs.rollback(dataset)} is current")


if __name__ == "__main__":
    app()
