"""What the server answers from: entities read from the event log, and the models the flows published.

The event log is DuckDB, which refuses a read-only open while another process (`jobmatch run daily`, `jobmatch
ingest`) holds it for writing. So the server never keeps it open: it reads what requests need (members, jobs,
projects, companies, each member's recent activity times) into memory and closes it. A background thread checks
every `reload_interval_s` seconds whether a published manifest or the log file changed and then builds a complete
new `Loaded` beside the old one and swaps it in; a reload that fails (log busy, store down) keeps the old one and is
retried at the next check. Requests never wait for a reload.

Models, each pinned to the manifest it was loaded from (a model missing from the store makes only its routes 503):
  * job recommendations: a `ShardedIndex` (hnswlib) over the embeddings of the jobs open at the log's newest event
    (`activity/job_embedding` of the `activity` manifest), queried with the member's recency-weighted activity
    embedding (`activity_embedding/decay-v*`, its APPLY and SAVE parts: the jobs the member moved towards), or,
    for a member without one (cold), with the mean embedding of the open jobs of the member's profile occupation;
    candidates re-ranked with the Qualified Applicant model (`QAScorer` on the `qa` manifest);
  * query suggestions: `intent/suggestions` of the `intent` manifest;
  * candidate ranking: the `hiring/ranker` model with the project counts (online term weights) as they stand in
    the counts backend beside the store;
  * audience expansion: the sharded user-vector index the `audience` manifest names (`audience/meta`), expanded
    from a job's exact-match anchors (`jobmatch.ann.anchors`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobmatch.ann.anchors import exact_match_anchors
from jobmatch.ann.expansion import ExpansionParams, expand, merge_audience
from jobmatch.ann.index import AnnParams, ShardedIndex, unit_rows
from jobmatch.config import Settings
from jobmatch.events import EventLog, LogError
from jobmatch.features import ActivityIndex, PairFeaturizer
from jobmatch.flows.activity import GROUP as ACTIVITY_GROUP
from jobmatch.flows.activity import JOB_EMBEDDINGS
from jobmatch.flows.audience import GROUP as AUDIENCE_GROUP
from jobmatch.flows.audience import META as AUDIENCE_META
from jobmatch.flows.hiring import GROUP as HIRING_GROUP
from jobmatch.flows.hiring import RANKER, open_counts
from jobmatch.flows.intent import GROUP as INTENT_GROUP
from jobmatch.flows.intent import SUGGESTIONS
from jobmatch.flows.qa import GROUP as QA_GROUP
from jobmatch.game.serving import _MISSING, QAScorer, TTLCache
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.service import CandidateRankingService
from jobmatch.hiring.state import ProjectCounts
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.qa import QAFeaturizer
from jobmatch.store import FeatureStore, StoreError, open_store

log = logging.getLogger("jobmatch.serve")
GROUPS = (ACTIVITY_GROUP, QA_GROUP, HIRING_GROUP, INTENT_GROUP, AUDIENCE_GROUP)
QUERY_ENCODERS = ("activity_embedding/decay-", "activity_embedding/mean-")  # preferred first
# socket timeouts of the server's Redis clients: a stopped Redis is an error well inside a request's 1 s budget
REDIS_TIMEOUT_S = 0.25


class Unavailable(Exception):
    """A dependency (the store, the event log, a model, the queue) cannot answer: the route says 503 naming it."""

    def __init__(self, dependency: str, message: str):
        super().__init__(message)
        self.dependency, self.message = dependency, message


def is_redis(spec: str) -> bool:
    return spec.startswith(("redis://", "rediss://", "unix://"))


def open_serving_store(spec: str) -> FeatureStore:
    if is_redis(spec):
        return open_store(spec, connect_timeout_s=REDIS_TIMEOUT_S, read_timeout_s=REDIS_TIMEOUT_S)
    return open_store(spec, timeout_s=1.0)


def open_serving_counts(spec: str) -> ProjectCounts:
    """The hirer counts beside the store (as `jobmatch.flows.hiring.open_counts`), with short timeouts, created by
    nobody but the hiring flow."""
    return open_counts(spec, create=False, connect_timeout_s=REDIS_TIMEOUT_S, read_timeout_s=REDIS_TIMEOUT_S,
                       write_timeout_s=1.0)


def log_signature(path: Path) -> tuple:
    """Changes whenever the log file (or its write-ahead log) is written."""
    out = []
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


@dataclass
class Catalog:
    """The entities and activity times requests need, read from the log once."""

    members: pa.Table
    jobs: pa.Table
    projects: pa.Table
    activity: ActivityIndex
    now_us: int  # the log's newest event: "now" for which jobs are open
    signature: tuple
    company_of_project: dict[int, int] = field(init=False)
    project_of_job: dict[int, int] = field(init=False)
    member_occupation: dict[int, str] = field(init=False)
    member_rows: dict[int, int] = field(init=False)
    project_records: dict[int, dict] = field(init=False)
    job_rows: dict[int, int] = field(init=False)
    company_of_job: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        projects = self.projects["project_id"].to_pylist()
        self.company_of_project = dict(zip(projects, self.projects["company_id"].to_pylist()))
        self.project_of_job = dict(zip(self.projects["job_id"].to_pylist(), projects))
        self.project_records = {r["project_id"]: r for r in self.projects.to_pylist()}
        self.job_rows = {j: i for i, j in enumerate(self.jobs["job_id"].to_pylist())}
        self.company_of_job = dict(zip(self.jobs["job_id"].to_pylist(), self.jobs["company_id"].to_pylist()))
        member_ids = self.members["member_id"].to_pylist()
        self.member_occupation = dict(zip(member_ids, self.members["occupation"].to_pylist()))
        self.member_rows = {m: i for i, m in enumerate(member_ids)}

    @classmethod
    def read(cls, path: Path, lock_timeout_s: float) -> Catalog:
        signature = log_signature(path)
        with EventLog(path, read_only=True, lock_timeout_s=lock_timeout_s) as ev:
            snap = ev.snapshot()
            members, jobs, projects = (snap.entities(k) for k in ("members", "jobs", "projects"))
            activity = ActivityIndex(snap.events(["member_id", "ts", "action"]))
            span = snap.time_range()
        return cls(members, jobs, projects, activity, span[1] if span else 0, signature)


def query_vector(vec: object, dim: int) -> np.ndarray | None:
    """A member embedding as a query in the job-embedding space: the APPLY + SAVE parts of a per-action encoder
    (the jobs the member moved towards), or a learned encoder's single vector; None when it is all zeros."""
    parts = np.asarray(vec, np.float32).reshape(-1, dim)
    q = parts[0] + parts[1] if parts.shape[0] >= 2 else parts[0]
    return q if np.linalg.norm(q) > 0 else None


