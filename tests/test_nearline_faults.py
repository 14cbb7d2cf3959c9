"""Faults with real processes: the worker SIGKILLed mid-batch and restarted, and redis-server stopped under a
running worker and started again. Afterwards every event must have been applied exactly once in effect (the log,
the hirer counts, the member embeddings: see `check_applied_once`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from jobmatch.events.log import PAUSE_BEFORE_COMMIT_ENV
from jobmatch.nearline.queue import QueueUnavailable, open_queue
from jobmatch.nearline.worker import PAUSE_BEFORE_ACK_ENV, load_progress
from test_nearline import check_applied_once, make_home, publish_all, spawn_worker
import test_nearline

pytestmark = pytest.mark.redis
nearline_base = test_nearline.nearline_base  # the fixture home, shared with the queue and worker tests
WAIT_S = 300  # generous: the machine is shared; nothing here measures speed


class RedisServer:
    """A redis-server on a fixed loopback port and folder, so that a restart finds its append-only file."""

    def __init__(self, workdir: Path):
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            if os.environ.get("CI"):
                pytest.fail("redis-server is not installed (.ci/run installs it with apt-get)")
            pytest.skip("redis-server is not installed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # appendfsync always: every acknowledged write is on disk when the server stops
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: redis-server flushes its append-only file and exits
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture
def persistent_redis(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def wait_for(condition, what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def log_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("kill_at", ["before_ack", "mid_log_append"])
def test_sigkill_mid_batch_then_restart_applies_every_event_once(tmp_path, nearline_base, persistent_redis,
                                                                 kill_at):
    """The worker is killed while its second batch is applied: after everything of it (before the ack), or
    inside the event log's append transaction. The restarted worker gets the batch again."""
    base, queued = nearline_base
    settings = make_home(base, tmp_path / "home", persistent_redis.url)
    settings = settings.model_copy(update={"stream": persistent_redis.url})
    with open_queue(settings.home, settings.stream) as q:
        total = publish_all(q, queued)
    marker, env = {"before_ack": ("paused before ack", PAUSE_BEFORE_ACK_ENV),
                   "mid_log_append": ("paused before commit", PAUSE_BEFORE_COMMIT_ENV)}[kill_at]
    first_log = tmp_path / "first.log"
    proc = spawn_worker(settings, first_log, "--batch", "1500", env={env: "1"})
    try:
        wait_for(lambda: (load_progress(settings.home) or {}).get("batches", 0) >= 1, "a first acknowledged batch")
        seen = log_text(first_log).count(marker)
        # the next pause belongs to a later batch: the worker sits inside it when the kill comes
        wait_for(lambda: log_text(first_log).count(marker) > seen, "a later batch to pause")
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with open_queue(settings.home, settings.stream) as q:
        assert 0 < q.lag() < total

    second_log = tmp_path / "second.log"
    restarted = spawn_worker(settings, second_log, "--once", "--batch", "1500")
    assert restarted.wait(timeout=WAIT_S) == 0, log_text(second_log)
    assert "Traceback" not in log_text(second_log)
    with open_queue(settings.home, settings.stream) as q:
        assert q.lag() == 0
    check_applied_once(settings, base / "events.duckdb", queued)


def test_redis_stopped_under_a_running_worker_then_back(tmp_path, nearline_base, persistent_redis):
    base, queued = nearline_base
    settings = make_home(base, tmp_path / "home")  # the store stays embedded; the stream is on Redis
    settings = settings.model_copy(update={"stream": persistent_redis.url})
    kinds = list(queued)
    with open_queue(settings.home, settings.stream) as q:
        early = sum(q.publish(k, queued[k]).accepted for k in kinds[:2])
    worker_log = tmp_path / "worker.log"
    proc = spawn_worker(settings, worker_log, "--batch", "500", "--block-ms", "200")
    try:
        wait_for(lambda: (load_progress(settings.home) or {}).get("batches", 0) >= 1, "a first batch")
        persistent_redis.stop()
        wait_for(lambda: f"redis at 127.0.0.1:{persistent_redis.port}" in log_text(worker_log), "the outage line")
        with pytest.raises(QueueUnavailable, match=f"redis at 127.0.0.1:{persistent_redis.port}"):
            with open_queue(settings.home, settings.stream) as q:
                q.publish(kinds[2], queued[kinds[2]])
        time.sleep(1.0)  # the worker keeps retrying meanwhile
        assert proc.poll() is None
        persistent_redis.start()
        with open_queue(settings.home, settings.stream) as q:
            late = sum(q.publish(k, queued[k]).accepted for k in kinds[2:])
            wait_for(lambda: q.lag() == 0 and (load_progress(settings.home) or {}).get("events") == early + late,
                     "the worker to drain the stream")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait(timeout=30)
    text = log_text(worker_log)
    assert "Traceback" not in text
    assert text.count("waiting: redis at") == 1 and "resumed" in text
    check_applied_once(settings, base / "events.duckdb", queued)
