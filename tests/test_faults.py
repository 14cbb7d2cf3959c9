"""Fault injection with real processes: races, killed writers, a Redis server killed and restarted empty.

Waits are bounded (a hung worker fails the test instead of hanging it); nothing asserts on elapsed time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence

import numpy as np
import pytest
from test_store import BACKENDS, SLOW_MACHINE, Backend, new_backend, spawn

from jobmatch.store import RedisStore, StoreError

WAIT_S = 120  # upper bound on any wait for a worker: only a hang reaches it


def wait_for(event, proc: mp.Process) -> None:
    """Until `event` is set; fails at once if the worker died first (or after WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while not event.wait(0.1):
        assert proc.is_alive(), f"worker exited with {proc.exitcode} before signalling"
        assert time.monotonic() < deadline, "worker did not signal"


def finish(*procs: mp.Process) -> None:
    for p in procs:
        p.join(WAIT_S)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"


class RedisServer:
    """A redis-server of the test's own (no persistence) that the test can kill and restart on the same port."""

    def __init__(self, workdir) -> None:
        self.binary, self.workdir = shutil.which("redis-server"), workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + WAIT_S
        with redis.Redis(port=self.port) as client:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    assert self.proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.02)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT_S)


@pytest.fixture
def redis_server(tmp_path) -> RedisServer:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it with apt-get)")
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


# -- feature store ---------------------------------------------------------------------------------------------------

DS = "activity_embedding/mean"


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Backend:
    return new_backend(request, tmp_path)


def _big_push(backend: Backend, midway, go, results) -> None:
    """Push 5 write chunks; after 2 of them, signal and wait, as a big push is still writing when a later one runs."""
    with backend.open() as fs:
        def items():
            for i in range(5 * fs.write_chunk):
                if i == 2 * fs.write_chunk:
                    midway.set()
                    go.wait(WAIT_S)
                yield f"k{i}", "big"

        try:
            results.put(("big", fs.push(DS, items())))
        except StoreError as e:
            results.put(("big", str(e)))


def _small_push(backend: Backend, n: int, results) -> None:
    with backend.open() as fs:
        results.put(("small", fs.push(DS, {f"k{i}": "small" for i in range(n)})))


def test_a_big_push_and_a_later_small_push_race(backend):
    """The probe: a big push, then (while it is still writing) a small one. The later push must end up current
    and complete; the earlier one is refused, not half-published; the version before both stays intact."""
    with backend.open() as fs:
        fs.push(DS, {f"k{i}": "first" for i in range(100)})
        n_big, n_small = 5 * fs.write_chunk, 1000
    ctx = mp.get_context("spawn")
    midway, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    big = spawn(_big_push, backend, midway, go, results)
    wait_for(midway, big)
    small = spawn(_small_push, backend, n_small, results)
    finish(small)
    go.set()
    finish(big)
    outcome = dict(results.get(timeout=WAIT_S) for _ in range(2))
    assert outcome["small"] == 3  # versions follow the order the pushes began in: big 2, small 3
    assert "version 2 was not published: version 3, begun later, was published meanwhile" in outcome["big"]
    with backend.open(create=False) as fs:
        keys = [f"k{i}" for i in range(n_big)]
        assert fs.current_version(DS) == 3
        assert fs.get(DS, keys) == ["small"] * n_small + [None] * (n_big - n_small)  # complete, nothing of big
        assert fs.versions(DS) == [1, 3] and fs.get(DS, keys[:100], version=1) == ["first"] * 100
    assert backend.stored_keys(DS, 2) == 0  # the refused version was dropped by its writer


class PausingKeys(Sequence):
    """Keys for one batch get: the first time the store asks for one past `first` (its second internal chunk),
    a writer publishes a new version before the read goes on."""

    def __init__(self, keys: list[str], first: int, publish_now, published) -> None:
        self.keys, self.first, self.publish_now, self.published, self.fired = keys, first, publish_now, published, False

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i):
        start = (i.start or 0) if isinstance(i, slice) else i
        if start >= self.first and not self.fired:
            self.fired = True
            self.publish_now.put("publish")
            self.published.get(timeout=WAIT_S)
        return self.keys[i]


N_READ = 12_000  # three Redis read chunks


def _batch_reader(backend: Backend, rounds: int, publish_now, published, results) -> None:
    keys = [f"k{i}" for i in range(N_READ)]
    with backend.open(create=False) as fs:
        for _ in range(rounds):
            values = fs.get(DS, PausingKeys(keys, 5000, publish_now, published))
            results.put(sorted(set(map(str, values))))


def _pusher(backend: Backend, rounds: int, publish_now, published) -> None:
    with backend.open() as fs:
        for r in range(1, rounds + 1):
            publish_now.get(timeout=WAIT_S)
            fs.push(DS, {f"k{i}": f"v{r}" for i in range(N_READ)})
            published.put(r)


