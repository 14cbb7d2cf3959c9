"""API keys, scopes and tenant isolation against a real uvicorn server on loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import httpx
import pytest
from serve_fixtures import Server, bearer, cli, make_key, served_home_at

from jobmatch.serve.keys import KeyStore

ROUTES = [("GET", "/v1/members/0/jobs", None), ("GET", "/v1/members/0/query-suggestions", None),
          ("GET", "/v1/projects/0", None), ("POST", "/v1/projects/0/candidates:rank", {"candidates": [1, 2]}),
          ("POST", "/v1/audiences:expand", {"job_id": 0}),
          ("POST", "/v1/events", []), ("POST", "/v1/feedback", []), ("POST", "/v1/impressions", [])]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return served_home_at(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(home):
    with Server(home, env={"JOBMATCH_MAX_BODY_BYTES": "20000"}) as s:
        yield s


@pytest.fixture(scope="module")
def projects(home):
    """Two projects of different companies: (project, its company), (another company's project, that company)."""
    import pyarrow.parquet as pq

    t = pq.read_table(home / "data" / "projects.parquet").to_pylist()
    first = t[0]
    other = next(r for r in t if r["company_id"] != first["company_id"])
    return ((first["project_id"], first["company_id"], first["job_id"]),
            (other["project_id"], other["company_id"], other["job_id"]))


def call(server, method, path, key=None, body=None):
    return httpx.request(method, server.url + path, headers=bearer(key) if key else {},
                         json=body, timeout=30)


def test_keys_commands_store_only_a_hash(home):
    created = cli(home, "keys", "create", "--scope", "seeker:read", "--label", "web")
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("jm_")
    listing = cli(home, "keys", "list")
    assert listing.exit_code == 0 and token not in listing.output
    assert token not in (home / "keys.sqlite").read_bytes().decode("latin-1")
    key_id = token.split("_")[1]
    entry = next(json.loads(line) for line in listing.output.splitlines() if key_id in line)
    assert entry["scope"] == "seeker:read" and entry["label"] == "web" and entry["revoked_at"] is None
    bad = cli(home, "keys", "create", "--scope", "hirer")
    assert bad.exit_code == 2 and "--company" in bad.output
    bad = cli(home, "keys", "create", "--scope", "root")
    assert bad.exit_code == 2 and "'root'" in bad.output
    assert cli(home, "keys", "revoke", key_id).exit_code == 0
    again = cli(home, "keys", "revoke", key_id)
    assert again.exit_code == 2 and "already revoked" in again.output


def test_a_key_verifies_only_with_its_whole_secret(tmp_path):
    store = KeyStore(tmp_path / "keys.sqlite")
    token, key = store.create("admin")
    assert store.verify(token).key_id == key.key_id
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify(f"jm_{key.key_id}_") is None and store.verify("jm_zzzz") is None and store.verify("") is None


def test_no_key_is_401_on_every_route(server):
    for method, path, body in ROUTES:
        r = call(server, method, path, body=body)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and "Authorization: Bearer" in r.json()["error"]
        r = call(server, method, path, key="jm_00000000_not-a-key", body=body)
        assert r.status_code == 401, (path, r.text)


def test_wrong_scope_is_403(server, home, projects):
    (project, company, _job), _ = projects
    seeker, writer, hirer = (make_key(home, "seeker:read"), make_key(home, "events:write"),
                             make_key(home, "hirer", company))
    expected = {"seeker:read": {"/v1/members/0/jobs", "/v1/members/0/query-suggestions"},
                "events:write": {"/v1/events", "/v1/feedback", "/v1/impressions"},
                "hirer": {"/v1/feedback"}}
    for scope, key in (("seeker:read", seeker), ("events:write", writer), ("hirer", hirer)):
        for method, path, body in ROUTES:
            if ("/projects/" in path or "audiences" in path) and scope == "hirer":
                continue  # hirer routes: see the isolation test
            r = call(server, method, path, key=key, body=body)
            if path in expected[scope]:
                assert r.status_code in (200, 202), (scope, path, r.text)
            else:
                assert r.status_code == 403 and repr(scope) in r.json()["error"], (scope, path, r.text)


def test_a_revoked_key_is_refused_within_seconds(server, home):
    key = make_key(home, "seeker:read")
    assert call(server, "GET", "/v1/members/0/query-suggestions", key=key).status_code == 200
    assert cli(home, "keys", "revoke", key.split("_")[1]).exit_code == 0
    deadline = time.monotonic() + 30
    while call(server, "GET", "/v1/members/0/query-suggestions", key=key).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted after 30 s"
        time.sleep(0.5)


def test_a_hirer_key_cannot_touch_another_companys_project_on_any_hirer_route(server, home, projects):
    (own, company, own_job), (foreign, other_company, foreign_job) = projects
    job_of = {own: own_job, foreign: foreign_job}
    key = make_key(home, "hirer", company)
    now = datetime.now(timezone.utc).isoformat()

    def feedback(project, n):
        return [{"feedback_id": f"tenant-{project}-{n}-{time.time_ns()}", "project_id": project, "member_id": 3,
                 "ts": now, "channel": "applicants", "feedback": "message"}]

    routes = [("GET", "/v1/projects/{p}", lambda p: None),
              ("POST", "/v1/projects/{p}/candidates:rank", lambda p: {"candidates": [1, 2, 3]}),
              ("POST", "/v1/feedback", lambda p: feedback(p, 1)),
              ("POST", "/v1/audiences:expand", lambda p: {"job_id": job_of[p], "k": 5})]
    for method, template, body in routes:
        ok = call(server, method, template.format(p=own), key=key, body=body(own))
        assert ok.status_code in (200, 202), (template, ok.text)
        denied = call(server, method, template.format(p=foreign), key=key, body=body(foreign))
        assert denied.status_code == 403, (template, denied.text)
        assert f"company {company}" in denied.json()["error"]
        assert "/projects/" in template or "feedback" in template or str(job_of[foreign]) in denied.json()["error"]
    # a batch mixing the two companies is refused whole
    mixed = call(server, "POST", "/v1/feedback", key=key, body=feedback(own, 2) + feedback(foreign, 3))
    assert mixed.status_code == 403
    # an unknown project is not the hirer's either; the admin sees it as unknown
    assert call(server, "GET", "/v1/projects/987654321", key=key).status_code == 403
    assert call(server, "GET", "/v1/projects/987654321", key=make_key(home, "admin")).status_code == 404
    # the other company's own key does reach it
    theirs = make_key(home, "hirer", other_company)
    assert call(server, "GET", f"/v1/projects/{foreign}", key=theirs).status_code == 200


def test_bodies_over_the_limit_are_413(server, home):
    key = make_key(home, "events:write")
    big = [{"event_id": f"big-{i}", "member_id": 1, "ts": "2026-01-01T00:00:00Z", "action": "SEARCH",
            "channel": "search", "query": "x" * 200} for i in range(200)]
    r = call(server, "POST", "/v1/events", key=key, body=big)
    assert r.status_code == 413 and "20000" in r.json()["error"]

    def chunks():  # no Content-Length: the limit holds for a streamed body too
        for _ in range(50):
            yield b" " * 1000

    r = httpx.post(server.url + "/v1/events", headers=bearer(key), content=chunks(), timeout=30)
    assert r.status_code == 413
    # every route has the limit, not only the ingest routes
    rank = httpx.post(server.url + "/v1/projects/0/candidates:rank", headers=bearer(make_key(home, "admin")),
                      json={"candidates": list(range(5000))}, timeout=30)
    assert rank.status_code == 413
