"""The HTTP API on a real uvicorn server over loopback: every route, ingest through the queue, per-route 503 for a
missing model, reloads when a flow publishes, /readyz and /metrics, and a real redis-server stopped mid-traffic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest
import redis
from serve_fixtures import (
    Server,
    bearer,
    copy_home,
    copy_store,
    free_port,
    make_key,
    served_home_at,
)

from jobmatch.hiring.state import RedisProjectCounts
from jobmatch.nearline.queue import open_queue
from jobmatch.store import open_store


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return served_home_at(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(home):
    with Server(home) as s:
        yield s


@pytest.fixture(scope="module")
def admin(home):
    return bearer(make_key(home, "admin"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def test_member_jobs_carry_score_parts_and_cold_members_use_their_profile(server, home, admin):
    r = httpx.get(f"{server.url}/v1/members/0/jobs", params={"k": 20}, headers=admin, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["basis"] == "activity" and set(body["models"]) == {"activity", "qa"}
    items = body["items"]
    assert len(items) == 20 and len({i["job_id"] for i in items}) == 20
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        qa = item["qa"]
        assert 0 < qa["probability"] < 1 and -1 <= item["similarity"] <= 1
        log_odds = qa["global"] + qa["member"] + qa["job"]
        assert abs(1 / (1 + np.exp(-log_odds)) - qa["probability"]) < 1e-4
        assert abs(item["score"] - 0.5 * (1 + item["similarity"]) * qa["probability"]) < 1e-4
    with open_store(f"sqlite:{home / 'store.sqlite'}") as store:
        dataset = next(d for d in store.manifest("activity").datasets if d.startswith("activity_embedding/decay-"))
        import pyarrow.parquet as pq

        members = pq.read_table(home / "data" / "members.parquet")["member_id"].to_pylist()
        cold = next(m for m in members if store.get_one(dataset, str(m)) is None)
    r = httpx.get(f"{server.url}/v1/members/{cold}/jobs", params={"k": 5}, headers=admin, timeout=30)
    assert r.status_code == 200 and r.json()["basis"] == "profile" and len(r.json()["items"]) == 5
    assert httpx.get(f"{server.url}/v1/members/123456789/jobs", headers=admin).status_code == 404
    for bad in ({"k": 0}, {"k": 101}, {"k": "x"}):
        r = httpx.get(f"{server.url}/v1/members/0/jobs", params=bad, headers=admin)
        assert r.status_code == 422 and r.json()[0]["field"] == "query.k"
    assert httpx.get(f"{server.url}/v1/members/{2**63}/jobs", headers=admin).status_code == 422


def test_query_suggestions(server, admin):
    r = httpx.get(f"{server.url}/v1/members/0/query-suggestions", params={"k": 3}, headers=admin)
    assert r.status_code == 200, r.text
    assert [s["query"] for s in r.json()["items"]] == ["query 0", "query 1", "query 2"]
    quiet = httpx.get(f"{server.url}/v1/members/599/query-suggestions", headers=admin).json()
    assert quiet["items"] == [] and "no suggestions" in quiet["note"]


def test_audience_expansion_puts_the_anchors_first_then_similar_seekers(server, home, admin):
    import pyarrow.parquet as pq

    jobs = pq.read_table(home / "data" / "jobs.parquet")["job_id"].to_pylist()
    bodies = [httpx.post(f"{server.url}/v1/audiences:expand", json={"job_id": j, "k": 20, "threshold": 0.0},
                         headers=admin).json() for j in jobs[:20]]
    expanded = [b for b in bodies if len(b["items"]) > b["anchors"]]
    assert expanded, bodies  # some job's anchors have user vectors, so the expansion adds seekers
    for body in bodies:
        items = body["items"]
        assert [i["anchor"] for i in items] == [True] * body["anchors"] + [False] * (len(items) - body["anchors"])
        assert len({i["member_id"] for i in items}) == len(items)
        added = [i["cosine"] for i in items if not i["anchor"]]
        assert all(c >= 0.0 for c in added) and added == sorted(added, reverse=True)
    strict = httpx.post(f"{server.url}/v1/audiences:expand", json={"job_id": expanded[0]["job_id"], "k": 20,
                                                                    "threshold": 0.99}, headers=admin).json()
    assert all(i["anchor"] or i["cosine"] >= 0.99 for i in strict["items"])
    assert httpx.post(f"{server.url}/v1/audiences:expand", json={"job_id": 987654321},
                      headers=admin).status_code == 404
    assert httpx.post(f"{server.url}/v1/audiences:expand", json={"job_id": 0, "method": "knn"},
                      headers=admin).status_code == 422


def test_feedback_posted_a_moment_earlier_changes_the_ranking(server, home, admin):
    import pyarrow.parquet as pq

    project = pq.read_table(home / "data" / "projects.parquet")["project_id"].to_pylist()[5]
    candidates = list(range(100, 200))
    url = f"{server.url}/v1/projects/{project}/candidates:rank"
    before = httpx.post(url, json={"candidates": candidates, "channel": "recommended_matches"}, headers=admin)
    assert before.status_code == 200, before.text
    assert sorted(i["member_id"] for i in before.json()["items"]) == candidates
    liked = [i["member_id"] for i in before.json()["items"]][-10:]
    fb = [{"feedback_id": f"change-{project}-{m}", "project_id": project, "member_id": m, "ts": now_iso(),
           "channel": "recommended_matches", "feedback": "message"} for m in liked]
    posted = httpx.post(f"{server.url}/v1/feedback", json=fb, headers=admin)
    assert posted.status_code == 202 and posted.json() == {"accepted": 10, "duplicates": 0, "counted": 10}
    after = httpx.post(url, json={"candidates": candidates, "channel": "recommended_matches"}, headers=admin).json()
    score = {i["member_id"]: i["score"] for i in after["items"]}
    old = {i["member_id"]: i["score"] for i in before.json()["items"]}
    assert any(score[m] != old[m] for m in candidates)
    again = httpx.post(f"{server.url}/v1/feedback", json=fb, headers=admin)
    assert again.json() == {"accepted": 0, "duplicates": 10, "counted": 0}  # idempotent on feedback ids
    bad = httpx.post(url, json={"candidates": [1, 987654321]}, headers=admin)
    assert bad.status_code == 422 and "987654321" in bad.json()[0]["message"]
    assert httpx.post(url, json={"candidates": [1], "channel": "fax"}, headers=admin).status_code == 422


def test_ingest_validates_like_jobmatch_ingest_and_queues(server, home, admin):
    events = [{"event_id": f"api-{i}", "member_id": 7, "ts": now_iso(), "action": "VIEW", "channel": "search",
               "job_id": 3} for i in range(5)]
    r = httpx.post(f"{server.url}/v1/events", json=events, headers=admin)
    assert r.status_code == 202 and r.json() == {"accepted": 5, "duplicates": 0}
    assert httpx.post(f"{server.url}/v1/events", json=events, headers=admin).json() == {"accepted": 0,
                                                                                       "duplicates": 5}
    with open_queue(home) as queue:
        assert queue.lag() >= 5
    bad = events[:1] + [{**events[1], "event_id": "api-bad", "action": "LIKE"},
                        {**events[2], "event_id": "api-naive", "ts": "2026-01-01T00:00:00"}]
    r = httpx.post(f"{server.url}/v1/events", json=bad, headers=admin)
    assert r.status_code == 422, r.text
    errors = {(e["line"], e["field"]) for e in r.json()}
    assert {(2, "action"), (3, "ts")} <= errors and all(e["message"] for e in r.json())
    for body in (b"not json", b'{"event_id": 1}', b"[1, 2]"):
        r = httpx.post(f"{server.url}/v1/events", content=body, headers=admin)
        assert r.status_code == 422 and r.json()[0]["field"] == "body"
    imp = httpx.post(f"{server.url}/v1/impressions", json=[{"impression_id": "imp-1"}], headers=admin)
    assert imp.status_code == 422


def test_readyz_names_model_versions_and_metrics_has_latency_and_lag(server, admin):
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["ready"] and ready["store"]["reachable"] and ready["log"]["loaded"]
    assert ready["routes"]["/v1/members/{id}/jobs"]["models"] == {"activity": 1, "qa": 1}
    assert ready["routes"]["/v1/projects/{id}/candidates:rank"]["models"] == {"hiring": 1}
    httpx.get(f"{server.url}/v1/members/0/jobs", headers=admin)
    text = httpx.get(f"{server.url}/metrics").text
    assert ('jobmatch_http_request_duration_seconds_bucket{le="0.025",method="GET",'
            'route="/v1/members/{member_id}/jobs"}') in text
    assert "jobmatch_queue_lag_events" in text


def test_a_missing_model_is_503_on_its_route_only_and_a_publish_is_picked_up(home, tmp_path):
    partial = copy_home(home, tmp_path / "partial", groups=("activity", "qa"))
    admin = bearer(make_key(partial, "admin"))
    with Server(partial, env={"JOBMATCH_RELOAD_INTERVAL_S": "0.5"}) as s:
        r = httpx.post(f"{s.url}/v1/projects/0/candidates:rank", json={"candidates": [1]}, headers=admin)
        assert r.status_code == 503 and r.json()["dependency"] == "model:hiring", r.text
        r = httpx.get(f"{s.url}/v1/members/0/query-suggestions", headers=admin)
        assert r.status_code == 503 and r.json()["dependency"] == "model:intent"
        assert httpx.get(f"{s.url}/v1/members/0/jobs", headers=admin).status_code == 200
        assert not httpx.get(f"{s.url}/readyz").json()["routes"]["/v1/projects/{id}/candidates:rank"]["ready"]
        # a flow publishes: the server loads it without a restart
        copy_store(home / "store.sqlite", f"sqlite:{partial / 'store.sqlite'}", groups=("intent",))
        deadline = time.monotonic() + 60
        while httpx.get(f"{s.url}/v1/members/0/query-suggestions", headers=admin).status_code != 200:
            assert time.monotonic() < deadline, s.output()
            time.sleep(0.3)


def _redis_server(port: int, workdir) -> subprocess.Popen:
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.redis
def test_redis_stopped_mid_traffic_is_503_naming_it_or_cached_never_a_hang(home, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _redis_server(port, tmp_path)
    try:
        served = tmp_path / "home"
        served.mkdir()
        shutil.copy(home / "events.duckdb", served / "events.duckdb")
        admin = bearer(make_key(served, "admin"))
        shutil.copytree(home / "flows", served / "flows")
        copy_store(home / "store.sqlite", url)
        counts = RedisProjectCounts(url, create=True)
        counts.lookup(0, np.zeros(1, np.int64))  # the hiring flow's first use creates the counts' generation
        counts.close()
        with Server(served, env={"JOBMATCH_STORE": url, "JOBMATCH_STREAM": url}) as s:
            warm = ["/v1/members/0/jobs", "/v1/members/0/query-suggestions"]
            for path in warm:
                assert httpx.get(s.url + path, headers=admin).status_code == 200
            rank = {"candidates": [1, 2, 3]}
            assert httpx.post(f"{s.url}/v1/projects/0/candidates:rank", json=rank, headers=admin).status_code == 200
            event = [{"event_id": "redis-1", "member_id": 1, "ts": now_iso(), "action": "SEARCH",
                      "channel": "search", "query": "nurse"}]
            assert httpx.post(f"{s.url}/v1/events", json=event, headers=admin).status_code == 202
            proc.terminate()
            proc.wait(timeout=10)
            seen = {}
            for path, body in [(p, None) for p in warm + ["/v1/members/1/jobs", "/v1/members/2/query-suggestions"]] + [
                    ("/v1/projects/0/candidates:rank", rank), ("/v1/events", [{**event[0], "event_id": "redis-2"}])]:
                for _ in range(3):
                    start = time.monotonic()
                    r = httpx.request("POST" if body is not None else "GET", s.url + path, json=body, headers=admin,
                                      timeout=10)
                    took = time.monotonic() - start
                    assert took < 1.0, (path, took)
                    assert r.status_code in (200, 503), (path, r.status_code, r.text)
                    assert r.headers["content-type"] == "application/json"
                    if r.status_code == 503:
                        assert str(port) in r.json()["dependency"] and "Traceback" not in r.text
                    seen[path] = r.status_code
            assert seen["/v1/members/0/jobs"] == 200  # answered from what was cached
            assert seen["/v1/members/1/jobs"] == 503 and seen["/v1/events"] == 503
            assert seen["/v1/projects/0/candidates:rank"] == 503
            assert httpx.get(s.url + "/healthz").status_code == 200
            assert "-1.0" in [line.split()[-1] for line in httpx.get(s.url + "/metrics").text.splitlines()
                              if line.startswith("jobmatch_queue_lag_events")]
            # Redis comes back empty (no persistence): the store refuses to read it as "no data"
            proc = _redis_server(port, tmp_path)
            r = httpx.get(s.url + "/v1/members/3/jobs", headers=admin, timeout=10)
            assert r.status_code == 503 and str(port) in r.json()["dependency"]
            assert httpx.post(f"{s.url}/v1/events", json=[{**event[0], "event_id": "redis-3"}],
                              headers=admin).status_code == 202  # the stream recovers with the server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_reloads_while_another_process_holds_the_log_for_writing(home, tmp_path):
    """`jobmatch run daily` holds the log read-write for its whole run and publishes as it goes: the server keeps
    answering from the entities it read, and still picks up the models published meanwhile."""
    from jobmatch.events import EventLog

    partial = copy_home(home, tmp_path / "busy", groups=("activity", "qa", "hiring"))
    admin = bearer(make_key(partial, "admin"))
    with Server(partial, env={"JOBMATCH_RELOAD_INTERVAL_S": "0.5"}) as s:
        assert httpx.get(f"{s.url}/v1/members/0/query-suggestions", headers=admin).status_code == 503
        with EventLog(partial / "events.duckdb"):  # held read-write, as a running flow holds it
            copy_store(home / "store.sqlite", f"sqlite:{partial / 'store.sqlite'}", groups=("intent",))
            deadline = time.monotonic() + 60
            while httpx.get(f"{s.url}/v1/members/0/query-suggestions", headers=admin).status_code != 200:
                assert time.monotonic() < deadline, s.output()
                time.sleep(0.3)
            assert httpx.get(f"{s.url}/v1/members/0/jobs", headers=admin).status_code == 200
            assert httpx.get(f"{s.url}/readyz").json()["ready"]


SERVE_SCRIPT = """
import sys
from pathlib import Path
from typing import Optional

import typer

from jobmatch.serve.commands import register

app = typer.Typer()


@app.callback()
def root(home: Optional[Path] = typer.Option(None)) -> None:
    pass


register(app)
if __name__ == "__main__":  # uvicorn's worker processes re-import this module
    app()
"""


def test_jobmatch_serve_with_two_workers_sums_their_metrics(home, tmp_path):
    """`serve --host --port --workers 2` from the home folder named by the global --home."""
    port = free_port()
    script = tmp_path / "cli.py"
    script.write_text(SERVE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBMATCH_", "PROMETHEUS_"))}
    out = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, str(script), "--home", str(home), "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "2"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        for _ in range(40):
            assert httpx.get(f"{url}/healthz").status_code == 200
        text = httpx.get(f"{url}/metrics").text
        served = sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("jobmatch_http_requests_total") and 'route="/healthz"' in line)
        assert served >= 40, text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()