def test_a_large_batch_get_returns_one_version_while_pushes_land(backend):
    """A reader process's large batch gets, each interrupted by a writer process's push: every read returns the
    values of exactly one version (the values name their version), all of them."""
    with backend.open() as fs:
        fs.push(DS, {f"k{i}": "v0" for i in range(N_READ)})
    ctx = mp.get_context("spawn")
    publish_now, published, results = ctx.Queue(), ctx.Queue(), ctx.Queue()
    rounds = 3
    writer = spawn(_pusher, backend, rounds, publish_now, published)
    reader = spawn(_batch_reader, backend, rounds, publish_now, published, results)
    reads = [results.get(timeout=WAIT_S) for _ in range(rounds)]
    finish(reader, writer)
    assert all(len(seen) == 1 and seen[0].startswith("v") for seen in reads), reads
    with backend.open(create=False) as fs:
        assert fs.current_version(DS) == rounds + 1


def _killed_publisher(backend: Backend, midway) -> None:
    """Publish the QA group; midway through its second dataset, signal and hang until SIGKILLed."""
    with backend.open() as fs:
        def meta():
            for i in range(2 * fs.write_chunk):
                if i == fs.write_chunk:
                    midway.set()
                    time.sleep(WAIT_S)
                yield f"k{i}", "new"

        fs.publish("qa", {"qa/coefficients": {"global": np.full(3, 2.0)}, "qa/meta": meta()})


def test_a_publish_killed_midway_leaves_the_previous_model_and_its_orphan_is_cleaned(backend):
    with backend.open() as fs:
        before = fs.publish("qa", {"qa/coefficients": {"global": np.ones(3)}, "qa/meta": {"k0": "old"}})
    ctx = mp.get_context("spawn")
    midway = ctx.Event()
    writer = spawn(_killed_publisher, backend, midway)
    wait_for(midway, writer)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join(WAIT_S)
    with backend.open(create=False) as fs:
        assert fs.current_version("qa/coefficients") == fs.current_version("qa/meta") == 1
        assert fs.manifest("qa") == before and fs.manifests("qa") == [before]
        assert fs.get_one("qa/coefficients", "global").tolist() == [1.0] * 3 and fs.get_one("qa/meta", "k0") == "old"
    orphans = {"qa/coefficients": 2, "qa/meta": 2}
    assert all(backend.stored_keys(ds, v) > 0 for ds, v in orphans.items())
    with backend.open() as fs:  # within the stage timeout the orphan might be a live writer's: it stays
        assert fs.publish("qa", {"qa/coefficients": {"global": np.full(3, 3.0)}, "qa/meta": {"k0": "third"}}
                          ).datasets == {"qa/coefficients": 3, "qa/meta": 3}
    assert all(backend.stored_keys(ds, v) > 0 for ds, v in orphans.items())
    with backend.open(stage_timeout_s=0) as fs:  # past it, the next publish removes the orphan
        fs.publish("qa", {"qa/coefficients": {"global": np.full(3, 4.0)}, "qa/meta": {"k0": "fourth"}})
        assert fs.get_one("qa/meta", "k0") == "fourth" and 2 not in fs.versions("qa/meta")
    assert all(backend.stored_keys(ds, v) == 0 for ds, v in orphans.items())


def _traffic_reader(url: str, stop, results) -> None:
    """Batch gets in a loop; reports each new kind of outcome: complete values, a StoreError, or anything else."""
    keys = [f"k{i}" for i in range(200)]
    seen: set[str] = set()
    with RedisStore(url, create=False, **SLOW_MACHINE) as fs:
        while not stop.is_set():
            try:
                values = fs.get(DS, keys)
                outcome = "complete" if values == ["x"] * len(keys) else f"WRONG VALUES {values[:3]}"
            except StoreError as e:
                outcome = f"StoreError: {e}"
            kind = outcome.split("(")[0]
            if kind not in seen:
                seen.add(kind)
                results.put(outcome)
            stop.wait(0.005)


@pytest.mark.redis
def test_redis_killed_and_restarted_empty_mid_traffic(redis_server):
    """A reader process never gets empty or partial values: StoreError naming the server while it is down, then
    StoreError 'emptied' once it is back without its data."""
    url = redis_server.url
    with RedisStore(url, **SLOW_MACHINE) as fs:
        fs.push(DS, {f"k{i}": "x" for i in range(200)})
    ctx = mp.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    reader = spawn(_traffic_reader, url, stop, results)
    assert results.get(timeout=WAIT_S) == "complete"
    redis_server.kill()
    down = until(results, f"StoreError: {url}: connection refused", reader)
    redis_server.start()
    back = until(results, f"StoreError: {url}: the store was emptied", reader)
    stop.set()
    finish(reader)
    assert all(o.startswith(f"StoreError: {url}: ") for o in down + back), down + back  # never values