class JobRecommender:
    def __init__(self, store: FeatureStore, catalog: Catalog, manifest, qa: QAScorer):
        self.store, self.qa, self.manifest = store, qa, manifest
        self.qa_version = qa.manifest_.version
        names = [n for prefix in QUERY_ENCODERS for n in manifest.datasets if n.startswith(prefix)]
        if JOB_EMBEDDINGS not in manifest.datasets or not names:
            raise LookupError(f"{ACTIVITY_GROUP}: manifest {manifest.version} has no {JOB_EMBEDDINGS} or member "
                              "embeddings")
        self.member_dataset = names[0]
        dim = int(manifest.meta.get("dim", 64))
        jobs = catalog.jobs
        posted, expires = (jobs[c].cast(pa.int64()).to_numpy() for c in ("posted_at", "expires_at"))
        is_open = (posted <= catalog.now_us) & (expires > catalog.now_us)
        ids = jobs["job_id"].to_numpy()
        emb, found = store.get_matrix(JOB_EMBEDDINGS, [str(j) for j in ids.tolist()], dim,
                                      manifest.datasets[JOB_EMBEDDINGS])
        keep = is_open & found & np.isin(ids, np.fromiter(catalog.project_of_job, np.int64))
        if not keep.any():
            raise LookupError(f"{JOB_EMBEDDINGS}: no embedded job is open at the log's newest event")
        self.dim = dim
        self.job_ids, self.job_emb = ids[keep], emb[keep]
        occupations = np.asarray(jobs["occupation"].to_pylist(), object)[keep]
        self.index = ShardedIndex(AnnParams(shards=1, threads=1, ef_search=200)).fit(self.job_ids, self.job_emb)
        # cold members: the mean embedding of the open jobs of their profile occupation
        self.occupation_query = {occ: unit_rows(self.job_emb[occupations == occ].mean(0, keepdims=True))[0]
                                 for occ in set(occupations.tolist())}
        self.catalog = catalog
        self.cache = TTLCache(max_items=100_000, ttl_s=10.0)  # nearline embedding updates show within 10 s
        self.lock = threading.Lock()

    def member_query(self, member_id: int) -> tuple[np.ndarray | None, str]:
        key = str(member_id)
        vec = self.cache.get(key)
        if vec is _MISSING:
            try:
                vec = self.store.get_one(self.member_dataset, key)
            except StoreError as e:
                vec = self.cache.get(key, stale=True)
                if vec is _MISSING:
                    raise Unavailable(self.store.label, f"member embedding of {member_id}: {e}") from e
            else:
                self.cache.put(key, vec)
        if vec is not None and (q := query_vector(vec, self.dim)) is not None:
            return q, "activity"
        occ = self.catalog.member_occupation.get(member_id)
        if occ in self.occupation_query:
            return self.occupation_query[occ], "profile"
        return None, "none"

    def recommend(self, member_id: int, k: int) -> dict:
        # the caches (LRU dicts) and the hnswlib graph's ef setting are shared state: one request at a time per
        # process; the work is short and mostly holds the GIL anyway
        with self.lock:
            return self._recommend(member_id, k)

    def _recommend(self, member_id: int, k: int) -> dict:
        query, basis = self.member_query(member_id)
        if query is None:
            return {"member_id": member_id, "basis": basis, "items": []}
        n = min(max(5 * k, 100), self.job_ids.size)
        ids, sims = self.index.query(query[None, :], n)
        ok = ids[0] >= 0
        ids, sims = ids[0][ok], sims[0][ok]
        try:
            parts = self.qa.score_member(member_id, ids)
        except StoreError as e:
            raise Unavailable(self.store.label, f"QA coefficients: {e}") from e
        p = parts["probability"]
        # relevance (cosine, mapped to [0, 1]) times the chance the member is a qualified applicant
        score = 0.5 * (1.0 + sims) * p
        order = np.lexsort((ids, -score))[:k]
        return {"member_id": member_id, "basis": basis, "models": self.versions(), "items": [
            {"job_id": int(ids[i]), "score": round(float(score[i]), 6), "similarity": round(float(sims[i]), 6),
             "qa": {"probability": round(float(p[i]), 6), "global": round(float(parts["global"][i]), 6),
                    "member": round(float(parts["member"][i]), 6), "job": round(float(parts["job"][i]), 6)}}
            for i in order.tolist()]}

    def versions(self) -> dict[str, int]:
        return {ACTIVITY_GROUP: self.manifest.version, QA_GROUP: self.qa_version}


