"""Explorer page timings on a served home (default runs/main, the default simulation), with the /v1 route each page
is built on as the same-run baseline; optionally screenshots of the pages in the OS's headless Chromium.

    python benchmarks/explorer_bench.py [--home runs/main] [--repeat 20] [--screenshots docs/screenshots]

Prints per page the server time (the page's Server-Timing header) p50/p95 and the ratio of its p50 to the p50 of
its main /v1 route over the same loopback connection (a warm-up request per page is not counted).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from serve_fixtures import Server, make_key  # noqa: E402


def server_ms(response: httpx.Response) -> float:
    match = re.search(r"dur=([0-9.]+)", response.headers.get("server-timing", ""))
    return float(match.group(1)) if match else float("nan")


def timed(client: httpx.Client, path: str, repeat: int, **kwargs) -> tuple[list[float], list[float]]:
    client.request(kwargs.pop("method", "GET"), path, **kwargs)  # warm-up
    server, wall = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        r = client.request("GET", path, **kwargs)
        wall.append(1000 * (time.perf_counter() - start))
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        server.append(server_ms(r))
    return server, wall


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, default=Path("runs/main"))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--member", type=int, default=42)
    ap.add_argument("--project", type=int, default=7)
    ap.add_argument("--screenshots", type=Path)
    args = ap.parse_args()
    key = make_key(args.home, "admin")
    with Server(args.home) as server, httpx.Client(base_url=server.url, timeout=120,
                                                  cookies={"jobmatch_key": key}) as client:
        auth = {"Authorization": f"Bearer {key}"}
        deadline = time.monotonic() + 300  # the marketplace statistics are computed in the background
        while "being computed" in client.get("/ui/marketplace").text and time.monotonic() < deadline:
            time.sleep(2)
        m, p = args.member, args.project
        pages = [("start", "/ui/", None), ("member", f"/ui/members/{m}", f"/v1/members/{m}/jobs"),
                 ("project", f"/ui/projects/{p}", f"/v1/projects/{p}/candidates"),
                 ("models", "/ui/models", "/v1/models"), ("marketplace", "/ui/marketplace", "/v1/marketplace")]
        print(f"home {args.home}, {args.repeat} requests each, 1 client, 1 worker")
        print(f"{'page':<12} {'server p50 ms':>14} {'server p95 ms':>14} {'wall p50 ms':>12} {'route p50 ms':>13} "
              f"{'page/route':>10}")
        for name, path, route in pages:
            server_t, wall = timed(client, path, args.repeat)
            route_p50 = statistics.median(timed(client, route, args.repeat, headers=auth)[1]) if route else None
            ratio = f"{statistics.median(wall) / route_p50:.2f}" if route_p50 else "-"
            print(f"{name:<12} {statistics.median(server_t):>14.1f} {pct(server_t, 95):>14.1f} "
                  f"{statistics.median(wall):>12.1f} {route_p50 or float('nan'):>13.1f} {ratio:>10}")
        if args.screenshots:
            from playwright.sync_api import sync_playwright

            args.screenshots.mkdir(parents=True, exist_ok=True)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=os.environ.get("JOBMATCH_CHROMIUM", "/usr/bin/chromium"),
                                             args=["--no-sandbox", "--disable-gpu", "--disable-quic",
                                                   "--disable-background-networking", "--disable-component-update",
                                                   "--disable-sync", "--no-first-run"])
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.add_cookies([{"name": "jobmatch_key", "value": key, "url": server.url}])
                page = context.new_page()
                for name, path, _ in pages[1:]:
                    page.goto(server.url + path)
                    page.screenshot(path=str(args.screenshots / f"{name}.png"), full_page=True)
                browser.close()
            print(f"screenshots in {args.screenshots}")


if __name__ == "__main__":
    main()
