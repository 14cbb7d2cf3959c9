"""Read views shared by the /v1 routes and the explorer pages (`jobmatch.web`): a page renders exactly the dict its
route returns, so what the page shows is what an API client gets.

Each view takes the server's `ServingState` (models and entities as loaded) and, where it needs more than the
loaded catalog holds (a member's sessions, a project's applicants), reads the event log read-only for that one
request with a short lock wait: the log is a DuckDB file that a writer (`jobmatch worker`, `ingest`, `run daily`)
may hold for a moment, and then the view answers 503 naming the log rather than waiting.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
from fastapi import HTTPException

from jobmatch.events import EventLog, LogError
from jobmatch.hiring.online import CHANNELS
from jobmatch.hiring.terms import TERM_TYPES
from jobmatch.serve.auth import check_company
from jobmatch.serve.keys import ApiKey
from jobmatch.serve.state import ServingState, Unavailable, log_signature, query_vector
from jobmatch.store import StoreError

LOG_WAIT_S = 1.0  # a request waits at most this long for a writer to release the event log
EVALUATIONS = ("hiring", "qa", "activity", "intent")  # the evaluations `jobmatch run main` writes into HOME


def _plain(value: object) -> object:
    """JSON-ready: times as ISO-8601 text, arrays as lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def known_member(state: ServingState, member_id: int) -> None:
    """404 unless the catalog knows the member."""
    if member_id not in state.require_catalog().member_occupation:
        raise HTTPException(404, f"member_id: unknown member {member_id}")


def check_project(state: ServingState, key: ApiKey, project_id: int) -> None:
    """A hirer key sees only its company's projects (403); any other key gets 404 for an unknown project."""
    company_of = state.require_catalog().company_of_project
    if key.scope == "hirer":
        check_company(key, project_id, company_of.get(project_id))
    elif project_id not in company_of:
        raise HTTPException(404, f"project_id: unknown project {project_id}")


def project_record(state: ServingState, project_id: int) -> dict:
    """A project's row with its times as ISO-8601 text."""
    row = state.require_catalog().project_records[project_id]
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


class LogReader:
    """Opens the event log read-only for one request."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self):
        try:
            return EventLog(self.path, read_only=True, lock_timeout_s=LOG_WAIT_S)
        except LogError as e:
            raise Unavailable(str(self.path), f"event log: {e}") from e


def job_summary(state: ServingState, job_id: int) -> dict:
    catalog = state.require_catalog()
    row = catalog.job_rows.get(job_id)
    if row is None:
        return {"job_id": job_id}
    jobs = catalog.jobs
    return {"job_id": job_id, "title": jobs["title"][row].as_py(), "occupation": jobs["occupation"][row].as_py(),
            "company_id": jobs["company_id"][row].as_py()}


# -- members ---------------------------------------------------------------------------------------------------------
def member_profile(state: ServingState, log: LogReader, member_id: int, sessions: int = 10) -> dict:
    """The member's profile and their most recent sessions as activity documents (002 Figure 2), newest first."""
    catalog = state.require_catalog()
    row = catalog.member_rows[member_id]
    profile = {k: _plain(v) for k, v in catalog.members.slice(row, 1).to_pylist()[0].items()}
    with log() as ev:
        docs = ev.snapshot().documents([member_id])
    timeline = []
    if docs:
        d = docs[0]
        for i in range(len(d.sessions) - 1, max(-1, len(d.sessions) - 1 - sessions), -1):
            timeline.append({"start": _iso(d.session_start_us[i]), "document": d.sessions[i],
                             "entities": d.entities[i]})
    return {"member_id": member_id, "profile": profile, "sessions_total": len(docs[0].sessions) if docs else 0,
            "sessions": timeline}


def member_embeddings(state: ServingState, member_id: int, k: int = 5) -> dict:
    """For each published activity encoder (mean, decay, learned), the open jobs nearest to the member's embedding
    (cosine in the job-embedding space; the query is the same one /jobs uses for its encoder)."""
    rec = state.require("jobs")
    state.require_catalog()
    encoders = sorted(n for n in rec.manifest.datasets if n.startswith("activity_embedding/"))  # type: ignore
    out = {}
    for name in encoders:
        try:
            vec = rec.store.get_one(name, str(member_id))  # type: ignore[attr-defined]
        except StoreError as e:
            raise Unavailable(rec.store.label, f"{name} of {member_id}: {e}") from e  # type: ignore[attr-defined]
        q = None if vec is None else query_vector(vec, rec.dim)  # type: ignore[attr-defined]
        if q is None:
            out[name.split("/", 1)[1]] = []
            continue
        with rec.lock:  # type: ignore[attr-defined]
            ids, sims = rec.index.query(q[None, :], k)  # type: ignore[attr-defined]
        out[name.split("/", 1)[1]] = [{**job_summary(state, int(j)), "similarity": round(float(s), 6)}
                                      for j, s in zip(ids[0].tolist(), sims[0].tolist()) if j >= 0]
    return {"member_id": member_id, "model": {"activity": rec.manifest.version}, "encoders": out}  # type: ignore


