"""Prometheus metrics: request latency per route (the route's template, so ids do not explode the label set),
requests by status, and the nearline queue's lag read at scrape time.

With several uvicorn workers each process keeps its own counters; when PROMETHEUS_MULTIPROC_DIR is set (`jobmatch
serve --workers N` sets it) the processes write them to that folder and /metrics sums them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # a registry per app: several apps in one process (tests) do not collide
        self.registry = CollectorRegistry()
        self.latency = Histogram("jobmatch_http_request_duration_seconds", "Request latency by route",
                                 ["method", "route"], buckets=BUCKETS, registry=self.registry)
        self.requests = Counter("jobmatch_http_requests", "Requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.lag = Gauge("jobmatch_queue_lag_events", "Events published to the nearline queue and not yet applied "
                         "by the worker (-1: the queue is unreachable)", registry=self.registry,
                         multiprocess_mode="mostrecent")
        self.reloads = Gauge("jobmatch_model_reloads", "Model and entity reloads since the process started",
                             registry=self.registry, multiprocess_mode="sum")

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.latency.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
