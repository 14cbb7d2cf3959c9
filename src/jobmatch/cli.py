"""`jobmatch` command line.

Every command works in one home folder (`--home`, or JOBMATCH_HOME; default runs/main) holding the event log,
the feature store, the flows' models and the reports, so `run main` -> `suggest` -> `store ls` -> `serve` need no
flags; `--db` and `--store` still override. A user's mistake is one red line and exit code 2 (`--debug` shows the
traceback); progress is a live line on a terminal and one timestamped line per stage otherwise.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from jobmatch.config import Settings
from jobmatch.nearline.commands import register as register_worker
from jobmatch.serve.commands import register as register_serve
from jobmatch.studies.commands import register as register_studies

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Personalization signals for job marketplaces.")
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


class _Options:
    home: Path = Path("runs/main")
    debug: bool = False


OPTIONS = _Options()


@app.callback()
def _global(home: Annotated[Optional[Path], typer.Option(help="the folder holding the log, the store, models and "
                                                              "reports (default: JOBMATCH_HOME or runs/main)")] = None,
            debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    OPTIONS.home = home or Settings().home
    OPTIONS.debug = debug


def _db(db: Optional[Path]) -> Path:
    return db or OPTIONS.home / "events.duckdb"


def _store_spec(spec: Optional[str]) -> str:
    return spec or Settings(home=OPTIONS.home).store_spec


def _flows_home() -> Path:
    return OPTIONS.home / "flows"


Members = Annotated[int, typer.Option(help="number of members to simulate")]
Days = Annotated[int, typer.Option(help="length of the simulated period in days")]
Seed = Annotated[int, typer.Option(help="random seed; the same seed gives byte-identical files")]
TaxonomyOpt = Annotated[str, typer.Option(help="'builtin' or 'onet:PATH' (a directory of O*NET tables)")]
Db = Annotated[Optional[Path], typer.Option(help="event log file (default: HOME/events.duckdb)")]
StoreSpec = Annotated[Optional[str], typer.Option(help="sqlite:PATH or redis://HOST:PORT/DB "
                                                       "(default: JOBMATCH_STORE or sqlite:HOME/store.sqlite)")]
OutDir = Annotated[Path, typer.Option(help="where report.md, plots and metrics.json go")]
AsOf = Annotated[Optional[str], typer.Option(help="run as of the end of this UTC day (YYYY-MM-DD; default: the "
                                                  "last complete day in the log)")]
EvalData = Annotated[Optional[Path], typer.Option(help="a folder of batches (a simulator's output or an export) to "
                                                       "ingest into OUT/events.duckdb and evaluate, instead of --db")]
TruthOpt = Annotated[Optional[Path], typer.Option(help="the simulator's truth folder, for the measures that need "
                                                       "ground truth (simulated data only)")]
EngineOpt = Annotated[str, typer.Option(help="local (in this process) | spark (PySpark; `pip install "
                                            "'jobmatch[spark]'` and Java 17)")]
Master = Annotated[Optional[str], typer.Option(help="with --engine spark: the Spark master URL (spark://HOST:7077, "
                                                    "yarn, k8s://..., local[N]; default local[*])")]
IntentSize = Annotated[str, typer.Option(help="model sizes: cpu (full size, about 20 minutes on 2 cores) | main "
                                              "(the main job's) | quick (tiny, under 3 minutes) | paper (002's "
                                              "BERT, for a GPU)")]


@contextmanager
def _progress(title: str) -> Iterator[Callable[[str], None]]:
    """A live status line on a terminal; one timestamped line per stage otherwise (logs, CI)."""
    start = time.perf_counter()
    if console.is_terminal:
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task(title, total=None)
            yield lambda msg: bar.update(task, description=escape(f"{title}: {msg}"))
            bar.update(task, description=f"{title}: done")
        return
    last = [""]

    def say(msg: str) -> None:
        if msg != last[0]:
            last[0] = msg
            stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
            console.print(escape(f"{stamp} [{time.perf_counter() - start:6.0f}s] {title}: {msg}"), highlight=False,
                          soft_wrap=True)
    yield say
    say("done")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _day(as_of: Optional[str], log=None) -> date:
    if as_of is None:
        from jobmatch.flows.state import last_complete_day

        day = last_complete_day(log) if log is not None else None
        if day is None:
            raise _fail("--as-of: the event log holds no events to date a run by; ingest events first")
        return day
    try:
        return date.fromisoformat(as_of)
    except ValueError:
        raise _fail(f"--as-of: expected a date like 2026-01-20, got {as_of!r}") from None


def _intent_config(quick: bool, size: str):
    from jobmatch.intent.config import IntentConfig

    try:
        return IntentConfig.named("quick" if quick else size)
    except ValueError as e:
        raise _fail(f"--size: {e}") from None


def _taxonomy_spec(spec: str) -> str:
    if spec == "onet":
        path = Settings().onet_path
        if path is None:
            raise _fail("--taxonomy onet needs JOBMATCH_ONET_PATH, or use onet:PATH")
        return f"onet:{path}"
    return spec


def _sim_config(**kwargs):
    from pydantic import ValidationError

    from jobmatch.simulate import SimConfig

    try:
        return SimConfig(**kwargs)
    except ValidationError as e:
        first = e.errors()[0]
        raise _fail(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']} (got {first.get('input')!r})"
                    ) from None


def _open_log(db: Path, read_only: bool = False, create: bool = True):
    from jobmatch.events import EventLog

    if (read_only or not create) and not db.is_file():
        raise _fail(f"--db: no event log at {str(db)!r} (run `jobmatch run main`, or ingest into it first)")
    return EventLog(db, read_only=read_only, lock_timeout_s=Settings().lock_timeout_s)


@contextmanager
def _engine(name: str, master: Optional[str]) -> Iterator:
    """The batch engine for a command, closed after it."""
    from jobmatch.engine import EngineError, open_engine

    try:
        engine = open_engine(name, master)
    except EngineError as e:
        raise _fail(str(e)) from None
    try:
        yield engine
    finally:
        engine.close()


def _open_store(spec: str, create: bool = False):
    from jobmatch.store import open_store

    return open_store(spec, create=create)


# -- producers and the log -------------------------------------------------------------------------------------
@app.command()
def simulate(out: Annotated[Path, typer.Option(help="where the data tables go")],
             truth: Annotated[Optional[Path], typer.Option(help="where the latent truth goes (default: OUT-truth "
                                                                "beside OUT)")] = None,
             members: Members = 20_000, days: Days = 28, seed: Seed = 1, taxonomy: TaxonomyOpt = "builtin") -> None:
    """Simulate a marketplace: its tables (Parquet) in OUT, its ground truth in a separate folder."""
    from jobmatch.simulate import simulate as run, write_market
    from jobmatch.taxonomy import resolve_taxonomy

    spec = _taxonomy_spec(taxonomy)
    cfg = _sim_config(members=members, days=days, seed=seed)
    start = time.perf_counter()
    with _progress("simulate") as say:
        market = run(resolve_taxonomy(spec), cfg, progress=say)
        say("write")
        write_market(market, out, cfg, spec, truth=truth)
    console.print(f"{market.events.num_rows:,} events, {market.feedback.num_rows:,} feedback events "
                  f"in {time.perf_counter() - start:.1f}s -> {out}")


STREAM_KIND_HELP = "events | feedback | impressions | hirer_impressions (default: from the fields)"


@app.command()
def ingest(file: Annotated[Path, typer.Argument(help="JSONL or Parquet batch")], db: Db = None,
           kind: Annotated[Optional[str], typer.Option(help=STREAM_KIND_HELP)] = None,
           skip_bad: Annotated[bool, typer.Option("--skip-bad", help="ingest the good rows, set the bad aside")] = False,
           rejects: Annotated[Optional[Path], typer.Option(help="where --skip-bad writes the bad rows, as they came "
                                                                "(default: FILE.rejects.jsonl)")] = None,
           strict: Annotated[bool, typer.Option("--strict", help="refuse the batch if an id was sent before with "
                                                                 "different content")] = False) -> None:
    """Validate and append a batch atomically (events, hirer feedback, seeker or hirer impressions)."""
    from jobmatch.events import IngestError, read_batch, write_rejects
    from jobmatch.schema import STREAM_KINDS

    if kind is not None and kind not in STREAM_KINDS:
        raise _fail(f"--kind: expected one of {', '.join(STREAM_KINDS)}, got {kind!r}")
    with _progress(f"ingest {file.name}") as say:
        say("validate")
        batch = read_batch(file, kind, Settings().time_bounds())
        if batch.errors and not skip_bad:
            raise _fail(str(IngestError(file, batch.errors)))
        if batch.errors:
            rejects = rejects or file.with_name(file.name + ".rejects.jsonl")
            errors_file = write_rejects(batch, rejects)
        say("append")
        with _open_log(_db(db)) as log:
            result = log.append(batch.kind, batch.rows, source=str(file), strict=strict)
    message = f"{result.inserted:,} new {batch.kind} ({result.duplicates:,} already present)"
    if result.conflicts:
        shown = ", ".join(map(repr, result.conflicts[:5])) + (" ..." if len(result.conflicts) > 5 else "")
        message += (f"; {len(result.conflicts):,} id(s) sent before with different content were ignored ({shown}; "
                    "--strict refuses such batches)")
    if batch.errors:
        message += (f"; {len(batch.rejected):,} bad row(s) set aside in {rejects} (fix them and ingest that file; "
                    f"what was wrong: {errors_file})")
    console.print(escape(message))


@app.command("load-entities")
def load_entities_cmd(directory: Annotated[Path, typer.Argument(help="folder with companies/jobs/members/projects "
                                                                      "(.parquet or .jsonl)")], db: Db = None) -> None:
    """Validate and upsert entity tables (companies, jobs, members, projects) into the event log."""
    from jobmatch.events.loading import load_entities

    if not directory.is_dir():
        raise _fail(f"{directory}: no such folder")
    with _open_log(_db(db)) as log:
        counts = load_entities(log, directory, Settings().time_bounds())
        for name in counts:
            console.print(f"{name}: {counts[name]:,} upserted, {log.count(name):,} in the log")


@app.command()
def sessionize(db: Db = None,
               gap_minutes: Annotated[float, typer.Option(help="idle minutes that end a session")] = 30.0) -> None:
    """Bring sessions up to date with the events ingested since the last run (incremental)."""
    if not gap_minutes > 0:
        raise _fail(f"--gap-minutes: must be a positive number of minutes, got {gap_minutes:g}")
    with _progress("sessionize"), _open_log(_db(db)) as log:
        n = log.sessionize(gap_minutes)
    console.print(f"{n:,} sessions built or rebuilt")


@app.command()
def documents(member_ids: Annotated[list[int], typer.Argument(help="member ids")], db: Db = None) -> None:
    """Print members' activity documents (one line per session), as in 002's Figure 2."""
    with _open_log(_db(db), read_only=True) as log:
        docs = log.documents(member_ids)
    unknown = [m for m in member_ids if m not in docs]
    if len(unknown) == len(member_ids):
        raise _fail(f"member_id: no events for member(s) {', '.join(map(str, unknown))} in {_db(db)}")
    for m in member_ids:
        typer.echo(f"# member {m}" + ("" if m in docs else " (no events)"))
        for line in docs.get(m, []):
            typer.echo(line)


@app.command()
def report(db: Db = None, out: Annotated[Optional[Path], typer.Option(help="report folder (default: HOME)")] = None
           ) -> None:
    """Marketplace statistics and plots from the event log."""
    from jobmatch.evaluate.marketplace import marketplace_stats, write_marketplace_report

    with _progress("report"), _open_log(_db(db), read_only=True) as log:
        snap = log.snapshot()
        events, sessions = snap.events(), snap.sessions()
        path = write_marketplace_report(marketplace_stats(events, sessions, snap.feedback()), sessions, events,
                                        out or OPTIONS.home)
    console.print(f"wrote {path}")


# -- flows -----------------------------------------------------------------------------------------------------
def _run_dated(title: str, step, as_of: Optional[str], db: Optional[Path], store: Optional[str],
               engine: str = "local", master: Optional[str] = None) -> None:
    """Open the log and the store, run a dated flow, print its result as JSON (exit 2 when it could not run)."""
    from jobmatch.flows.state import FlowContext

    spec = _store_spec(store)
    with _open_log(_db(db), create=False) as log:
        day = _day(as_of, log)
        with _engine(engine, master) as eng, _progress(f"{title} {day}") as say, \
                _open_store(spec, create=True) as fs:
            ctx = FlowContext.create(log, fs, spec, _flows_home(), day, say=say, engine=eng)
            result = step(ctx)
    typer.echo(json.dumps(result, indent=2))
    flows = result.values() if all(isinstance(v, dict) for v in result.values()) else [result]
    for r in flows:
        if r.get("status") in ("skipped", "failed"):
            console.print(escape(f"{r.get('as_of', '')}: {r['status']}: {r['reason']}"), style="yellow",
                          soft_wrap=True)
            if OPTIONS.debug and r.get("traceback"):
                console.print(escape(r["traceback"]))
    if any(r.get("status") == "failed" for r in flows):
        raise typer.Exit(1)


@run_app.command("daily")
def run_daily_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None,
                  only: Annotated[Optional[str], typer.Option(help="comma-separated subset of hiring,qa,activity,"
                                                                   "intent,audience,search_ranking")] = None,
                  size: IntentSize = "cpu", engine: EngineOpt = "local", master: Master = None) -> None:
    """Every flow on what the log holds as of a day: hiring, QA, activity embeddings, intent, audience, search ranking.

    With --engine spark, hiring's feedback counts (Spark SQL over the log's Parquet export) and the activity
    embeddings' inference (per partition of members) run on Spark; the rest of hiring (the ranker), QA, intent,
    audience and search ranking run in this process, as with --engine local. The results are the same.
    """
    from jobmatch.flows.daily import FLOWS, DailyConfig, run_daily

    try:
        cfg = DailyConfig(flows=tuple(only.split(",")) if only else FLOWS, intent=_intent_config(False, size))
    except ValueError as e:
        raise _fail(f"--only: {e}") from None
    _run_dated("daily", lambda ctx: run_daily(ctx, cfg), as_of, db, store, engine, master)


@run_app.command("hiring")
def run_hiring_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None) -> None:
    """Hirer preferences: new feedback into each project's counts; the candidate ranker retrained weekly."""
    from jobmatch.flows.hiring import run_hiring

    _run_dated("hiring", run_hiring, as_of, db, store)