def suggestions(state: ServingState, member_id: int, k: int = 10) -> dict:
    component = state.require("suggestions")
    items = component.get(member_id)  # type: ignore[attr-defined]
    out = {"member_id": member_id, "model": {"intent": component.manifest.version},  # type: ignore[attr-defined]
           "items": (items or [])[:k]}
    if items is None:
        out["note"] = "no suggestions published for this member (no activity in the intent flow's window)"
    return out


# -- hiring projects -------------------------------------------------------------------------------------------------
def project_members(state: ServingState, log: LogReader, project_id: int, limit: int = 30
                    ) -> tuple[list[int], dict[int, list[str]]]:
    """The project's candidates (its job's applicants, then members shown to its hirer, most recent first, at most
    `limit`) and the feedback the log holds for each."""
    catalog = state.require_catalog()
    job_id = catalog.project_records[project_id]["job_id"]
    with log() as ev:
        con = ev._con  # one short read: three small queries on the same connection
        applied = con.execute("SELECT member_id, max(ts) AS t FROM events WHERE job_id = ? AND action = 'APPLY' "
                              "GROUP BY member_id ORDER BY t DESC, member_id LIMIT ?", [job_id, limit]).fetchall()
        shown = con.execute("SELECT member_id, max(ts) AS t FROM hirer_impressions WHERE project_id = ? "
                            "GROUP BY member_id ORDER BY t DESC, member_id LIMIT ?", [project_id, limit]).fetchall()
        rated = con.execute("SELECT member_id, feedback FROM feedback WHERE project_id = ? ORDER BY ts",
                            [project_id]).fetchall()
    candidates = list(dict.fromkeys(m for m, _ in applied + shown if m in catalog.member_occupation))[:limit]
    feedback: dict[int, list[str]] = {}
    for m, f in rated:
        feedback.setdefault(m, []).append(f)
    return candidates, feedback


def project_candidates(state: ServingState, log: LogReader, project_id: int, channel: str = "applicants",
                       limit: int = 30) -> dict:
    """`project_members` ranked with and without the online term weights (the hirer ranker, 003)."""
    catalog = state.require_catalog()
    ranking = state.require("ranking")
    candidates, feedback = project_members(state, log, project_id, limit)
    job_id = catalog.project_records[project_id]["job_id"]
    out = {"project_id": project_id, "channel": channel, "job": job_summary(state, job_id),
           "model": {"hiring": ranking.version}, "candidates": len(candidates)}  # type: ignore[attr-defined]
    if not candidates:
        return out | {"with_online": [], "without_online": []}
    with_online, without = ranking.rank_with_and_without_online(  # type: ignore[attr-defined]
        project_id, candidates, channel)
    rank_without = {m: i + 1 for i, (m, _) in enumerate(without)}

    def item(m: int, s: float, i: int) -> dict:
        return {"member_id": m, "score": round(s, 6), "rank": i + 1, "rank_without_online": rank_without[m],
                "occupation": catalog.member_occupation.get(m), "feedback": feedback.get(m, [])}

    return out | {"with_online": [item(m, s, i) for i, (m, s) in enumerate(with_online)],
                  "without_online": [{"member_id": m, "score": round(s, 6)} for m, s in without]}


def project_term_weights(state: ServingState, log: LogReader, project_id: int, k: int = 5, limit: int = 200
                         ) -> dict:
    """The project's learned term weights w(t, s, r) (003) over its candidates' terms: per (channel, rating) with
    evidence and per term type, the `k` most positive and most negative (log rate ratios vs the project's rate)."""
    ranking = state.require("ranking")
    candidates, _ = project_members(state, log, project_id, limit)
    prefs = ranking.service.prefs  # type: ignore[attr-defined]
    rows = prefs.terms.rows([m for m in candidates if m in state.require_catalog().member_occupation])
    terms = np.unique(prefs.terms.matrix[rows].indices).astype(np.int64)
    combos = []
    if terms.size:
        w = ranking.term_weights(project_id, terms)  # type: ignore[attr-defined]
        for c, (channel, rating) in enumerate(prefs.combos):
            if not np.any(w[c]):
                continue
            by_type = {}
            for t, term_type in enumerate(TERM_TYPES):
                sel = np.flatnonzero(prefs.terms.term_type[terms] == t)
                sel = sel[w[c, sel] != 0]
                order = sel[np.argsort(-w[c, sel], kind="stable")]
                top = [{"term": prefs.terms.term_names[terms[i]].split(":", 1)[1], "weight": round(float(w[c, i]), 4)}
                       for i in order]
                by_type[term_type] = {"positive": [x for x in top if x["weight"] > 0][:k],
                                      "negative": [x for x in top[::-1] if x["weight"] < 0][:k]}
            combos.append({"channel": channel, "rating": rating, "terms": by_type})
    return {"project_id": project_id, "model": {"hiring": ranking.version},  # type: ignore[attr-defined]
            "channels": list(CHANNELS), "weights": combos}


