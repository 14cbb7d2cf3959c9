"""The explorer pages (/ui/) over real uvicorn on loopback: sign-in, tenant isolation, pages that show exactly what
the /v1 routes return; and, marked `browser`, the same pages driven in the OS's headless Chromium by Playwright
(clicks, a feedback button that re-ranks, screenshots at desktop and phone widths)."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import httpx
import pytest
from serve_fixtures import Server, bearer, make_key, served_home_at

from jobmatch.events import EventLog


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return served_home_at(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(home):
    with Server(home) as s:
        yield s


@pytest.fixture(scope="module")
def keys(home):
    return {"admin": make_key(home, "admin"), "seeker": make_key(home, "seeker:read")}


@pytest.fixture(scope="module")
def project(home):
    """A project with applicants, and its company."""
    with EventLog(home / "events.duckdb", read_only=True) as ev:
        row = ev._con.execute("""
            SELECT p.project_id, p.company_id, count(DISTINCT e.member_id) AS n FROM projects p
            JOIN events e ON e.job_id = p.job_id AND e.action = 'APPLY'
            GROUP BY ALL HAVING n >= 4 ORDER BY n DESC, p.project_id LIMIT 1""").fetchone()
        other = ev._con.execute("SELECT project_id FROM projects WHERE company_id <> ? ORDER BY project_id LIMIT 1",
                                [row[1]]).fetchone()[0]
    return {"id": row[0], "company": row[1], "other": other}


def page(server, path: str, key: str | None = None) -> httpx.Response:
    cookies = {"jobmatch_key": key} if key else None
    return httpx.get(f"{server.url}{path}", cookies=cookies, timeout=60, follow_redirects=False)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_no_key_gets_the_sign_in_form_and_no_data(server, home, keys):
    member = 0
    for path in ("/ui/", f"/ui/members/{member}", "/ui/projects/1", "/ui/models", "/ui/marketplace"):
        r = page(server, path)
        assert r.status_code == 401, (path, r.status_code)
        assert 'name="key"' in r.text and "Sign in" in r.text
        assert "Recommended jobs" not in r.text and "Candidates" not in r.text
    assert page(server, "/ui/members/0", "not-a-key").status_code == 401
    # a wrong key at the form is refused; a right one sets an HttpOnly, SameSite=Strict cookie and goes where asked
    bad = httpx.post(f"{server.url}/ui/login", data={"key": "nope", "next": "/ui/models"}, timeout=30)
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    ok = httpx.post(f"{server.url}/ui/login", data={"key": keys["seeker"], "next": "https://evil.example/"},
                    timeout=30)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/"  # never an open redirect
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_member_page_shows_what_the_api_returns(server, keys):
    member = 0
    auth = bearer(keys["seeker"])
    jobs = httpx.get(f"{server.url}/v1/members/{member}/jobs", params={"k": 10}, headers=auth, timeout=60).json()
    sugg = httpx.get(f"{server.url}/v1/members/{member}/query-suggestions", headers=auth, timeout=60).json()
    prof = httpx.get(f"{server.url}/v1/members/{member}", params={"sessions": 12}, headers=auth, timeout=60).json()
    emb = httpx.get(f"{server.url}/v1/members/{member}/activity-embeddings", headers=auth, timeout=60).json()
    r = page(server, f"/ui/members/{member}", keys["seeker"])
    assert r.status_code == 200, r.text
    html = r.text
    assert [int(j) for j in re.findall(r'<tr data-job="(\d+)"', html)] == [i["job_id"] for i in jobs["items"]]
    assert re.findall(r'<span class="query">([^<]*)</span>', html) == [s["query"] for s in sugg["items"]]
    assert len(re.findall(r'<time datetime=', html)) == len(prof["sessions"]) > 0
    assert set(re.findall(r'data-encoder="([^"]+)"', html)) == set(emb["encoders"]) and len(emb["encoders"]) >= 3
    # each QA breakdown sums to its probability's logit
    for it in jobs["items"]:
        qa = it["qa"]
        logit = qa["global"] + qa["member"] + qa["job"]
        assert math.isclose(1 / (1 + math.exp(-logit)), qa["probability"], abs_tol=2e-5)
    # the simulator's truth is shown only labelled as such
    assert "Simulated truth" in html


def test_a_hirer_key_sees_only_its_companys_projects(server, home, project):
    key = make_key(home, "hirer", project["company"])
    start = page(server, "/ui/", key)
    assert start.status_code == 200
    listed = {int(p) for p in re.findall(r'href="/ui/projects/(\d+)"', start.text)}
    with EventLog(home / "events.duckdb", read_only=True) as ev:
        own = {p for (p,) in ev._con.execute("SELECT project_id FROM projects WHERE company_id = ?",
                                              [project["company"]]).fetchall()}
    assert listed and listed <= own
    assert "/ui/members/" not in start.text  # a hirer key reads no member pages
    mine = page(server, f"/ui/projects/{project['id']}", key)
    assert mine.status_code == 200 and 'id="candidates"' in mine.text
    theirs = page(server, f"/ui/projects/{project['other']}", key)
    assert theirs.status_code == 403 and 'id="candidates"' not in theirs.text
    assert page(server, "/ui/members/0", key).status_code == 403
    # the page lists the candidates the route ranks, in its order
    api = httpx.get(f"{server.url}/v1/projects/{project['id']}/candidates", headers=bearer(key), timeout=60).json()
    assert [int(m) for m in re.findall(r'<tr data-member="(\d+)"', mine.text)] == \
        [c["member_id"] for c in api["with_online"]]


def test_cookie_writes_need_the_ui_header_and_rollback_needs_admin(server, keys, project):
    record = [{"feedback_id": "web-csrf-1", "project_id": project["id"], "member_id": 0,
               "ts": "2026-01-20T10:00:00Z", "channel": "applicants", "feedback": "interview"}]
    forged = httpx.post(f"{server.url}/v1/feedback", json=record, cookies={"jobmatch_key": keys["admin"]}, timeout=30)
    assert forged.status_code == 403 and "x-jobmatch-ui" in forged.json()["error"]
    seeker = httpx.post(f"{server.url}/v1/models/qa:rollback", headers=bearer(keys["seeker"]), timeout=30)
    assert seeker.status_code == 403
    models = page(server, "/ui/models", keys["seeker"])
    assert models.status_code == 200 and "quality gate" in models.text
    assert 'class="rollback"' not in models.text  # the button is for admins only


def test_marketplace_page_shows_the_logs_statistics(server, keys, home):
    deadline = time.monotonic() + 120  # computed in the background once per log change
    while True:
        r = page(server, "/ui/marketplace", keys["seeker"])
        if "being computed" not in r.text or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200 and "<svg" in r.text
    with EventLog(home / "events.duckdb", read_only=True) as ev:
        events = ev.count("events")
    assert f"{events:,}" in text_of(r.text)


# -- in a real browser ---------------------------------------------------------------------------------------------
CHROMIUM = os.environ.get("JOBMATCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM} (scripts/install-os-deps installs it)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("JOBMATCH_SCREENSHOTS")
    folder = Path(out) if out else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def signed_in(browser, server, key: str, width: int = 1280):
    context = browser.new_context(viewport={"width": width, "height": 900})
    pg = context.new_page()
    pg.goto(f"{server.url}/ui/members/0")
    assert pg.get_by_role("heading", name="Sign in").is_visible()  # no key: the form, not data
    pg.get_by_label("API key").fill(key)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url(re.compile(r"/ui/members/0$"))
    return context, pg


@pytest.mark.browser
def test_member_page_in_a_browser(browser, server, keys, shots):
    context, pg = signed_in(browser, server, keys["seeker"])
    assert pg.get_by_role("heading", name="Member 0", level=1).is_visible()
    assert pg.locator("#suggestions li").count() > 0
    row = pg.locator("#jobs tbody tr").first
    p, g, m, j = (float(row.get_attribute(a)) for a in ("data-probability", "data-global", "data-member",
                                                         "data-jobpart"))
    assert math.isclose(1 / (1 + math.exp(-(g + m + j))), p, abs_tol=2e-5)
    assert pg.locator(".encoder").count() >= 3
    pg.screenshot(path=str(shots / "member.png"), full_page=True)
    pg.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than the screen
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    pg.screenshot(path=str(shots / "member-phone.png"))
    context.close()


@pytest.mark.browser
def test_feedback_click_reranks_the_candidates(browser, server, home, project, shots):
    key = make_key(home, "hirer", project["company"])
    context, pg = signed_in(browser, server, key)
    pg.goto(f"{server.url}/ui/projects/{project['id']}")
    rows = pg.locator("#candidates tbody tr")
    n = rows.count()
    assert n >= 4
    order = lambda: [r.get_attribute("data-member") for r in rows.all()]  # noqa: E731
    before = order()
    scores_before = rows.locator(".score").all_inner_texts()
    # an interview for the last-ranked candidate, an archive for the first: the page sends each to /v1/feedback and
    # re-ranks through candidates:rank; the ranker sees the project's new term weights at once
    for row, button in ((rows.nth(n - 1), "interview"), (rows.nth(0), "archive")):
        member = row.get_attribute("data-member")
        row.get_by_role("button", name=f"{button} member {member}").click()
        pg.wait_for_function(f"document.getElementById('status').textContent.includes('member {member}: {button} "
                             "sent; re-ranked')")
        assert button in pg.locator(f'#candidates tr[data-member="{member}"] .fb').inner_text()
    after = order()
    assert after != before, pg.locator("#status").inner_text()  # a candidate moved
    assert rows.locator(".score").all_inner_texts() != scores_before
    ranked = httpx.post(f"{server.url}/v1/projects/{project['id']}/candidates:rank", headers=bearer(key),
                        json={"candidates": [int(m) for m in before], "channel": "applicants"}, timeout=60).json()
    assert [str(i["member_id"]) for i in ranked["items"]] == after  # the page shows the API's order
    pg.screenshot(path=str(shots / "project.png"), full_page=True)
    other = pg.goto(f"{server.url}/ui/projects/{project['other']}")
    assert other.status == 403 and pg.locator("#candidates").count() == 0
    context.close()


@pytest.mark.browser
def test_models_and_marketplace_pages_in_a_browser(browser, server, keys, shots):
    context, pg = signed_in(browser, server, keys["admin"])
    pg.goto(f"{server.url}/ui/models")
    assert pg.get_by_role("heading", name="Published versions").is_visible()
    assert pg.locator("#gate tbody tr").count() >= 1  # the QA quality gate's decisions
    # each group was published once here: no rollback button, and the route says why
    assert pg.locator("button.rollback").count() == 0
    r = httpx.post(f"{server.url}/v1/models/qa:rollback", headers=bearer(keys["admin"]), timeout=30)
    assert r.status_code == 409 and "nothing to roll back" in r.json()["error"]
    pg.screenshot(path=str(shots / "models.png"), full_page=True)
    pg.goto(f"{server.url}/ui/marketplace")
    deadline = time.monotonic() + 120  # the statistics are computed in the background once per log change
    while pg.locator("#volume").count() == 0 and time.monotonic() < deadline:
        time.sleep(1)
        pg.reload()
    assert pg.locator("#volume").is_visible() and pg.locator("figure.plot svg").count() == 2
    pg.screenshot(path=str(shots / "marketplace.png"), full_page=True)
    context.close()
