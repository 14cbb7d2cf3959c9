"""The main job on embedded defaults: simulate -> ingest -> sessionize -> report -> hiring -> QA -> activity."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from jobmatch.evaluate.activity import evaluate_activity
from jobmatch.evaluate.hiring import evaluate_hiring
from jobmatch.evaluate.qa import evaluate_qa
from jobmatch.evaluate.marketplace import marketplace_stats, write_marketplace_report
from jobmatch.events import EventLog, IngestError, read_batch
from jobmatch.hiring.dataset import candidate_impressions
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.state import SQLiteProjectCounts
from jobmatch.flows.activity import run_activity_embeddings
from jobmatch.flows.qa import run_qa
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import SQLiteStore
from jobmatch.taxonomy import resolve_taxonomy

Say = Callable[[str], None]
ENTITIES = ("companies", "jobs", "members", "projects")
BATCH = 5000
MIN_DAYS = 21


def ingest_market(data: Path, log: EventLog, say: Say) -> dict[str, int]:
    """Load a simulated (or exported) marketplace directory into the event log."""
    for name in ENTITIES:
        log.put_entities(name, pq.read_table(data / f"{name}.parquet"))
    counts = {}
    for kind in ("events", "feedback"):
        say(f"ingest {kind}")
        batch = read_batch(data / f"{kind}.parquet", kind)
        if batch.errors:
            raise IngestError(data / f"{kind}.parquet", batch.errors)
        counts[kind] = log.append(kind, batch.rows, source=str(data / f"{kind}.parquet"))
    return counts


def run_main(out: str | Path, cfg: SimConfig, taxonomy: str = "builtin", say: Say | None = None,
             gap_minutes: float = 30.0) -> Path:
    say = say or (lambda _m: None)
    if cfg.days < MIN_DAYS:
        raise ValueError(f"days: the main job's evaluations need at least {MIN_DAYS} days (a training and a test "
                         f"week after two weeks of history), got {cfg.days}")
    out = Path(out)
    data = out / "data"
    say("load taxonomy")
    tax = resolve_taxonomy(taxonomy)
    market = simulate(tax, cfg, progress=lambda m: say(f"simulate: {m}"))
    say("write simulation")
    write_market(market, data, cfg, taxonomy)
    db = out / "events.duckdb"
    db.unlink(missing_ok=True)
    (out / "store.sqlite").unlink(missing_ok=True)
    shutil.rmtree(out / "flows", ignore_errors=True)
    with EventLog(db) as log:
        counts = ingest_market(data, log, say)
        say("sessionize")
        log.sessionize(gap_minutes)
        say("report")
        events = log.table("events")
        sessions = log.table("sessions")
        stats = marketplace_stats(events, sessions, log.table("feedback"))
    hiring = run_hiring(data, out, say)
    qa = run_qa_step(data, out, cfg, say)
    activity = run_activity_step(data, out, cfg, say)
    preface = (f"Simulated with `--members {cfg.members} --days {cfg.days} --seed {cfg.seed} --taxonomy {taxonomy}`; "
               f"ingested {counts['events']:,} events and {counts['feedback']:,} hirer feedback events; "
               f"sessions split at {gap_minutes:g} idle minutes.\n\n"
               f"Hirer preferences (seed 003): candidate ranking NDCG@1 {hiring['ndcg@1']['without_online']:.3f} "
               f"without and {hiring['ndcg@1']['with_online']:.3f} with per-project online term weights; see "
               "[hiring/report.md](hiring/report.md). Per-project counts are in `store.sqlite` for serving.\n\n"
               f"Qualified Applicant (seed 001): test AUC GBDT {qa['auc']['gbdt']:.3f}, global "
               f"{qa['auc']['global']:.3f}, +member {qa['auc']['global+member']:.3f}, +job "
               f"{qa['auc']['global+member+job']:.3f}; see [qa/report.md](qa/report.md). The daily flow's model as of "
               "the last day is published to `store.sqlite` (`qa/coefficients`).\n\n"
               "Member activity embeddings (seed 000): job recommendation AUC "
               + ", ".join(f"{k} {v:.3f}" for k, v in activity["auc"].items())
               + "; see [activity/report.md](activity/report.md). Every registered encoder's embeddings as of the last "
               "day are published to `store.sqlite` (`activity_embedding/<encoder>-v1`).")
    return write_marketplace_report(stats, sessions, events, out, preface=preface)


def run_qa_step(data: Path, out: Path, cfg: SimConfig, say: Say) -> dict:
    """Evaluate the Qualified Applicant model, then run the daily flow once as of the period's last day."""
    say("qa: evaluate")
    metrics = evaluate_qa(data, out / "qa", say=lambda m: say(f"qa: {m}"))
    say("qa: daily flow")
    last_day = cfg.start + timedelta(days=cfg.days - 1)
    with SQLiteStore(out / "store.sqlite") as store:
        run_qa(data, out / "flows", store, last_day)
    return metrics


def run_activity_step(data: Path, out: Path, cfg: SimConfig, say: Say) -> dict:
    """Evaluate the activity embeddings, then run the inference flow once as of the period's last day."""
    say("activity: evaluate")
    metrics = evaluate_activity(data, out / "activity", say=lambda m: say(f"activity: {m}"))
    say("activity: inference flow")
    with SQLiteStore(out / "store.sqlite") as store:
        run_activity_embeddings(data, out / "flows", store, cfg.start + timedelta(days=cfg.days - 1))
    return metrics


def run_hiring(data: Path, out: Path, say: Say) -> dict:
    """Evaluate the hiring ranker, then load every project's feedback counts into the embedded store."""
    say("hiring: evaluate")
    metrics = evaluate_hiring(data, out / "hiring", say=lambda m: say(f"hiring: {m}"))
    say("hiring: per-project term counts")
    members, projects = pq.read_table(data / "members.parquet"), pq.read_table(data / "projects.parquet")
    store = out / "store.sqlite"
    counts = SQLiteProjectCounts(store)
    prefs = HirerPreferences(ProfileTerms.from_members(members), counts, projects["project_id"].to_pylist())
    imp = candidate_impressions(pq.read_table(data / "events.parquet"), projects,
                                pq.read_table(data / "hirer_impressions.parquet"))
    fb = pq.read_table(data / "feedback.parquet")
    shown = list(zip(*(imp[c].to_pylist() for c in ("project_id", "member_id", "channel"))))
    rated = list(zip(*(fb[c].to_pylist() for c in ("project_id", "member_id", "channel", "feedback"))))
    for i in range(0, max(len(shown), len(rated)), BATCH):
        prefs.observe_impression_batch(shown[i:i + BATCH])
        prefs.observe_feedback_batch(rated[i:i + BATCH])
    counts.close()
    return metrics