@run_app.command("qa")
def run_qa_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None) -> None:
    """Daily Qualified Applicant run: fresh labels, incremental retrain, quality gate, publish."""
    from jobmatch.flows.qa import run_qa

    _run_dated("qa", run_qa, as_of, db, store)


@run_app.command("activity-embeddings")
def run_activity_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None,
                     epochs: Annotated[int, typer.Option(help="training epochs of the learned aggregators")] = 3
                     ) -> None:
    """Compute every registered activity embedding for members whose window changed, and publish them."""
    from jobmatch.flows.activity import run_activity_embeddings

    _run_dated("activity embeddings", lambda ctx: run_activity_embeddings(ctx, epochs=epochs), as_of, db, store)


@run_app.command("intent")
def run_intent_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None,
                   quick: Annotated[bool, typer.Option("--quick", help="tiny models (under 3 minutes)")] = False,
                   size: IntentSize = "cpu") -> None:
    """Daily user-intent run: user vectors and query suggestions for active members, published versioned."""
    from jobmatch.flows.intent import run_intent

    config = _intent_config(quick, size)
    _run_dated("intent", lambda ctx: run_intent(ctx, config=config), as_of, db, store)


@run_app.command("audience")
def run_audience_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None) -> None:
    """Audience expansion: each open job's query clauses over profiles, predicted entities and similar seekers."""
    from jobmatch.flows.audience import run_audience

    _run_dated("audience", run_audience, as_of, db, store)