# -- models ----------------------------------------------------------------------------------------------------------
def _headline(group: str, metrics: dict) -> dict:
    """The evaluation figures each family's report leads with (keys of the metrics.json shapes); for intent, P@1 of
    each variant on the future (D1) and the current (D2) task."""
    if group == "intent":
        return {f"{task} P@1": {variant: v["p@1"] for variant, v in metrics[task].items() if "p@1" in v}
                for task in ("D1", "D2") if isinstance(metrics.get(task), dict)}
    pick = {"hiring": ("ndcg@1", "ndcg@5", "ndcg@10"), "qa": ("auc",), "activity": ("auc",)}.get(group, ())
    return {k: metrics[k] for k in pick if k in metrics}


def models(state: ServingState) -> dict:
    """Every published group's versions (newest first) with their meta, the current one marked; the flows' run
    history (the QA quality gate's decisions among them); and the evaluation figures found in the home folder."""
    store = state.store
    if store is None:
        raise Unavailable(state.store_spec, f"feature store unreachable: {state.store_error}")
    home = state.settings.home
    groups = {}
    try:
        for group in store.groups():
            current = store.manifest(group)
            groups[group] = [{"version": m.version, "published_at": _iso(int(m.published_at * 1e6)),
                              "meta": m.meta, "current": current is not None and m.version == current.version}
                             for m in sorted(store.manifests(group), key=lambda m: -m.version)]
    except StoreError as e:
        raise Unavailable(store.label, str(e)) from e
    runs = {}
    for flow_state in sorted((home / "flows").glob("*/state.json")):
        data = json.loads(flow_state.read_text())
        runs[flow_state.parent.name] = data.get("runs", [])
    evaluations = {}
    for group in EVALUATIONS:
        path = home / group / "metrics.json"
        if path.is_file():
            evaluations[group] = _headline(group, json.loads(path.read_text()))
    return {"groups": groups, "runs": runs, "evaluations": evaluations}


def rollback(state: ServingState, group: str) -> dict:
    """Make the group's previous manifest current again (the flows' next publish moves it forward)."""
    store = state.store
    if store is None:
        raise Unavailable(state.store_spec, f"feature store unreachable: {state.store_error}")
    try:
        if len(store.manifests(group)) < 2:
            raise LookupError(f"group {group!r}: nothing to roll back (fewer than two versions kept)")
        manifest = store.rollback_group(group)
    except StoreError as e:
        raise Unavailable(store.label, str(e)) from e
    # the routes serve it after the next reload check (reload_interval_s); the store already names it current
    return {"group": group, "version": manifest.version}


# -- marketplace -----------------------------------------------------------------------------------------------------
class MarketplaceCache:
    """The marketplace statistics of the log as it stands, computed once per log change (a few seconds on the
    default simulation, so in the background: a request never waits for it)."""

    def __init__(self, path: Path, compute):
        self.path, self.compute = path, compute
        self.lock = threading.Lock()
        self.value: dict | None = None
        self.signature: tuple | None = None
        self.error: str | None = None
        self.running = False

    def get(self) -> dict:
        signature = log_signature(self.path)
        with self.lock:
            fresh = self.value is not None and self.signature == signature
            if not fresh and not self.running:
                self.running = True
                threading.Thread(target=self._refresh, args=(signature,), daemon=True,
                                 name="jobmatch-marketplace").start()
            value, error = self.value, self.error
        if value is None:
            raise Unavailable(str(self.path), error or "the marketplace statistics are being computed; retry in a "
                                                      "few seconds")
        return value | {"stale": not fresh}

    def _refresh(self, signature: tuple) -> None:
        try:
            value, error = self.compute(), None
        except (LogError, OSError, ValueError, pa.ArrowException) as e:
            value, error = None, f"{type(e).__name__}: {e}"
        with self.lock:
            if value is not None:
                self.value, self.signature = value, signature
            self.error, self.running = error, False
