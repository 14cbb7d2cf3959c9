"""Load test of the HTTP API over loopback: p50 / p99 latency and error rate per route, at 8 and 32 concurrent
clients, against 1 and 2 uvicorn workers (an async httpx loop in this process; the server is `uvicorn --factory
jobmatch.serve.app:app_from_env`, as `jobmatch serve` runs it).

Routes measured: candidates:rank with 100 candidates (a random project, 100 random members), member jobs with k=20
(random members: most have an activity embedding, the rest take the profile fallback), and batch ingest (POST
/v1/events, 1,000 new events per request, reported as events/s). Each (workers, clients, route) cell runs
`--seconds` (default 3.5 s: 15 cells, about 60 s of load in all) and stops by itself. The baseline, measured in
the same run, is one client against one worker: a request's own service time, without queueing; each cell's p50
is printed as a ratio to it.

The served home is `--home` (a `jobmatch run main` output folder) or, by default, the small simulated home the
serving tests use (tests/serve_fixtures.py: 600 members, 21 days, hiring + QA + activity flows), built in a
temporary folder first (about 40 s, not counted).

    nice python benchmarks/serve_bench.py [--home runs/main] [--seconds 4] [--stream redis://…]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

from jobmatch.events import EventLog
from jobmatch.serve.keys import KeyStore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the serving tests' home builder and server runner

from serve_fixtures import build_served_home, free_port  # noqa: E402


def start_server(home: Path, workers: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "jobmatch.serve.app:app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                             "--log-level", "warning", "--no-access-log"],
                            env={**os.environ, "JOBMATCH_HOME": str(home), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready within 180 s")


def entities(home: Path) -> tuple[list[int], list[int]]:
    with EventLog(home / "events.duckdb", read_only=True) as log:
        snap = log.snapshot()
        return (snap.entities("members")["member_id"].to_pylist(), snap.entities("projects")["project_id"].to_pylist())


async def run_cell(url: str, headers: dict, route: str, clients: int, seconds: float, members: list[int],
                   projects: list[int], batch: int, tag: str) -> dict:
    latencies: list[float] = []
    errors, events = 0, 0
    counter = [0]
    stop = time.monotonic() + seconds
    rng = random.Random(len(tag))

    def request() -> tuple[str, str, object]:
        if route == "rank":
            return ("POST", f"/v1/projects/{rng.choice(projects)}/candidates:rank",
                    {"candidates": rng.sample(members, 100), "channel": "recommended_matches"})
        if route == "jobs":
            return "GET", f"/v1/members/{rng.choice(members)}/jobs?k=20", None
        counter[0] += 1
        now = datetime.now(timezone.utc).isoformat()
        return ("POST", "/v1/events", [{"event_id": f"bench-{tag}-{counter[0]}-{i}", "member_id": rng.choice(members),
                                        "ts": now, "action": "SEARCH", "channel": "search", "query": "nurse"}
                                       for i in range(batch)])

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30,
                                 limits=httpx.Limits(max_connections=clients)) as client:
        async def worker() -> None:
            nonlocal errors, events
            while time.monotonic() < stop:
                method, path, body = request()
                start = time.perf_counter()
                try:
                    r = await client.request(method, path, content=None if body is None else json.dumps(body),
                                             headers={"content-type": "application/json"})
                    ok = r.status_code < 300
                    if ok and route == "ingest":
                        events += r.json()["accepted"]
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.monotonic() - began
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "error_rate": errors / max(len(lat), 1), "rps": len(lat) / elapsed,
            "events_per_s": events / elapsed if route == "ingest" else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a served home (default: build the small test home)")
    ap.add_argument("--seconds", type=float, default=3.5, help="load per (workers, clients, route) cell")
    ap.add_argument("--batch", type=int, default=1000, help="events per ingest request")
    ap.add_argument("--stream", default="", help="redis://… for Redis Streams (default: the embedded inbox)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="serve-bench-")
    home = args.home
    if home is None:
        print("building the small served home ...", file=sys.stderr)
        home = build_served_home(Path(tmp.name) / "home")
    members, projects = entities(home)
    keys = KeyStore(home / "keys.sqlite")
    token, _ = keys.create("admin", label="serve_bench")
    headers = {"Authorization": f"Bearer {token}"}
    env = {"JOBMATCH_STREAM": args.stream} if args.stream else {}
    rows = []
    try:
        for workers in (1, 2):
            proc, url = start_server(home, workers, env)
            try:
                for clients in ((1, 8, 32) if workers == 1 else (8, 32)):
                    for route in ("rank", "jobs", "ingest"):
                        # warm-up: the first requests of a worker fill its caches
                        asyncio.run(run_cell(url, headers, route, clients, 0.5, members, projects, args.batch,
                                             f"w{workers}c{clients}{route}warm"))
                        r = asyncio.run(run_cell(url, headers, route, clients, args.seconds, members, projects,
                                                 args.batch, f"w{workers}c{clients}{route}"))
                        rows.append({"workers": workers, "clients": clients, "route": route, **r})
                        print(json.dumps(rows[-1]), file=sys.stderr)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        keys.revoke(_key_id(token))
        keys.close()
        tmp.cleanup()
    base = {r["route"]: r["p50_ms"] for r in rows if r["workers"] == 1 and r["clients"] == 1}
    print("| workers | clients | route | requests | p50 ms | p50 / 1 client | p99 ms | errors | throughput |")
    print("|---|---|---|---|---|---|---|---|---|")
    names = {"rank": "POST candidates:rank (100)", "jobs": "GET members/{id}/jobs (k=20)",
             "ingest": f"POST events ({args.batch}/request)"}
    for r in rows:
        rate = f"{r['events_per_s']:,.0f} events/s" if r["route"] == "ingest" else f"{r['rps']:,.0f} req/s"
        print(f"| {r['workers']} | {r['clients']} | {names[r['route']]} | {r['requests']:,} | {r['p50_ms']:.1f} | "
              f"{r['p50_ms'] / base[r['route']]:.1f}x | {r['p99_ms']:.1f} | {r['error_rate']:.2%} | {rate} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


def _key_id(token: str) -> str:
    return token.split("_")[1]


if __name__ == "__main__":
    main()