@run_app.command("search-ranking")
def run_search_ranking_cmd(as_of: AsOf = None, db: Db = None, store: StoreSpec = None) -> None:
    """Retrain the search ranker with the published user vectors as its tower input, and publish it."""
    from jobmatch.flows.search_ranking import run_search_ranking

    _run_dated("search ranking", run_search_ranking, as_of, db, store)


@run_app.command("main")
def run_main_cmd(members: Members = 20_000, days: Days = 28, seed: Seed = 1, taxonomy: TaxonomyOpt = "builtin",
                 size: IntentSize = "main") -> None:
    """The whole system on a simulated marketplace: simulate -> ingest -> run daily -> four evaluations -> report."""
    from jobmatch.main_job import run_main

    cfg = _sim_config(members=members, days=days, seed=seed)
    intent = _intent_config(False, size)
    start = time.perf_counter()
    with _progress("main") as say:
        path = run_main(OPTIONS.home, cfg, _taxonomy_spec(taxonomy), say, intent=intent)
    console.print(f"wrote {path} in {time.perf_counter() - start:.0f}s")


@app.command()
def suggest(member_id: Annotated[int, typer.Argument(help="member id")], store: StoreSpec = None) -> None:
    """Print a member's suggested job searches (published by the intent flow)."""
    from jobmatch.flows.intent import SUGGESTIONS

    with _open_store(_store_spec(store)) as fs:
        if fs.current_version(SUGGESTIONS) is None:
            raise _fail(f"{SUGGESTIONS}: nothing published in {_store_spec(store)} yet (run `jobmatch run daily`)")
        found = fs.get_one(SUGGESTIONS, str(member_id))
    if found is None:
        raise _fail(f"member_id: no suggestions for member {member_id} (members active in the last 28 days get "
                    "suggestions)")
    for s in found:
        typer.echo(f"{s['score']:.3f}\t{s['query']}")


