"""schemathesis against the running server: generated requests (valid and invalid) for every operation of the
OpenAPI document, with an admin key, never get a 5xx. Bounded (a few dozen examples per operation) so the default
run stays fast; raise FUZZ_EXAMPLES for a longer hunt."""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from serve_fixtures import Server, bearer, make_key, served_home_at

from jobmatch.config import Settings
from jobmatch.serve.app import create_app

# the document the server serves, built in-process (creating the app opens nothing; only its startup does)
schema = schemathesis.openapi.from_dict(create_app(Settings(home="unused")).openapi())
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = served_home_at(tmp_path_factory.getbasetemp())
    with Server(home) as s:
        yield s, bearer(make_key(home, "admin"))
        served = httpx.get(f"{s.url}/metrics").text
        assert 'status="5' not in served and "unhandled error" not in s.output(), s.output()
        print(sum(float(line.split()[-1]) for line in served.splitlines()
                  if line.startswith("jobmatch_http_requests_total")), "requests fuzzed")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case, server):
    s, headers = server
    response = case.call(base_url=s.url, headers=headers, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text)
    if response.status_code in (401, 403, 404, 413, 422, 503):
        assert "Traceback" not in response.text
