"""The main job on embedded defaults: the whole system on a simulated marketplace.

    simulate -> ingest (the path a user's files take) -> sessions -> marketplace report
             -> `run daily` as of the last simulated day (hiring, QA, activity, intent: published to the store)
             -> the four evaluations (hiring, QA, activity, intent) -> one report linking them all

Everything lands in one home folder: `data/` (what the simulator produced), `truth/` (its latent variables, read
only by the evaluations that measure against them), `events.duckdb` (the log), `store.sqlite` (the feature store),
`flows/` (models and flow state) and the reports.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jobmatch.evaluate.activity import evaluate_activity
from jobmatch.evaluate.hiring import evaluate_hiring
from jobmatch.evaluate.intent import evaluate_intent
from jobmatch.evaluate.marketplace import marketplace_stats, write_marketplace_report
from jobmatch.evaluate.qa import evaluate_qa
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog, TimeBounds
from jobmatch.events.loading import ingest_folder
from jobmatch.flows.daily import DailyConfig, run_daily
from jobmatch.flows.state import FlowContext
from jobmatch.intent.config import IntentConfig
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import open_store
from jobmatch.taxonomy import resolve_taxonomy

Say = Callable[[str], None]
MIN_DAYS = 21


def home_paths(home: Path) -> dict[str, Path]:
    return {"data": home / "data", "truth": home / "truth", "db": home / "events.duckdb",
            "store": home / "store.sqlite", "flows": home / "flows"}


def run_main(home: str | Path, cfg: SimConfig, taxonomy: str = "builtin", say: Say | None = None,
             intent: IntentConfig | None = None, gap_minutes: float = 30.0) -> Path:
    say = say or (lambda _m: None)
    if cfg.days < MIN_DAYS:
        raise ValueError(f"days: the main job's evaluations need at least {MIN_DAYS} days (a training and a test "
                         f"week after two weeks of history), got {cfg.days}")
    home = Path(home)
    paths = home_paths(home)
    intent = intent or IntentConfig.named("main")
    say("load taxonomy")
    market = simulate(resolve_taxonomy(taxonomy), cfg, progress=lambda m: say(f"simulate: {m}"))
    say("write simulation")
    for stale in ("data", "truth", "flows"):
        shutil.rmtree(paths[stale], ignore_errors=True)
    for stale in ("db", "store"):
        paths[stale].unlink(missing_ok=True)
    write_market(market, paths["data"], cfg, taxonomy, truth=paths["truth"])
    last_day = cfg.start + timedelta(days=cfg.days - 1)
    # a simulated period may end after today: its events are plausible up to its own end
    bounds = TimeBounds(now=max(datetime.now(timezone.utc), last_day + timedelta(days=1)))
    truth = Truth(paths["truth"])
    with EventLog(paths["db"]) as log:
        counts = ingest_folder(log, paths["data"], bounds, say=say)
        say("sessionize")
        log.sessionize(gap_minutes)
        say("marketplace report")
        snap = log.snapshot()
        events, sessions = snap.events(), log.table("sessions")
        stats = marketplace_stats(events, sessions, snap.feedback())
        spec = f"sqlite:{paths['store']}"
        with open_store(spec, create=True) as store:
            ctx = FlowContext.create(log, store, spec, paths["flows"], last_day, say=lambda m: say(f"daily: {m}"))
            daily = run_daily(ctx, DailyConfig(gap_minutes=gap_minutes, intent=intent))
        failed = {k: v["reason"] for k, v in daily.items() if v["status"] == "failed"}
        if failed:
            raise RuntimeError("run daily: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
        hiring = evaluate_hiring(log, home / "hiring", truth, say=lambda m: say(f"hiring: {m}"))
        qa = evaluate_qa(log, home / "qa", say=lambda m: say(f"qa: {m}"))
        activity = evaluate_activity(log, home / "activity", truth, say=lambda m: say(f"activity: {m}"))
        intent_metrics = evaluate_intent(log, home / "intent", intent, say=lambda m: say(f"intent: {m}"))
    d1 = intent_metrics["D1"]
    preface = (
        f"Simulated with `--members {cfg.members} --days {cfg.days} --seed {cfg.seed} --taxonomy {taxonomy}` and "
        f"ingested through validated ingest: {counts['events']:,} events, {counts['feedback']:,} hirer feedback "
        f"events, {counts.get('impressions', 0):,} seeker and {counts.get('hirer_impressions', 0):,} hirer "
        f"impressions; sessions split at {gap_minutes:g} idle minutes.\n\n"
        f"`jobmatch run daily` as of {last_day.date()} published every model to `store.sqlite` "
        "(`jobmatch store ls`): " + "; ".join(f"{k} {v['status']}" + (f" ({v['reason']})" if v.get("reason") else "")
                                             for k, v in daily.items()) + ".\n\n"
        f"- Hirer preferences (seed 003): candidate ranking NDCG@1 {hiring['ndcg@1']['without_online']:.3f} "
        f"without and {hiring['ndcg@1']['with_online']:.3f} with per-project online term weights — "
        "[hiring/report.md](hiring/report.md).\n"
        f"- Qualified Applicant (seed 001, {qa['protocol']} window): test AUC GBDT {qa['auc']['gbdt']:.3f}, global "
        f"{qa['auc']['global']:.3f}, +member {qa['auc']['global+member']:.3f}, +job "
        f"{qa['auc']['global+member+job']:.3f} — [qa/report.md](qa/report.md).\n"
        "- Member activity embeddings (seed 000): job recommendation AUC "
        + ", ".join(f"{k} {v:.3f}" for k, v in activity["auc"].items())
        + " — [activity/report.md](activity/report.md).\n"
        f"- User intent (seed 002, `{intent.name}` size): D1 P@1 "
        + ", ".join(f"{k} {d1[k]['p@1']:.3f}" for k in ("popularity", "copy-context", "fasttext+slice",
                                                        "bert_ft+slice"))
        + " — [intent/report.md](intent/report.md).")
    return write_marketplace_report(stats, sessions, events, home, preface=preface)