# -- evaluations -----------------------------------------------------------------------------------------------
@contextmanager
def _eval_log(db: Optional[Path], data: Optional[Path], out: Path, say) -> Iterator:
    """The log to evaluate: --db (default HOME's), or --data ingested into OUT/events.duckdb first."""
    from jobmatch.events import EventLog
    from jobmatch.events.loading import ingest_folder

    if data is not None:
        if db is not None:
            raise _fail("--data and --db: give one of them")
        if not data.is_dir():
            raise _fail(f"--data: no such folder {str(data)!r}")
        out.mkdir(parents=True, exist_ok=True)
        (out / "events.duckdb").unlink(missing_ok=True)
        with EventLog(out / "events.duckdb") as log:
            ingest_folder(log, data, Settings().time_bounds(), say=say)
            log.sessionize()
            yield log
        return
    with _open_log(_db(db), read_only=True) as log:
        yield log


def _truth(truth: Optional[Path], data: Optional[Path] = None):
    """--truth; else the truth beside a simulated --data folder (`<data>-truth`); else HOME/truth (the main job's)."""
    from jobmatch.evaluate.truth import Truth
    from jobmatch.simulate import truth_dir

    if truth is None:
        return Truth.find(truth_dir(data) if data is not None else OPTIONS.home / "truth")
    try:
        return Truth(truth)
    except FileNotFoundError as e:
        raise _fail(f"--truth: {e}") from None