class Suggestions:
    def __init__(self, store: FeatureStore, manifest):
        if SUGGESTIONS not in manifest.datasets:
            raise LookupError(f"{INTENT_GROUP}: manifest {manifest.version} has no {SUGGESTIONS}")
        self.store, self.manifest = store, manifest
        self.cache = TTLCache(max_items=100_000, ttl_s=10.0)
        self.lock = threading.Lock()

    def get(self, member_id: int) -> list | None:
        with self.lock:  # the cache is an LRU dict shared by the server's threads
            return self._get(member_id)

    def _get(self, member_id: int) -> list | None:
        key = str(member_id)
        hit = self.cache.get(key)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        try:
            value = self.store.get_one(SUGGESTIONS, key)  # the current version: nearline updates included
        except StoreError as e:
            hit = self.cache.get(key, stale=True)
            if hit is _MISSING:
                raise Unavailable(self.store.label, f"query suggestions of {member_id}: {e}") from e
            return hit  # type: ignore[return-value]
        self.cache.put(key, value)
        return value  # type: ignore[return-value]


class Audiences:
    """Audience expansion (002 §4.3) for one job: its exact-match anchors, then the seekers most like them."""

    def __init__(self, store: FeatureStore, catalog: Catalog, manifest):
        record = store.get_one(AUDIENCE_META, "current", version=manifest.datasets[AUDIENCE_META])
        if record is None:
            raise LookupError(f"{AUDIENCE_META}: version {manifest.datasets[AUDIENCE_META]} has no 'current' record")
        self.index = ShardedIndex.load(record["ann_index"], source=record["source"])
        self.catalog, self.manifest = catalog, manifest
        self.lock = threading.Lock()  # the index's hnswlib ef setting is shared by the server's threads

    def expand(self, job_id: int, params: ExpansionParams) -> dict:
        job = self.catalog.jobs.slice(self.catalog.job_rows[job_id], 1)
        anchors = exact_match_anchors(job, self.catalog.members)[0]
        with self.lock:
            rows, sims = expand(self.index, [self.index.rows(anchors)], params)[0]
        expanded = self.index.keys_[rows]
        audience = merge_audience(anchors, expanded)
        cosine = dict(zip(expanded.tolist(), sims.tolist()))
        return {"job_id": job_id, "model": {AUDIENCE_GROUP: self.manifest.version}, "anchors": int(anchors.size),
                "items": [{"member_id": m, "anchor": i < anchors.size,
                           "cosine": None if m not in cosine else round(float(cosine[m]), 6)}
                          for i, m in enumerate(audience.tolist())]}