def until(results, prefix: str, proc: mp.Process) -> list[str]:
    """Outcomes reported up to and including the first that starts with `prefix`."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while not seen or not seen[-1].startswith(prefix):
        try:
            seen.append(results.get(timeout=0.1))
        except queue.Empty:
            assert proc.is_alive(), f"reader exited with {proc.exitcode} after {seen}"
            assert time.monotonic() < deadline, f"no {prefix!r} after {seen}"
    return seen


@pytest.mark.redis
def test_redis_errors_are_store_errors_naming_the_server(redis_server):
    with RedisStore(redis_server.url) as fs:
        fs.push(DS, {"a": 1})
        os.kill(redis_server.proc.pid, signal.SIGSTOP)  # a stalled server: the read times out
        try:
            with pytest.raises(StoreError, match=f"{redis_server.url}: timed out"):
                fs.get(DS, ["a"])
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert fs.get(DS, ["a"]) == [1]
        redis_server.kill()
        for op in (lambda: fs.get(DS, ["a"]), lambda: fs.push(DS, {"a": 2}), fs.generation, fs.datasets):
            with pytest.raises(StoreError, match=f"{redis_server.url}: connection refused"):
                op()


def qa_model(store) -> tuple:
    """A tiny published QA model: coefficients of members 1 and 2 and of job 10; featurize gives constant columns."""
    store.publish("qa", {
        "qa/coefficients": {"global": np.array([0.1, 0.2], np.float32), "m:1": np.array([0.3, 0.4], np.float32),
                            "m:2": np.array([0.5, 0.6], np.float32), "j:10": np.array([0.7, 0.8], np.float32)},
        "qa/meta": {"meta": {"global_features": ["g"], "member_features": ["jf"], "job_features": ["mf"]}}})

    def featurize(projects, members):
        n = len(members)
        return {"g": np.full(n, 1.0), "jf": np.full(n, 2.0), "mf": np.full(n, 3.0)}

    return featurize, {10: 100, 11: 101}


@pytest.mark.redis
def test_qa_scorer_and_counts_refuse_an_emptied_redis(redis_server):
    """After a restart without persistence: the scorer serves what it cached (expired or not) and refuses the
    rest — the probe saw 0.646 instead of 0.75 from coefficients read as zero; the counts refuse to read 0."""
    from jobmatch.game.serving import QAScorer, TTLCache
    from jobmatch.hiring.state import RedisProjectCounts

    store = RedisStore(redis_server.url, **SLOW_MACHINE)
    featurize, project_of_job = qa_model(store)
    now = [0.0]
    scorer = QAScorer(store, featurize, project_of_job, TTLCache(ttl_s=60, clock=lambda: now[0]), group="qa")
    before = scorer.score_member(1, [10, 11])
    expected_logit = (0.1 + 0.2 * 1.0) + (0.3 + 0.4 * 2.0) + (0.7 + 0.8 * 3.0)  # job 11 has no model: 0
    assert before["probability"][0] == pytest.approx(1 / (1 + np.exp(-expected_logit)))
    counts = RedisProjectCounts(redis_server.url, prefix="jm", **SLOW_MACHINE)
    assert counts.add_once(7, "f1", [1, 2]) and counts.lookup(7, np.array([1, 2])).tolist() == [1, 1]

    redis_server.kill()
    redis_server.start()
    np.testing.assert_array_equal(scorer.score_member(1, [10, 11])["probability"], before["probability"])  # cached
    now[0] = 120.0  # expired: the store is asked, fails, and the expired values serve
    np.testing.assert_array_equal(scorer.score_member(1, [10, 11])["probability"], before["probability"])
    assert scorer.stale_serves == 1 and scorer.manifest_.version == 1
    with pytest.raises(StoreError, match="1 coefficient.*not cached.*emptied"):
        scorer.score_member(2, [10])  # m:2 was never fetched: refused, not scored as zero
    for op in (lambda: counts.lookup(7, np.array([1, 2])), lambda: counts.add_once(7, "f2", [1])):
        with pytest.raises(StoreError, match="emptied"):
            op()
    counts.close()
    store.close()


def test_qa_scorer_follows_a_new_manifest_and_reads_only_its_versions(tmp_path):
    """Coefficients and feature names come from one manifest; a newer manifest is picked up after the TTL."""
    from jobmatch.game.serving import QAScorer, TTLCache
    from jobmatch.store import SQLiteStore

    store = SQLiteStore(tmp_path / "store.sqlite")
    featurize, project_of_job = qa_model(store)
    now = [0.0]
    scorer = QAScorer(store, featurize, project_of_job, TTLCache(ttl_s=60, clock=lambda: now[0]))
    first = scorer.score_member(1, [10])["probability"][0]
    store.publish("qa", {"qa/coefficients": {"global": np.array([5.0, 0.0], np.float32)},
                         "qa/meta": {"meta": {"global_features": ["g"], "member_features": ["jf"],
                                              "job_features": ["mf"]}}})
    assert scorer.score_member(1, [10])["probability"][0] == first  # still pinned within the TTL
    now[0] = 61.0
    assert scorer.score_member(1, [10])["probability"][0] == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert scorer.manifest_.version == 2
    store.publish("other", {"other/x": {"k": 1}})
    with pytest.raises(LookupError, match="manifest 1 has no other/coefficients or other/meta"):
        QAScorer(store, featurize, project_of_job, group="other")
    with pytest.raises(LookupError, match="no published"):
        QAScorer(store, featurize, project_of_job, group="absent")
    store.close()