@evaluate_app.command("hiring")
def evaluate_hiring_cmd(out: OutDir, db: Db = None, data: EvalData = None, truth: TruthOpt = None,
                        seed: Seed = 0) -> None:
    """Candidate ranking with and without per-project online term weights (seed 003)."""
    from jobmatch.evaluate.hiring import evaluate_hiring

    with _progress("evaluate hiring") as say, _eval_log(db, data, out, say) as log:
        metrics = evaluate_hiring(log, out, _truth(truth, data), seed=seed, say=say)
    n1 = metrics["ndcg@1"]
    console.print(f"NDCG@1 without online {n1['without_online']:.3f}, with online {n1['with_online']:.3f} "
                  f"-> {out / 'report.md'}")


@evaluate_app.command("activity")
def evaluate_activity_cmd(out: OutDir, db: Db = None, data: EvalData = None, truth: TruthOpt = None,
                          seed: Seed = 0,
                          quick: Annotated[bool, typer.Option("--quick", help="small samples, one epoch")] = False
                          ) -> None:
    """Job recommendation with profile features vs each member activity embedding (seed 000)."""
    from jobmatch.evaluate.activity import evaluate_activity

    with _progress("evaluate activity") as say, _eval_log(db, data, out, say) as log:
        metrics = evaluate_activity(log, out, _truth(truth, data), quick=quick, seed=seed, say=say)
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics["auc"].items()) + f" -> {out / 'report.md'}")


@evaluate_app.command("intent")
def evaluate_intent_cmd(out: OutDir, db: Db = None, data: EvalData = None, seed: Seed = 0,
                        quick: Annotated[bool, typer.Option("--quick", help="1,500 members, tiny models")] = False,
                        size: IntentSize = "cpu") -> None:
    """Query suggestions from user vectors: fastText / BERT with e2e and Slice classifiers (seed 002)."""
    from jobmatch.evaluate.intent import evaluate_intent

    config = _intent_config(quick, size)
    with _progress("evaluate intent") as say, _eval_log(db, data, out, say) as log:
        evaluate_intent(log, out, config, seed=seed, say=say)
    console.print(f"-> {out / 'report.md'}")


