"""`jobmatch run daily`: every flow on what the event log holds as of the end of one UTC day.

Order: sessions are brought up to date, then hiring (feedback counts and the candidate ranker), the Qualified
Applicant model, the member activity embeddings, the user-intent vectors and suggestions, then what stands on
the intent vectors: audience-expansion clauses and the search ranker with the user-vector tower. Each flow publishes
its models as one atomic manifest at its very end, so a flow that fails (or is killed) leaves the previous
versions serving; the other flows still run. A flow the data cannot support yet (too few days, no feedback) is
skipped with one line saying why. Re-running a day that already ran is a no-op.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jobmatch.flows.activity import run_activity_embeddings
from jobmatch.flows.audience import AudienceFlowConfig, run_audience
from jobmatch.flows.hiring import HiringFlowConfig, run_hiring
from jobmatch.flows.intent import run_intent
from jobmatch.flows.qa import QAFlowConfig, run_qa
from jobmatch.flows.search_ranking import SearchRankingFlowConfig, run_search_ranking
from jobmatch.flows.state import FlowContext, NotEnoughData
from jobmatch.intent.config import IntentConfig

FLOWS = ("hiring", "qa", "activity", "intent", "audience", "search_ranking")


@dataclass(frozen=True)
class DailyConfig:
    flows: Sequence[str] = FLOWS
    gap_minutes: float = 30.0
    hiring: HiringFlowConfig = HiringFlowConfig()
    qa: QAFlowConfig = QAFlowConfig()
    activity_epochs: int = 3
    intent: IntentConfig = field(default_factory=IntentConfig.cpu)
    audience: AudienceFlowConfig = field(default_factory=AudienceFlowConfig)
    search_ranking: SearchRankingFlowConfig = field(default_factory=SearchRankingFlowConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [f for f in self.flows if f not in FLOWS]
        if unknown:
            raise ValueError(f"flows: unknown flow(s) {', '.join(map(repr, unknown))}; expected some of "
                             f"{', '.join(FLOWS)}")


def _steps(cfg: DailyConfig) -> dict[str, Callable[[FlowContext], dict]]:
    return {"hiring": lambda ctx: run_hiring(ctx, cfg.hiring),
            "qa": lambda ctx: run_qa(ctx, cfg.qa),
            "activity": lambda ctx: run_activity_embeddings(ctx, cfg.activity_epochs, cfg.seed),
            "intent": lambda ctx: run_intent(ctx, config=cfg.intent, seed=cfg.seed),
            "audience": lambda ctx: run_audience(ctx, cfg.audience),
            "search_ranking": lambda ctx: run_search_ranking(ctx, cfg.search_ranking)}


def run_daily(ctx: FlowContext, cfg: DailyConfig = DailyConfig()) -> dict[str, dict]:
    """Run the flows in order; returns each flow's result (status ok / already done / skipped / failed)."""
    if ctx.log.time_range() is None:
        raise NotEnoughData("the event log holds no events; ingest some first (jobmatch ingest FILE)")
    ctx.say("sessions")
    ctx.log.sessionize(cfg.gap_minutes)
    steps = _steps(cfg)
    results: dict[str, dict] = {}
    for name in FLOWS:
        if name not in cfg.flows:
            continue
        ctx.say(name)
        try:
            results[name] = steps[name](ctx)
        except NotEnoughData as e:
            results[name] = {"as_of": ctx.day, "status": "skipped", "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - one flow's failure must not stop the others; it is reported
            results[name] = {"as_of": ctx.day, "status": "failed", "reason": f"{type(e).__name__}: {e}",
                             "traceback": traceback.format_exc()}
        ctx.say(f"{name}: {results[name]['status']}")
    return results
