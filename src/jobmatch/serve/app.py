"""The HTTP API: `create_app(settings)` builds it; `jobmatch serve` runs it with uvicorn (`app_from_env` is the
factory uvicorn calls, with settings from JOBMATCH_* variables).

Routes (all /v1 routes need `Authorization: Bearer KEY`; see `jobmatch.serve.keys`):
  POST /v1/events | /v1/feedback | /v1/impressions   JSON array of records -> 202 {accepted, duplicates}
      validated exactly as `jobmatch ingest` validates a batch (422: [{line, field, message, value}], nothing
      queued), then published to the nearline queue (`jobmatch.nearline.queue`), which `jobmatch worker` appends to
      the event log; idempotent on the records' ids. Hirer feedback is also applied to the project's counts at
      once (counting is idempotent, the worker's application is then a no-op), so the next ranking of that
      project reflects it.
  GET  /v1/members/{id}?sessions=10                  profile and recent sessions as activity documents
  GET  /v1/members/{id}/jobs?k=20                    job recommendations with score parts
  GET  /v1/members/{id}/query-suggestions?k=10       published query suggestions
  GET  /v1/members/{id}/activity-embeddings?k=5      nearest open jobs per activity encoder
  POST /v1/projects/{id}/candidates:rank             the hirer ranker with online term weights
  GET  /v1/projects/{id}                             the project (hirer keys: their company's only)
  GET  /v1/projects/{id}/candidates                  its candidates ranked with and without online term weights
  GET  /v1/projects/{id}/term-weights?k=5            its learned term weights, top positive/negative
  POST /v1/audiences:expand                          audience expansion for a job (hirer keys: their company's)
  GET  /v1/models                                    published versions, flow runs, evaluation figures
  POST /v1/models/{group}:rollback                   admin: the group's previous version becomes current
  GET  /healthz  /readyz  /metrics
Failures: a dependency that cannot answer -> 503 {error, dependency} (never a traceback); bodies over
`max_body_bytes` -> 413.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from jobmatch.ann.expansion import ExpansionParams
from jobmatch.config import Settings
from jobmatch.events.ingest import read_records
from jobmatch.hiring.online import CHANNELS
from jobmatch.nearline.queue import EventQueue, QueueUnavailable, open_queue
from jobmatch.schema import KINDS
from jobmatch.serve.auth import authenticate, check_company, keys_file, require
from jobmatch.serve.keys import ApiKey, KeyStore
from jobmatch.serve.metrics import Metrics
from jobmatch.serve import views
from jobmatch.serve.state import GROUPS, Ranking, ServingState, Unavailable

log = logging.getLogger("jobmatch.serve")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_CANDIDATES = 1000
EntityId = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, description="an int64 entity id")]
Key = Annotated[ApiKey, Depends(authenticate)]
Channel = Annotated[Literal[tuple(CHANNELS)], Query(description="the hirer's channel")]  # type: ignore[valid-type]


class RankRequest(BaseModel):
    model_config = {"extra": "forbid"}
    candidates: list[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]] = Field(
        min_length=1, max_length=MAX_CANDIDATES, description="member ids to rank")
    channel: Literal[tuple(CHANNELS)] = "recommended_matches"  # type: ignore[valid-type]


class ExpandRequest(BaseModel):
    model_config = {"extra": "forbid"}
    job_id: int = Field(ge=INT64_MIN, le=INT64_MAX, description="the job posting whose audience to find")
    k: int = Field(500, ge=1, le=5000, description="at most this many expanded members (002: 500)")
    threshold: float = Field(0.8, ge=-1.0, le=1.0, description="least cosine to the query (002: 0.80)")
    method: Literal["mean", "prf"] = "mean"
    seeds: int | None = Field(None, ge=1, le=100_000, description="at most this many anchors seed the query")


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _record_schema(kind: str) -> dict:
    """The OpenAPI schema of one record of a stream kind (times as ISO-8601 text with a zone)."""
    props = {}
    for f in KINDS[kind].schema:
        t = str(f.type)
        props[f.name] = ({"type": "string", "format": "date-time"} if t.startswith("timestamp") else
                         {"type": "integer"} if t.startswith("int") else {"type": "number"} if "float" in t
                         or "double" in t else {"type": "boolean"} if t == "bool" else {"type": "string"})
        if f.nullable:
            props[f.name] = {"anyOf": [props[f.name], {"type": "null"}]}
    required = [f.name for f in KINDS[kind].schema if not f.nullable]
    return {"type": "array", "items": {"type": "object", "properties": props, "required": required}}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    state = ServingState(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.keys = KeyStore(keys_file(settings.home, settings.keys_path))
        await run_in_threadpool(state.start)
        try:
            app.state.queue = open_queue(settings.home, settings.stream)
        except QueueUnavailable as e:  # the ingest routes retry opening it per request
            log.warning("queue: %s", e)
            app.state.queue = None
        yield
        state.stop()
        app.state.keys.close()
        if app.state.queue is not None:
            app.state.queue.close()

    app = FastAPI(title="jobmatch", version="1", lifespan=lifespan,
                  description="Job recommendations, query suggestions, candidate ranking and event ingestion.")
    app.state.serving, app.state.metrics, app.state.queue = state, metrics, None
    log_reader = app.state.log_reader = views.LogReader(settings.event_log_path)

    # -- errors: JSON, never a traceback ---------------------------------------------------------------------------
    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, e: Unavailable) -> JSONResponse:
        return _error(503, e.message, dependency=e.dependency)

    @app.exception_handler(QueueUnavailable)
    async def queue_down(_request: Request, e: QueueUnavailable) -> JSONResponse:
        return _error(503, str(e), dependency=settings.stream or str(settings.home / "inbox.sqlite"))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, e: HTTPException) -> JSONResponse:
        # a 422 is the list of problems, as for a bad batch
        body = e.detail if isinstance(e.detail, list) else {"error": e.detail}
        return JSONResponse(body, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse([{"line": None, "field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
                             for err in e.errors()], status_code=422)

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(e).__name__}); see the server log")

    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(_Measure, metrics=metrics)  # added last: outermost, so it times the 413s too

    # -- ingest ----------------------------------------------------------------------------------------------------
    async def read_body(request: Request) -> object:
        """The JSON body (`_BodyLimit` has already refused one over the size limit)."""
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPException(422, [{"line": None, "field": "body", "message": f"not JSON ({e})"}]) from None

    queue_lock = threading.Lock()  # the queue is opened once, by the first request that needs it

    def queue_call(app_: FastAPI, op: Callable[[EventQueue], object]) -> object:
        with queue_lock:
            if app_.state.queue is None:
                app_.state.queue = open_queue(settings.home, settings.stream)
            queue = app_.state.queue
        return op(queue)

    async def ingest(request: Request, kind: str, key: ApiKey) -> JSONResponse:
        body = await read_body(request)
        if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
            return JSONResponse([{"line": None, "field": "body", "message": "expected a JSON array of objects"}],
                                status_code=422)

        def work() -> JSONResponse:
            batch = read_records(kind, body, settings.time_bounds())
            if batch.errors:
                return JSONResponse([{"line": e.line, "field": e.field, "message": e.message,
                                      "value": e.as_dict()["value"]} for e in batch.errors], status_code=422)
            rows = batch.rows
            if kind == "feedback":
                check_feedback_tenant(key, rows["project_id"].to_pylist())
            result = queue_call(request.app, lambda q: q.publish(kind, rows))
            out = {"accepted": result.accepted, "duplicates": result.duplicates}
            if kind == "feedback":
                out["counted"] = count_feedback(rows)
            return JSONResponse(out, status_code=202)

        return await run_in_threadpool(work)

    def check_feedback_tenant(key: ApiKey, projects: list[int]) -> None:
        if key.scope != "hirer":
            return
        company_of = state.require_catalog().company_of_project
        for p in dict.fromkeys(projects):
            check_company(key, p, company_of.get(p))

    def count_feedback(rows) -> int | None:
        """Apply ratings to the online term weights now (idempotent); None when the ranker is not loaded."""
        ranking: Ranking | None = state.loaded.ranking
        if ranking is None:
            return None
        catalog = state.require_catalog()
        # entities the loaded catalog does not know yet are counted by the worker once a reload has them
        wanted = [r for r in zip(*(rows[c].to_pylist() for c in ("project_id", "member_id", "channel", "feedback")))
                  if r[0] in catalog.company_of_project and r[1] in catalog.member_occupation]
        return ranking.observe(wanted) if wanted else 0

    ingest_doc = {kind: {"requestBody": {"required": True, "content": {"application/json": {
        "schema": _record_schema(kind)}}}} for kind in ("events", "feedback", "impressions")}
    accepted_doc = {202: {"description": "queued: {accepted, duplicates}"},
                    413: {"description": "body over the size limit"},
                    422: {"description": "[{line, field, message, value}]: nothing was queued"},
                    503: {"description": "{error, dependency}: the queue cannot be reached"}}

    @app.post("/v1/events", status_code=202, openapi_extra=ingest_doc["events"], responses=accepted_doc,
              summary="Seeker events (SEARCH, VIEW, SAVE, APPLY, DISMISS)")
    async def post_events(request: Request, key: Key) -> JSONResponse:
        require(key, ["events:write"])
        return await ingest(request, "events", key)

    @app.post("/v1/impressions", status_code=202, openapi_extra=ingest_doc["impressions"], responses=accepted_doc,
              summary="Seeker impressions (jobs shown)")
    async def post_impressions(request: Request, key: Key) -> JSONResponse:
        require(key, ["events:write"])
        return await ingest(request, "impressions", key)

    @app.post("/v1/feedback", status_code=202, openapi_extra=ingest_doc["feedback"], responses=accepted_doc,
              summary="Hirer feedback on candidates (hirer keys: their company's projects only)")
    async def post_feedback(request: Request, key: Key) -> JSONResponse:
        require(key, ["events:write", "hirer"])
        return await ingest(request, "feedback", key)

    # -- seeker reads ----------------------------------------------------------------------------------------------
    @app.get("/v1/members/{member_id}/jobs", summary="Job recommendations with score parts")
    def member_jobs(member_id: EntityId, key: Key, k: Annotated[int, Query(ge=1, le=100)] = 20) -> JSONResponse:
        require(key, ["seeker:read"])
        recommender = state.require("jobs")
        views.known_member(state, member_id)
        return JSONResponse(recommender.recommend(member_id, k))  # type: ignore[attr-defined]

    @app.get("/v1/members/{member_id}/query-suggestions", summary="Published query suggestions")
    def member_suggestions(member_id: EntityId, key: Key,
                           k: Annotated[int, Query(ge=1, le=100)] = 10) -> JSONResponse:
        require(key, ["seeker:read"])
        state.require("suggestions")
        views.known_member(state, member_id)
        return JSONResponse(views.suggestions(state, member_id, k))

    @app.get("/v1/members/{member_id}", summary="A member's profile and recent sessions as activity documents")
    def member_profile(member_id: EntityId, key: Key,
                       sessions: Annotated[int, Query(ge=0, le=100)] = 10) -> JSONResponse:
        require(key, ["seeker:read"])
        views.known_member(state, member_id)
        return JSONResponse(views.member_profile(state, log_reader, member_id, sessions))

    @app.get("/v1/members/{member_id}/activity-embeddings", summary="Nearest open jobs per activity encoder")
    def member_embeddings(member_id: EntityId, key: Key, k: Annotated[int, Query(ge=1, le=50)] = 5) -> JSONResponse:
        require(key, ["seeker:read"])
        state.require("jobs")
        views.known_member(state, member_id)
        return JSONResponse(views.member_embeddings(state, member_id, k))

    # -- hirer routes ----------------------------------------------------------------------------------------------
    def owned_project(key: ApiKey, project_id: int) -> None:
        require(key, ["hirer"])
        views.check_project(state, key, project_id)

    @app.get("/v1/projects/{project_id}", summary="A hiring project")
    def get_project(project_id: EntityId, key: Key) -> dict:
        owned_project(key, project_id)
        return views.project_record(state, project_id) | {
            "company_id": state.require_catalog().company_of_project.get(project_id)}

    @app.post("/v1/projects/{project_id}/candidates:rank", summary="Rank candidates for a project")
    def rank(project_id: EntityId, body: RankRequest, key: Key) -> JSONResponse:
        owned_project(key, project_id)
        ranking: Ranking = state.require("ranking")  # type: ignore[assignment]
        members = state.require_catalog().member_occupation
        unknown = [c for c in body.candidates if c not in members]
        if unknown:
            return JSONResponse([{"line": None, "field": "body.candidates", "message":
                                  f"unknown member {unknown[0]}" + (f" (and {len(unknown) - 1} more)"
                                                                    if len(unknown) > 1 else "")}],
                                status_code=422)
        ranked = ranking.rank(project_id, list(dict.fromkeys(body.candidates)), body.channel)
        return JSONResponse({"project_id": project_id, "channel": body.channel, "model": {"hiring": ranking.version},
                             "items": [{"member_id": m, "score": round(s, 6)} for m, s in ranked]})

    @app.get("/v1/projects/{project_id}/candidates",
             summary="The project's candidates ranked with and without online term weights")
    def project_candidates(project_id: EntityId, key: Key, channel: Channel = "applicants",
                           limit: Annotated[int, Query(ge=1, le=200)] = 30) -> JSONResponse:
        owned_project(key, project_id)
        return JSONResponse(views.project_candidates(state, log_reader, project_id, channel, limit))

    @app.get("/v1/projects/{project_id}/term-weights", summary="The project's learned term weights (003)")
    def project_term_weights(project_id: EntityId, key: Key, k: Annotated[int, Query(ge=1, le=50)] = 5
                             ) -> JSONResponse:
        owned_project(key, project_id)
        return JSONResponse(views.project_term_weights(state, log_reader, project_id, k))

    @app.post("/v1/audiences:expand", summary="The job's exact-match anchors, then the seekers most like them")
    def audiences_expand(body: ExpandRequest, key: Key) -> JSONResponse:
        require(key, ["hirer"])
        catalog = state.require_catalog()
        if key.scope == "hirer":
            company = catalog.company_of_job.get(body.job_id)
            if company is None or company != key.company_id:
                raise HTTPException(403, f"job {body.job_id} is not a job of company {key.company_id} (the company "
                                         f"key {key.key_id} is bound to)")
        elif body.job_id not in catalog.job_rows:
            raise HTTPException(404, f"job_id: unknown job {body.job_id}")
        audiences = state.require("audiences")
        params = ExpansionParams(method=body.method, k=body.k, threshold=body.threshold, seeds=body.seeds)
        return JSONResponse(audiences.expand(body.job_id, params))  # type: ignore[attr-defined]

    # -- models ----------------------------------------------------------------------------------------------------
    @app.get("/v1/models", summary="Published versions per family, the flows' runs, evaluation figures")
    def models(key: Key) -> JSONResponse:
        require(key, ["seeker:read"])
        return JSONResponse(views.models(state))

    @app.post("/v1/models/{group}:rollback", summary="Admin: make the group's previous version current")
    def rollback(group: Annotated[Literal[GROUPS], Path(description="a model family")],  # type: ignore[valid-type]
                 key: Key) -> JSONResponse:
        require(key, ())
        try:
            return JSONResponse(views.rollback(state, group))
        except LookupError as e:
            return _error(409, str(e))

    # -- operations ------------------------------------------------------------------------------------------------
    @app.get("/healthz", summary="The process answers")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Store and log reachable, model versions loaded per route")
    def readyz() -> JSONResponse:
        loaded = state.loaded
        routes = {}
        for route, component in (("/v1/members/{id}/jobs", "jobs"),
                                 ("/v1/members/{id}/query-suggestions", "suggestions"),
                                 ("/v1/projects/{id}/candidates:rank", "ranking"),
                                 ("/v1/audiences:expand", "audiences")):
            value = getattr(loaded, component)
            routes[route] = ({"ready": True, "models": _versions(value)} if value is not None else
                             {"ready": False, "reason": loaded.errors.get(component, "not loaded")})
        body = {"store": {"spec": state.store_spec, "reachable": state.store_error is None,
                          **({"error": state.store_error} if state.store_error else {})},
                "log": {"path": str(settings.event_log_path), "loaded": loaded.catalog is not None,
                        **({"error": state.log_error} if state.log_error else {})},
                "routes": routes, "reloads": state.reloads}
        ready = state.store_error is None and loaded.catalog is not None
        return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics_route(request: Request) -> Response:
        try:
            metrics.lag.set(queue_call(request.app, lambda q: q.lag()))
        except (QueueUnavailable, ValueError):
            metrics.lag.set(-1)
        metrics.reloads.set(state.reloads)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


class _Measure:
    """Request latency per route template, as plain ASGI middleware (no per-request task or body copies)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status[0],
                                 time.perf_counter() - start)


class _BodyLimit:
    """413 for a request body over `limit` bytes, declared (Content-Length) or streamed (chunked), on every route:
    the body is read up to the limit before the route runs, then handed to it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _refuse(self, send, size: str) -> None:
        body = json.dumps({"error": f"request body: {size} is over the limit of {self.limit} bytes "
                                    "(JOBMATCH_MAX_BODY_BYTES); send smaller batches"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send, f"{int(declared)} bytes")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(send, f"more than {size} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, handed = b"".join(chunks), False

        async def replay():
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: waits for the client to disconnect

        await self.app(scope, replay, send)


def _versions(component: object) -> dict:
    versions = getattr(component, "versions", None)
    if callable(versions):
        return versions()
    if hasattr(component, "manifest"):
        return {component.manifest.group: component.manifest.version}  # type: ignore[attr-defined]
    return {"hiring": component.version}  # type: ignore[attr-defined]


def app_from_env() -> FastAPI:
    """The factory `uvicorn --factory jobmatch.serve.app:app_from_env` (and `jobmatch serve`) calls."""
    return create_app(Settings())