@evaluate_app.command("qa")
def evaluate_qa_cmd(out: OutDir, db: Db = None, data: EvalData = None, seed: Seed = 0) -> None:
    """Qualified Applicant: GBDT vs global vs +per-member vs +per-job, freshness, label latency (seed 001)."""
    from jobmatch.evaluate.qa import evaluate_qa

    with _progress("evaluate qa") as say, _eval_log(db, data, out, say) as log:
        metrics = evaluate_qa(log, out, seed=seed, say=say)
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics["auc"].items()) + f" -> {out / 'report.md'}")


@evaluate_app.command("audience")
def evaluate_audience_cmd(out: OutDir, db: Db = None, data: EvalData = None, truth: TruthOpt = None,
                          seed: Seed = 0, quick: Annotated[bool, typer.Option("--quick", help="tiny models")] = False
                          ) -> None:
    """Audience expansion: appliers reached and expansion precision by threshold, ANN recall vs exact (seed 002)."""
    from jobmatch.evaluate.audience import PAPER_THRESHOLD, evaluate_audience

    with _progress("evaluate audience") as say, _eval_log(db, data, out, say) as log:
        evaluate_audience(log, out, _truth(truth, data), quick=quick, seed=seed, say=say)
    console.print(f"expansion at threshold {PAPER_THRESHOLD} -> {out / 'report.md'}")


@evaluate_app.command("search-ranking")
def evaluate_search_ranking_cmd(out: OutDir, db: Db = None, data: EvalData = None, truth: TruthOpt = None,
                                seed: Seed = 0,
                                quick: Annotated[bool, typer.Option("--quick", help="tiny models")] = False) -> None:
    """Search ranking with and without the user-vector tower: NDCG@10/25 and AUC per list (seed 002)."""
    from jobmatch.evaluate.search_ranking import evaluate_search_ranking

    with _progress("evaluate search ranking") as say, _eval_log(db, data, out, say) as log:
        metrics = evaluate_search_ranking(log, out, _truth(truth, data), quick=quick, seed=seed, say=say)
    console.print(" ".join(f"{k} {v:.4f}" for k, v in metrics["ndcg@25"].items() if v is not None)
                  + f" -> {out / 'report.md'}")


@evaluate_app.command("candidate-selection")
def evaluate_candidate_selection_cmd(out: OutDir, db: Db = None, data: EvalData = None, truth: TruthOpt = None,
                                     seed: Seed = 0,
                                     quick: Annotated[bool, typer.Option("--quick", help="tiny models")] = False
                                     ) -> None:
    """Job candidate selection: profile clauses vs + fastText / Slice / SANNS predicted entities (seed 002)."""
    from jobmatch.evaluate.candidate_selection import evaluate_candidate_selection

    with _progress("evaluate candidate selection") as say, _eval_log(db, data, out, say) as log:
        evaluate_candidate_selection(log, out, _truth(truth, data), quick=quick, seed=seed, say=say)
    console.print(f"-> {out / 'report.md'}")


# -- GAME on any data ------------------------------------------------------------------------------------------
@game_app.command("train")
def game_train(config: Annotated[Path, typer.Option(help="game.toml (see examples/game/game.toml)")], out: OutDir,
               threads: Annotated[Optional[int], typer.Option(help="BLAS/torch threads (default: the cores)")] = None,
               engine: EngineOpt = "local", master: Master = None) -> None:
    """Train a GAME model from a TOML job; writes the model, OUT/metrics.json and OUT/report.md.

    With --engine spark the fixed effect is fit by Newton's method over partition sums and each random effect
    per bucket of entities on the executors; the model matches --engine local's to rounding (see
    jobmatch.game.spark for the exceptions: max_samples, float32).
    """
    from jobmatch.game.job import train_job

    if engine == "spark" and threads is not None:
        raise _fail("--threads: only for --engine local (Spark's executors set their own cores)")
    with _engine(engine, master) as eng, _progress("game train") as say:
        if eng.distributed:
            from jobmatch.game.spark import train_job_spark

            metrics = train_job_spark(config, out, eng, say=say)
        else:
            metrics = train_job(config, out, threads=threads, say=say)
    best = metrics.get("best_auc")
    console.print(f"best validation AUC {best:.4f} -> {out}" if best is not None else f"-> {out}")


