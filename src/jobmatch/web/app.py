"""The explorer: server-rendered pages under /ui/ on the API's own app (`app_from_env` is what `jobmatch serve` runs).

Every page renders the dicts the /v1 routes return (`jobmatch.serve.views`), with the same keys and scopes: a person
signs in with an API key (kept in an HttpOnly, SameSite=Strict cookie; see `jobmatch.serve.auth`) and sees what that
key may see — a hirer key its company's projects only, no key a sign-in form and nothing else. The pages' buttons
call the /v1 routes from the browser (feedback, re-ranking, rollback). Templates, CSS, JavaScript and plots (SVG
from matplotlib) all ship in the package: nothing is fetched from elsewhere, so the pages work offline.

Pages: /ui/ (start), /ui/members/{id}, /ui/projects/{id}, /ui/models, /ui/marketplace, /ui/login.
"""

from __future__ import annotations

import tempfile
import threading
import time
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from jobmatch.config import Settings
from jobmatch.evaluate.marketplace import marketplace_stats, plots
from jobmatch.evaluate.truth import Truth
from jobmatch.events import EventLog
from jobmatch.hiring.online import CHANNELS, DEFAULT_COMBOS
from jobmatch.serve import views
from jobmatch.serve.app import create_app
from jobmatch.serve.auth import COOKIE, authenticate, require
from jobmatch.serve.keys import ApiKey
from jobmatch.serve.state import ServingState, Unavailable

STATIC = Path(__file__).parent / "static"
SAMPLE = 12  # members and projects listed on the start page
# the buttons on a candidate: the channel's positive and negative rating (003's feedback types per channel)
BUTTONS = {c: ("interview" if c == "applicants" else "message", "archive") for c in CHANNELS}