class Ranking:
    """The candidate ranker and the online term weights, with a lock around the counts backend (one connection)."""

    def __init__(self, service: CandidateRankingService, version: int, counts_label: str):
        self.service, self.version, self.counts_label = service, version, counts_label
        self.lock = threading.Lock()

    def rank(self, project_id: int, candidates: list[int], channel: str) -> list[tuple[int, float]]:
        try:
            with self.lock:
                return self.service.rank_candidates(project_id, candidates, channel)
        except StoreError as e:
            raise Unavailable(self.counts_label, f"project counts: {e}") from e

    def rank_with_and_without_online(self, project_id: int, candidates: list[int], channel: str
                                     ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """`rank`, and beside it the ranking with the online term weights zeroed (what the explorer compares)."""
        try:
            with self.lock:
                return self.service.rank_with_and_without_online(project_id, candidates, channel)
        except StoreError as e:
            raise Unavailable(self.counts_label, f"project counts: {e}") from e

    def term_weights(self, project_id: int, terms: np.ndarray) -> np.ndarray:
        try:
            with self.lock:
                return self.service.prefs.term_weights(project_id, terms)
        except StoreError as e:
            raise Unavailable(self.counts_label, f"project counts: {e}") from e

    def observe(self, rows: list[tuple[int, int, str, str]]) -> int:
        try:
            with self.lock:
                return self.service.prefs.observe_feedback_batch(rows)
        except StoreError as e:
            raise Unavailable(self.counts_label, f"project counts: {e}") from e


@dataclass
class Loaded:
    catalog: Catalog | None
    signature: tuple
    jobs: JobRecommender | None = None
    suggestions: Suggestions | None = None
    ranking: Ranking | None = None
    audiences: Audiences | None = None
    errors: dict[str, str] = field(default_factory=dict)  # component -> why it is not loaded


class ServingState:
    """Holds the current `Loaded` and reloads it in the background (see the module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store_spec = settings.store_spec
        self.flows_home = settings.home / "flows"
        self.store: FeatureStore | None = None
        self.counts: ProjectCounts | None = None
        self.loaded = Loaded(None, ())
        self.store_error: str | None = None
        self.log_error: str | None = None
        self.reloads, self.failed_reloads = 0, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading ----------------------------------------------------------------------------------------------------
    def _manifests(self) -> tuple:
        assert self.store is not None
        return tuple((g, m.version if (m := self.store.manifest(g)) else None) for g in GROUPS)

    def _connect(self) -> None:
        if self.store is None:
            self.store = open_serving_store(self.store_spec)
        if self.counts is None:
            try:
                self.counts = open_serving_counts(self.store_spec)
            except StoreError:
                self.counts = None  # no hiring flow has run yet: the ranking route says so

    def load(self, lock_timeout_s: float) -> bool:
        """One load attempt; returns whether something new was swapped in."""
        try:
            self._connect()
            manifests = self._manifests()
            self.store_error = None
        except StoreError as e:
            self.store_error = str(e)
            return False
        log_sig = log_signature(self.settings.event_log_path)
        current = self.loaded
        if current.catalog is not None and current.signature == (manifests, log_sig):
            return False
        catalog = current.catalog
        if catalog is None or catalog.signature != log_sig:
            try:
                catalog = Catalog.read(self.settings.event_log_path, lock_timeout_s)
                self.log_error = None
            except LogError as e:
                self.log_error = str(e)
                if catalog is None:
                    return False
                # keep the entities we have; the models below still follow the store
        new = Loaded(catalog, (manifests, catalog.signature))
        self._build(new, dict(manifests))
        self.loaded = new
        self.reloads += 1
        return True

    def _build(self, new: Loaded, versions: dict) -> None:
        store, catalog = self.store, new.catalog
        assert store is not None and catalog is not None

        def attempt(name: str, build: Callable[[], object]) -> object | None:
            try:
                return build()
            except (LookupError, StoreError, ValueError, OSError) as e:
                new.errors[name] = f"{type(e).__name__}: {e}"
                return None

        def qa_scorer() -> QAScorer:
            manifest = store.manifest(QA_GROUP)
            if manifest is None:
                raise LookupError(f"{QA_GROUP}: no published Qualified Applicant model in the store")
            meta = store.get_one(f"{QA_GROUP}/meta", "meta", version=manifest.datasets[f"{QA_GROUP}/meta"])
            featurizer = QAFeaturizer(catalog.jobs, catalog.members, catalog.projects,
                                      skill_basis=(meta or {}).get("skill_basis"))
            # a long TTL pins the scorer to this manifest: a newer model comes with a reload, which also rebuilds
            # the featurizer with that model's skill basis
            return QAScorer(store, featurizer.features, catalog.project_of_job, TTLCache(ttl_s=10 * 365 * 86400.0))

        def jobs() -> JobRecommender:
            manifest = store.manifest(ACTIVITY_GROUP)
            if manifest is None:
                raise LookupError(f"{ACTIVITY_GROUP}: no published activity embeddings in the store")
            return JobRecommender(store, catalog, manifest, qa_scorer())

        def suggestions() -> Suggestions:
            manifest = store.manifest(INTENT_GROUP)
            if manifest is None:
                raise LookupError(f"{INTENT_GROUP}: no published query suggestions in the store")
            return Suggestions(store, manifest)

        def ranking() -> Ranking:
            manifest = store.manifest(HIRING_GROUP)
            if manifest is None:
                raise LookupError(f"{HIRING_GROUP}: no published candidate ranker in the store")
            if self.counts is None:
                raise LookupError(f"{HIRING_GROUP}: no project counts beside {store.label}")
            record = store.get_one(RANKER, "ranker", version=manifest.datasets[RANKER])
            if record is None:
                raise LookupError(f"{RANKER}: version {manifest.datasets[RANKER]} has no 'ranker' record")
            ranker = CandidateRanker.load(self.flows_home / record["path"])
            prefs = HirerPreferences(ProfileTerms.from_members(catalog.members), self.counts,
                                     projects=catalog.projects["project_id"].to_pylist())
            service = CandidateRankingService(ranker, prefs, PairFeaturizer(catalog.jobs, catalog.members,
                                                                            catalog.projects), catalog.activity)
            return Ranking(service, manifest.version, self.store_spec if is_redis(self.store_spec)
                           else f"{store.label} (project counts)")

        def audiences() -> Audiences:
            manifest = store.manifest(AUDIENCE_GROUP)
            if manifest is None:
                raise LookupError(f"{AUDIENCE_GROUP}: no published audience index in the store")
            return Audiences(store, catalog, manifest)

        new.jobs = attempt("jobs", jobs)  # type: ignore[assignment]
        new.audiences = attempt("audiences", audiences)  # type: ignore[assignment]
        new.suggestions = attempt("suggestions", suggestions)  # type: ignore[assignment]
        new.ranking = attempt("ranking", ranking)  # type: ignore[assignment]

    # -- background reloads -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self.load(self.settings.lock_timeout_s)
        self._thread = threading.Thread(target=self._loop, name="jobmatch-serve-reload", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                self.load(lock_timeout_s=0.0)  # a busy log is retried at the next check, not waited for
            except Exception:  # noqa: BLE001 - a failed reload keeps serving the loaded models; it is logged
                self.failed_reloads += 1
                log.exception("reload failed; serving the models loaded before")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for closeable in (self.store, self.counts):
            if closeable is not None:
                closeable.close()

    # -- per route --------------------------------------------------------------------------------------------------
    def require_catalog(self) -> Catalog:
        catalog = self.loaded.catalog
        if catalog is None:
            if self.store_error:
                raise Unavailable(self.store_spec, f"feature store unreachable: {self.store_error}")
            raise Unavailable(str(self.settings.event_log_path), f"event log not loaded: {self.log_error}")
        return catalog

    def require(self, component: str) -> object:
        """The loaded component, or Unavailable naming what is missing."""
        loaded = self.loaded
        value = getattr(loaded, component)
        if value is not None:
            return value
        self.require_catalog()
        group = {"jobs": f"{ACTIVITY_GROUP}+{QA_GROUP}", "suggestions": INTENT_GROUP, "ranking": HIRING_GROUP,
                 "audiences": AUDIENCE_GROUP}
        raise Unavailable(f"model:{group[component]}", loaded.errors.get(component, "not loaded"))