@game_app.command("score")
def game_score(model_dir: Annotated[Path, typer.Option("--model", help="a saved GAME model")],
               data: Annotated[Path, typer.Option(help="Parquet to score")],
               out: Annotated[Path, typer.Option(help="Parquet with probability and per-coordinate scores")]) -> None:
    """Score a Parquet file with a saved model: probability plus each coordinate's contribution (log-odds)."""
    from jobmatch.game.job import score_file

    n = score_file(model_dir, data, out)
    console.print(f"{n:,} rows -> {out}")


@app.command()
def export(out: Annotated[Path, typer.Option(help="the folder for <kind>.parquet (one file per stream and entity "
                                                  "table)")],
           as_of: Annotated[Optional[str], typer.Option(help="only what the log holds as of the end of this UTC day "
                                                             "(YYYY-MM-DD; default: everything)")] = None,
           db: Db = None) -> None:
    """Export the event log to Parquet: what a Spark cluster (or any Parquet reader) takes as input."""
    from jobmatch.flows.export import export_snapshot
    from jobmatch.flows.state import day_end_us

    with _open_log(_db(db), read_only=True) as log, _progress("export") as say:
        snap = log.snapshot(day_end_us(_day(as_of, log))[1] if as_of else None)
        say("write")
        paths = export_snapshot(snap, out)
    for kind, (path, rows) in paths.items():
        console.print(f"{kind}: {rows:,} rows -> {path}")


# -- the feature store -----------------------------------------------------------------------------------------
@qa_app.command("rollback")
def qa_rollback(store: StoreSpec = None) -> None:
    """Put the previously published Qualified Applicant model back (coefficients, features and meta together)."""
    from jobmatch.flows.qa import rollback

    with _open_store(_store_spec(store)) as fs:
        typer.echo(f"qa: version {rollback(fs)} is current")


@store_app.command("ls")
def store_ls(store: StoreSpec = None) -> None:
    """Datasets with their current and kept versions, and the model manifests."""
    with _open_store(_store_spec(store)) as fs:
        names = fs.datasets()
        if not names:
            console.print(f"{_store_spec(store)}: no dataset published yet")
        for name in names:
            typer.echo(f"{name}\tcurrent={fs.current_version(name)}\tversions={fs.versions(name)}")
        for group in fs.groups():
            m = fs.manifest(group)
            typer.echo(f"manifest {group}\tversion={m.version}\t{json.dumps(m.meta)[:120]}")


@store_app.command("get")
def store_get(dataset: str, keys: list[str], store: StoreSpec = None,
              version: Annotated[Optional[int], typer.Option()] = None) -> None:
    """Print values (vectors as lists) of KEYS in DATASET."""
    import numpy as np

    with _open_store(_store_spec(store)) as fs:
        if fs.current_version(dataset) is None:
            raise _fail(f"dataset: {dataset!r} is not in {_store_spec(store)} (see `jobmatch store ls`)")
        values = fs.get(dataset, keys, version)
    missing = [k for k, v in zip(keys, values) if v is None]
    for k, v in zip(keys, values):
        if v is not None:
            typer.echo(f"{k}\t{json.dumps(v.tolist() if isinstance(v, np.ndarray) else v)}")
    if missing:
        raise _fail(f"key: not in {dataset}: {', '.join(missing)}")


@store_app.command("rollback")
def store_rollback(dataset: str, store: StoreSpec = None) -> None:
    """Make the previous version of DATASET (or of a model manifest: qa, activity, intent, hiring) current."""
    with _open_store(_store_spec(store)) as fs:
        if dataset in fs.groups():
            typer.echo(f"{dataset}: manifest version {fs.rollback_group(dataset).version} is current")
        else:
            typer.echo(f"{dataset}: version {fs.rollback(dataset)} is current")


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or environment can cause (bad files, options, ids, stores): one line, exit 2. Anything
    else is a bug and keeps its traceback."""
    from jobmatch.events import LogError
    from jobmatch.store import StoreError

    return (ValueError, LogError, StoreError, FileNotFoundError, LookupError)


# serving and nearline commands live with their layers; added last so `--help` lists them after the flows
register_serve(app)
register_worker(app)
register_studies(app)


def main() -> None:
    """The entry point: a user's mistake is one red line and exit code 2, never a traceback (unless --debug)."""
    try:
        app()
    except _user_errors() as e:
        if OPTIONS.debug:
            traceback.print_exc()
        message = str(e).strip() if not isinstance(e, KeyError) else str(e.args[0])
        console.print(f"[red]{escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