def _env() -> Environment:
    env = Environment(loader=PackageLoader("jobmatch.web", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: f"{100 * v:.1f}%"
    env.filters["num"] = lambda v, d=3: f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}"
    return env


def _inline_svg(svg: str) -> str:
    """matplotlib's SVG file without its XML prolog and DOCTYPE, to sit inside an HTML page."""
    return svg[svg.index("<svg"):]


def marketplace_view(log_path: Path) -> dict:
    """The marketplace report's statistics and figures (SVG), from the log as it stands."""
    with EventLog(log_path, read_only=True, lock_timeout_s=views.LOG_WAIT_S) as ev:
        snap = ev.snapshot()
        events = snap.events(["member_id", "action", "job_id", "channel"])
        sessions = ev.table("sessions")
        feedback = snap.feedback(["feedback", "channel"])
    stats = marketplace_stats(events, sessions, feedback)
    with tempfile.TemporaryDirectory() as folder:
        figures = [(caption, _inline_svg((Path(folder) / name).read_text()))
                   for caption, name in plots(stats, sessions, events, Path(folder), fmt="svg")]
    return {"stats": stats, "figures": figures}


def _drift(home: Path, member_id: int) -> dict | None:
    """The simulator's truth about this member's intent drift, when the data is simulated and its truth is in
    HOME/truth (only shown, labelled as such; no model reads it)."""
    truth = Truth.find(home / "truth")
    return truth.member_drift(member_id) if truth is not None else None


def _qa_plot(runs: list[dict]) -> str | None:
    """Validation AUC of each daily QA run, published or kept back by the quality gate (SVG)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in runs if r.get("validation_auc") is not None]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 2.8))
    days = [r["as_of"] for r in rows]
    ax.plot(days, [r["validation_auc"] for r in rows], marker="o", color="#1f5f99", label="new model")
    prev = [(d, r["previous_validation_auc"]) for d, r in zip(days, rows) if r.get("previous_validation_auc")]
    if prev:
        ax.plot(*zip(*prev), ls="--", color="#777", label="published model")
    kept = [(d, r["validation_auc"]) for d, r in zip(days, rows) if not r.get("published")]
    if kept:
        ax.scatter(*zip(*kept), marker="x", s=80, color="#b22", zorder=3, label="refused by the gate")
    ax.set_ylabel("validation AUC")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    return _inline_svg(out.getvalue())


def mount(app: FastAPI, settings: Settings) -> FastAPI:
    """Add the explorer's pages (and the /v1/marketplace route they share) to the API app."""
    env = _env()
    state: ServingState = app.state.serving
    log_reader: views.LogReader = app.state.log_reader
    market = views.MarketplaceCache(settings.event_log_path, lambda: marketplace_view(settings.event_log_path))
    app.state.marketplace = market
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")

    @app.get("/v1/marketplace", summary="The marketplace report's statistics, from the log as it stands")
    def marketplace_route(request: Request) -> JSONResponse:
        require(authenticate(request), ["seeker:read"])
        value = market.get()
        return JSONResponse({"stats": value["stats"], "stale": value["stale"]})

    def page(template: str, key: ApiKey | None, status: int = 200, started: float | None = None,
             **context: object) -> HTMLResponse:
        html = env.get_template(template).render(key=key, **context)
        headers = {"Cache-Control": "no-store"}
        if started is not None:  # server time, for the browser's devtools and the explorer benchmark
            headers["Server-Timing"] = f"page;dur={1000 * (time.perf_counter() - started):.1f}"
        return HTMLResponse(html, status_code=status, headers=headers)

    def signed_in(request: Request) -> ApiKey | None:
        if not request.cookies.get(COOKIE):
            return None
        try:
            return authenticate(request)
        except HTTPException:
            return None

    def login_page(request: Request, message: str = "") -> HTMLResponse:
        return page("login.html", None, 401, next=request.url.path, message=message)

    def section(build) -> dict:
        """A page section: its view's dict, or why it is unavailable (the page still renders the rest)."""
        try:
            return {"ok": True, "data": build()}
        except Unavailable as e:
            return {"ok": False, "error": e.message, "dependency": e.dependency}
        except HTTPException as e:
            return {"ok": False, "error": str(e.detail), "dependency": None}

    def admit(request: Request, scopes: list[str], check=lambda key: None) -> tuple[ApiKey | None, HTMLResponse | None]:
        """The signed-in key when it may see the page, else the page to answer with: the sign-in form (no key),
        an error page (403 scope or company, 404 unknown entity, 503 nothing loaded) — never data."""
        key = signed_in(request)
        if key is None:
            return None, login_page(request)
        try:
            require(key, scopes)
            check(key)
        except HTTPException as e:
            return key, page("error.html", key, e.status_code, title=f"{e.status_code}", message=str(e.detail))
        except Unavailable as e:
            return key, page("error.html", key, 503, title="503", message=e.message)
        return key, None

    # -- sign in / out ---------------------------------------------------------------------------------------------
    @app.get("/ui/login", include_in_schema=False)
    def login_form(request: Request) -> HTMLResponse:
        return page("login.html", None, 200, next=request.query_params.get("next", "/ui/"), message="")

    @app.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
        token = (form.get("key") or [""])[0].strip()
        target = (form.get("next") or ["/ui/"])[0]
        if not target.startswith("/ui/") or target.startswith("/ui/login"):
            target = "/ui/"  # only pages of this site: never an open redirect
        key = request.app.state.keys.verify(token) if token else None
        if key is None:
            return page("login.html", None, 401, next=target, message="That key is unknown or revoked.")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    @app.post("/ui/logout", include_in_schema=False)
    def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- pages -----------------------------------------------------------------------------------------------------
    @app.get("/ui/", include_in_schema=False)
    def start(request: Request) -> HTMLResponse:
        started = time.perf_counter()
        key = signed_in(request)
        if key is None:
            return login_page(request)
        catalog = section(state.require_catalog)
        members, projects = [], []
        if catalog["ok"]:
            c = catalog["data"]
            if key.scope in ("seeker:read", "admin"):
                # members with published suggestions first (the richest pages), from the first few hundred
                ids = c.members["member_id"][:400].to_pylist()
                suggested = state.loaded.suggestions
                # stop at SAMPLE: each check may read the store
                has = section(lambda: list(islice((m for m in ids if suggested is not None and suggested.get(m)),
                                                  SAMPLE)))
                members = list(dict.fromkeys((has["data"] if has["ok"] else []) + ids))[:SAMPLE]
            if key.scope in ("hirer", "admin"):
                projects = [p for p, company in c.company_of_project.items()
                            if key.scope == "admin" or company == key.company_id][:SAMPLE]
        return page("index.html", key, started=started, catalog=catalog, members=members, projects=projects)

    @app.get("/ui/members/{member_id}", include_in_schema=False)
    def member_page(request: Request, member_id: int) -> HTMLResponse:
        started = time.perf_counter()

        key, refusal = admit(request, ["seeker:read"], lambda _key: views.known_member(state, member_id))
        if refusal is not None:
            return refusal
        jobs = section(lambda: state.require("jobs").recommend(member_id, 10))  # type: ignore[attr-defined]
        profile = section(lambda: views.member_profile(state, log_reader, member_id, 12))
        drift = _drift(settings.home, member_id)
        if drift and drift["at"] and profile["ok"]:
            profile["data"]["drift_session"] = next(
                (i for i, s in enumerate(profile["data"]["sessions"]) if s["start"] < drift["at"]), None)
        return page("member.html", key, started=started, member_id=member_id, profile=profile,
                    embeddings=section(lambda: views.member_embeddings(state, member_id, 5)),
                    suggestions=section(lambda: views.suggestions(state, member_id, 10)), jobs=jobs,
                    job=lambda j: views.job_summary(state, j), drift=drift)

    @app.get("/ui/projects/{project_id}", include_in_schema=False)
    def project_page(request: Request, project_id: int, channel: str = "applicants") -> HTMLResponse:
        started = time.perf_counter()

        def owned(key: ApiKey) -> None:
            if channel not in CHANNELS:
                raise HTTPException(422, f"channel: unknown value {channel!r}; expected one of {', '.join(CHANNELS)}")
            views.check_project(state, key, project_id)

        key, refusal = admit(request, ["hirer"], owned)
        if refusal is not None:
            return refusal
        record = views.project_record(state, project_id)
        ratings = [r for c, r in DEFAULT_COMBOS if c == channel]
        return page("project.html", key, started=started, project_id=project_id, project=record, channel=channel,
                    channels=CHANNELS, buttons=[b for b in BUTTONS[channel] if b in ratings],
                    candidates=section(lambda: views.project_candidates(state, log_reader, project_id, channel, 30)),
                    weights=section(lambda: views.project_term_weights(state, log_reader, project_id, 5)))

    @app.get("/ui/models", include_in_schema=False)
    def models_page(request: Request) -> HTMLResponse:
        started = time.perf_counter()
        key, refusal = admit(request, ["seeker:read"])
        if refusal is not None:
            return refusal
        models = section(lambda: views.models(state))
        qa_plot = _qa_plot(models["data"]["runs"].get("qa", [])) if models["ok"] else None
        return page("models.html", key, started=started, models=models, qa_plot=qa_plot)

    @app.get("/ui/marketplace", include_in_schema=False)
    def marketplace_page(request: Request) -> HTMLResponse:
        started = time.perf_counter()
        key, refusal = admit(request, ["seeker:read"])
        if refusal is not None:
            return refusal
        return page("marketplace.html", key, started=started, market=section(market.get))

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    # warm up in the background: the statistics (seconds on the default simulation) and matplotlib's import, so the
    # first page view does not pay for them
    threading.Thread(target=lambda: (section(market.get), _qa_plot([])), daemon=True, name="jobmatch-ui-warm").start()
    return app


def app_from_env() -> FastAPI:
    """The factory `jobmatch serve` runs: the /v1 API with the explorer mounted (settings from JOBMATCH_*)."""
    settings = Settings()
    return mount(create_app(settings), settings)

