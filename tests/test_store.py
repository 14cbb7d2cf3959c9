"""One conformance suite, run against every FeatureStore backend (worker processes included)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import uuid
from dataclasses import dataclass

import numpy as np
import pytest

from jobmatch.store import FeatureStore, RedisStore, SQLiteStore, StoreError, open_store
from jobmatch.store.redis import check_redis_url

SLOW_MACHINE = {"read_timeout_s": 30.0, "write_timeout_s": 60.0}  # Redis timeouts for tests not about timeouts


@dataclass(frozen=True)
class Backend:
    """How to open one backing store; picklable, so worker processes open the same one."""

    kind: str
    target: str
    prefix: str = ""

    def open(self, **options) -> FeatureStore:
        """Generous timeouts unless given: no test may depend on the speed of a busy machine."""
        if self.kind == "sqlite":
            return SQLiteStore(self.target, **{"timeout_s": 60.0, **options})
        return RedisStore(self.target, prefix=self.prefix, **{**SLOW_MACHINE, **options})

    def empty(self) -> None:
        """What a restart without persistence does to the backing store."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                    db.execute(f"DROP TABLE {table}")
        else:
            import redis

            with redis.Redis.from_url(self.target) as r:
                r.delete(*r.keys(f"{{{self.prefix}}}:*"))

    def stored_keys(self, dataset: str, version: int) -> int:
        """How many keys of a version are physically stored, visible or not."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.target) as db:
                return db.execute("SELECT COUNT(*) FROM kv WHERE name = ? AND version = ?",
                                  [dataset, version]).fetchone()[0]
        import redis

        with redis.Redis.from_url(self.target) as r:
            return sum(r.hlen(k) for k in r.keys(f"{{{self.prefix}}}:d:*:{dataset}:{version}"))  # any generation


def spawn(target, *args) -> mp.Process:
    proc = mp.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]


def new_backend(request, tmp_path) -> Backend:
    """A fresh, empty backing store of the kind `request.param` names (for fixtures parametrized by BACKENDS)."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "store.sqlite"))
    return Backend("redis", request.getfixturevalue("redis_url"), f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path) -> Backend:
    return new_backend(request, tmp_path)


@pytest.fixture
def store(backend) -> FeatureStore:
    fs = backend.open()
    yield fs
    fs.close()


def vectors(n: int, dim: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"m{i}": rng.normal(size=dim).astype(np.float32) for i in range(n)}


def test_push_then_batch_get_is_exact(store):
    data = vectors(50)
    assert store.push("activity_embedding/mean", data) == 1
    keys = list(data)[::-1] + ["absent"]
    got = store.get("activity_embedding/mean", keys)
    assert got[-1] is None
    for k, v in zip(keys[:-1], got[:-1]):
        assert v.dtype == np.float32 and v.tobytes() == data[k].tobytes()
    matrix, found = store.get_matrix("activity_embedding/mean", keys, 128)
    assert found.tolist() == [True] * 50 + [False] and not matrix[-1].any()
    assert np.array_equal(matrix[0], data[keys[0]])
    with pytest.raises(StoreError, match="64-d"):
        store.get_matrix("activity_embedding/mean", keys[:3], 64)
    store.update("activity_embedding/mean", {"rec": {"not": "a vector"}})
    with pytest.raises(StoreError, match="'rec'"):
        store.get_matrix("activity_embedding/mean", ["m1", "rec"], 128)
    assert store.get("never/published", ["a"]) == [None] and store.get("activity_embedding/mean", []) == []


def test_records_round_trip(store):
    record = {"score": 0.25, "terms": ["python", "sql"], "n": 3, "ok": True, "nested": {"a": None}}
    store.push("qa/member", {"7": record, "8": "text", "9": 1.5})
    assert store.get("qa/member", ["7", "8", "9"]) == [record, "text", 1.5]


def test_versions_rollback_and_retention(backend):
    store = backend.open(grace_s=0)  # no grace period: only the current and the previous version are kept
    ds = "activity_embedding/decay"
    v1 = store.push(ds, {"a": np.ones(4)})
    v2 = store.push(ds, {"a": np.full(4, 2.0), "b": np.zeros(4)})
    assert (v1, v2, store.current_version(ds), store.versions(ds)) == (1, 2, 2, [1, 2])
    assert store.get_one(ds, "a")[0] == 2.0 and store.get_one(ds, "a", version=1)[0] == 1.0
    assert store.get_one(ds, "b", version=1) is None
    assert store.rollback(ds) == 1
    assert store.current_version(ds) == 1 and store.get_one(ds, "a")[0] == 1.0
    assert store.rollback(ds) == 2  # rolling back again restores the newer version
    store.push(ds, {"a": np.full(4, 3.0)})
    assert store.versions(ds) == [2, 3] and backend.stored_keys(ds, 1) == 0
    with pytest.raises(StoreError, match="no version 1"):  # not an empty answer
        store.get_one(ds, "a", version=1)
    store.close()


def test_the_grace_period_keeps_versions_a_reader_may_still_be_reading(backend, store):
    ds = "d/x"
    for i in (1, 2, 3):
        store.push(ds, {"a": i})
    assert store.versions(ds) == [1, 2, 3] and store.get_one(ds, "a", version=1) == 1
    with backend.open(grace_s=0) as impatient:
        impatient.push(ds, {"a": 4})
    assert store.versions(ds) == [3, 4] and backend.stored_keys(ds, 1) == backend.stored_keys(ds, 2) == 0


def test_nearline_update_changes_only_named_keys(store):
    ds = "hiring/weights"
    store.update(ds, {"p1": {"w": 1}})  # no version yet: the update creates one
    assert store.current_version(ds) == 1 and store.datasets() == [ds]
    store.push(ds, {"p1": {"w": 2}, "p2": {"w": 5}, "p3": {"w": 7}})
    store.update(ds, {"p1": {"w": 3}}, delete=["p3", "absent"])
    assert store.get(ds, ["p1", "p2", "p3"]) == [{"w": 3}, {"w": 5}, None]
    assert store.get(ds, ["p1"], version=1) == [{"w": 1}]


def test_bad_input_is_named_and_stored_data_survives(backend, store):
    ds = "activity_embedding/mean"
    store.push(ds, {"a": np.ones(3)})
    bad_items = [
        ({"b": np.ones(3), "c": np.array([1.0, np.nan])}, "'c'.*NaN"),
        ({"b": np.ones((2, 2))}, "'b'.*1-D"),
        ({"b": object()}, "'b'"),
        ({"": np.ones(3)}, "key"),
    ]
    for items, pattern in bad_items:
        with pytest.raises(StoreError, match=pattern):
            store.push(ds, items)
        with pytest.raises(StoreError, match=pattern):
            store.update(ds, items)
        with pytest.raises(StoreError, match=pattern):
            store.publish("g", {"g/ok": {"k": 1}, ds: items})
    assert store.current_version(ds) == 1 and store.versions(ds) == [1]
    assert store.get(ds, ["a", "b"])[1] is None and store.get_one(ds, "a").tolist() == [1.0] * 3
    # aborted publishes leave nothing behind (each push and publish above staged a version of `ds`)
    assert all(backend.stored_keys(ds, v) == 0 for v in range(2, 10))
    assert all(backend.stored_keys("g/ok", v) == 0 for v in range(1, 5))
    assert store.datasets() == [ds] and store.groups() == [] and store.manifest("g") is None
    with pytest.raises(StoreError, match="dataset"):
        store.push("Bad Name!", {"a": 1})
    with pytest.raises(StoreError, match="group"):
        store.publish("Bad Group", {"g/a": {"a": 1}})
    with pytest.raises(StoreError, match="meta"):
        store.publish("g", {"g/a": {"a": 1}}, meta={"when": object()})
    with pytest.raises(StoreError, match="previous"):
        store.rollback("never/pushed")


def test_large_batches_cross_internal_chunks(store):
    data = {f"k{i}": i for i in range(41_000)}  # more than two write chunks of either backend
    store.push("big/records", data)
    keys = [f"k{i}" for i in range(0, 41_000, 7)]  # more than one read chunk
    assert store.get("big/records", keys) == [int(k[1:]) for k in keys]
    assert store.datasets() == ["big/records"]


def test_a_staged_version_is_invisible_until_its_commit(backend, store):
    store.push("d/v", {f"k{i}": 1 for i in range(100)})
    reader = backend.open(create=False)
    seen = []

    def items():  # the writer pulls these while it writes; midway, look through another connection
        for i in range(2 * store.write_chunk):
            if i == store.write_chunk:
                seen.append((reader.current_version("d/v"), reader.versions("d/v"), reader.get("d/v", ["k0", "k99"]),
                             reader.datasets(), reader.groups(), reader.get("d/new", ["x"])))
            yield f"k{i}", 2

    manifest = store.publish("g", {"d/v": items(), "d/new": {"x": 1}})
    assert seen == [(1, [1], [1, 1], ["d/v"], [], [None])]
    assert manifest.datasets == {"d/v": 2, "d/new": 1}
    assert reader.get("d/v", ["k0", "k99"]) == [2, 2] and reader.get("d/new", ["x"]) == [1]
    reader.close()


def test_publish_makes_datasets_current_together_and_rollback_group_restores(store):
    def model(day: str) -> dict:
        return {"qa/coefficients": {"global": np.full(3, float(day[-1]))}, "qa/meta": {"meta": {"as_of": day}}}

    m1 = store.publish("qa", model("d1"), meta={"as_of": "d1"})
    assert dict(m1) == {"group": "qa", "version": 1, "datasets": m1.datasets, "meta": m1.meta,
                        "published_at": m1.published_at} and m1["version"] == m1.version == 1
    assert (m1.group, m1.version, m1.datasets, m1.meta) == ("qa", 1, {"qa/coefficients": 1, "qa/meta": 1},
                                                             {"as_of": "d1"})
    m2 = store.publish("qa", model("d2"))
    assert (m2.version, m2.datasets, m2.meta) == (2, {"qa/coefficients": 2, "qa/meta": 2}, {})
    assert store.manifest("qa") == m2 and store.manifests("qa") == [m1, m2] and store.manifest("qa", 1) == m1
    assert store.manifest("qa", 7) is None and store.manifest("nothing") is None and store.groups() == ["qa"]
    back = store.rollback_group("qa")
    assert (back.version, back.datasets, back.meta) == (3, m1.datasets, {"as_of": "d1", "restores": 1})
    assert store.manifest("qa") == back and store.get_one("qa/meta", "meta") == {"as_of": "d1"}
    assert store.current_version("qa/coefficients") == 1 and store.get_one("qa/coefficients", "global")[0] == 1.0
    again = store.rollback_group("qa")  # rolling back the rollback
    assert (again.version, again.datasets) == (4, m2.datasets) and store.get_one("qa/meta", "meta") == {"as_of": "d2"}
    store.publish("solo", {"solo/a": {"k": 1}})
    for group in ("solo", "nothing"):
        with pytest.raises(StoreError, match="nothing to roll back"):
            store.rollback_group(group)


def test_a_publish_begun_earlier_cannot_replace_a_newer_one(backend, store):
    other = backend.open()
    newer = []

    def older_items(publish_newer):  # midway through the older publish, another writer publishes
        for i in range(store.write_chunk + 10):
            if i == store.write_chunk:
                newer.append(publish_newer())
            yield f"k{i}", "older"

    with pytest.raises(StoreError, match="manifest 1 was not published: manifest 2, begun later, was published"):
        store.publish("g", {"g/a": older_items(lambda: other.publish("g", {"g/a": {"k0": "newer"}}))})
    assert store.manifests("g") == newer and store.get_one("g/a", "k0") == "newer"
    assert store.versions("g/a") == [2] and backend.stored_keys("g/a", 1) == 0  # the refused version is gone
    with pytest.raises(StoreError, match="version 1 was not published: version 2, begun later"):
        store.push("p/x", older_items(lambda: other.push("p/x", {"k0": "newer"})))
    assert store.current_version("p/x") == 2 and store.get_one("p/x", "k0") == "newer"
    assert backend.stored_keys("p/x", 1) == 0
    other.close()


def test_a_writer_stalled_past_the_stage_timeout_is_refused(backend, store):
    sweeper = backend.open(stage_timeout_s=0)  # its commits remove every staged version not written to just now

    def stalled():
        for i in range(2 * store.write_chunk):
            if i == store.write_chunk:  # the first chunk is written; the writer stalls, another publishes
                sweeper.push("d/x", {"k": "other"})
            yield f"k{i}", i

    with pytest.raises(StoreError, match="staged version 1 was removed.*stage timeout"):
        store.push("d/x", stalled())
    assert store.current_version("d/x") == 2 and store.get_one("d/x", "k") == "other"
    assert backend.stored_keys("d/x", 1) == 0
    sweeper.close()


def test_versions_referenced_by_kept_manifests_are_kept(backend):
    fs = backend.open(grace_s=0, keep_manifests=3)
    for i in range(1, 6):
        fs.publish("g", {"g/a": {"k": i}}, meta={"i": i})
    assert [m.version for m in fs.manifests("g")] == [3, 4, 5]
    assert fs.versions("g/a") == [3, 4, 5] and backend.stored_keys("g/a", 2) == 0
    assert [fs.get_one("g/a", "k", version=v) for v in (3, 4, 5)] == [3, 4, 5]
    fs.push("g/a", {"k": 6})  # a plain push of a dataset of the group: the manifests still hold 3..5
    assert fs.versions("g/a") == [3, 4, 5, 6] and fs.manifest("g").datasets == {"g/a": 5}
    fs.close()


def test_an_emptied_store_is_an_error_not_empty_data(backend, store):
    store.publish("g", {"g/a": {"k": 1}})
    generation = store.generation()
    with backend.open(create=False) as same:
        assert isinstance(generation, str) and len(generation) >= 16 and same.generation() == generation
    backend.empty()
    assert store.generation() is None
    reads_and_writes = [lambda: store.get("g/a", ["k"]), lambda: store.current_version("g/a"),
                        lambda: store.versions("g/a"), lambda: store.manifest("g"), lambda: store.datasets(),
                        lambda: store.push("g/a", {"k": 2}), lambda: store.update("g/a", {"k": 2}),
                        lambda: store.rollback("g/a"), lambda: store.publish("g", {"g/a": {"k": 2}})]
    for op in reads_and_writes:
        with pytest.raises(StoreError, match="emptied"):
            op()
    with pytest.raises(StoreError, match="no feature store"), backend.open(create=False) as reader:
        reader.datasets()
    with backend.open() as writer:  # a writer re-creates the store: a new generation, which `store` refuses too
        writer.push("g/a", {"k": 3})
        assert writer.generation() not in (None, generation)
    with pytest.raises(StoreError, match="emptied"):
        store.get("g/a", ["k"])


def test_open_store_creates_only_when_asked(tmp_path):
    path = tmp_path / "s.sqlite"
    with pytest.raises(StoreError, match=f"no feature store at sqlite:{path}"):
        open_store(f"sqlite:{path}")
    with pytest.raises(StoreError, match="no feature store"):
        open_store(f"sqlite:{tmp_path / 'no' / 'dir' / 's.sqlite'}")
    assert not path.exists() and not (tmp_path / "no").exists()
    with open_store(f"sqlite:{path}", create=True) as fs:
        fs.push("x/y", {"k": 1})
    with open_store(f"sqlite:{path}") as fs:
        assert fs.get_one("x/y", "k") == 1
    other = tmp_path / "other.sqlite"  # an SQLite file, but no feature store: read commands leave it as it is
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE project_counts (x)")
    with pytest.raises(StoreError, match="no feature store"):
        open_store(f"sqlite:{other}")
    with sqlite3.connect(other) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("project_counts",)]
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    with pytest.raises(StoreError, match=f"sqlite:{junk}"):
        open_store(f"sqlite:{junk}")


@pytest.mark.parametrize("spec, pattern", [
    ("runs/store.sqlite", "write sqlite:runs/store.sqlite"),
    ("redis:/localhost", "expected redis://HOST:PORT/DB"),
    ("redis://:6379/0", "expected redis://HOST:PORT/DB"),
    ("redis://localhost:port/0", "bad port"),
    ("redis://localhost:6379/zero", "expected redis://HOST:PORT/DB"),
    ("unix://", "unix:///PATH"),
    ("lmdb:/data/store", "unknown scheme 'lmdb'"),
    ("sqlite:", "no path"),
    ("", "store spec"),
])
def test_open_store_names_a_bad_spec(spec, pattern):
    with pytest.raises(StoreError, match=pattern):
        open_store(spec)


def test_redis_urls_in_errors_hide_the_password():
    assert check_redis_url("redis://user:s3cret@cache:6380/2") == "redis://user:***@cache:6380/2"
    assert check_redis_url("unix:///run/redis.sock") == "unix:///run/redis.sock"


@pytest.mark.redis
def test_open_store_does_not_create_a_redis_store(redis_url):
    import redis

    prefix = f"t{uuid.uuid4().hex[:12]}"
    absent = pytest.raises(StoreError, match=f"no feature store at {redis_url}")
    with open_store(redis_url, prefix=prefix) as fs, absent:
        fs.datasets()
    with redis.Redis.from_url(redis_url) as r:
        assert r.keys(f"{{{prefix}}}:*") == []
    with open_store(redis_url, create=True, prefix=prefix) as fs:
        fs.push("x/y", {"k": 1})
    with open_store(redis_url, prefix=prefix) as fs:
        assert fs.get_one("x/y", "k") == 1


# -- concurrent writers and readers, in separate processes -----------------------------------------------------------

N_KEYS = 6_000  # more than one Redis read chunk


def _publisher(backend: Backend, name: str, rounds: int, results) -> None:
    with backend.open() as fs:
        for r in range(rounds):
            tag = f"{name}{r}"
            rows = {f"k{i}": tag for i in range(N_KEYS)}
            try:
                results.put(("published", tag, fs.publish("g", {"g/a": rows, "g/b": rows}, meta={"tag": tag}).version))
            except StoreError as e:
                results.put(("refused", tag, str(e)))


def _manifest_reader(backend: Backend, stop, results) -> None:
    keys = [f"k{i}" for i in range(N_KEYS)]
    reads, torn = 0, []
    with backend.open(create=False) as fs:
        while not stop.is_set() or reads == 0:
            m = fs.manifest("g")
            if m is None:
                stop.wait(0.01)
                continue
            values = fs.get("g/a", keys, m.datasets["g/a"]) + fs.get("g/b", keys, m.datasets["g/b"])
            if set(values) != {m.meta["tag"]}:
                torn.append((m.version, sorted(set(map(str, values)))[:4]))
            reads += 1
    results.put(("reads", reads, torn))


def test_concurrent_publishers_and_readers_in_processes(backend):
    with backend.open() as fs:
        fs.groups()  # creates the store, so that readers can open it without create
    ctx = mp.get_context("spawn")
    results, stop = ctx.Queue(), ctx.Event()
    reader = spawn(_manifest_reader, backend, stop, results)
    writers = [spawn(_publisher, backend, name, 3, results) for name in "xy"]
    outcomes = [results.get(timeout=120) for _ in range(6)]
    stop.set()
    kind, n_reads, torn = results.get(timeout=120)
    for p in (reader, *writers):
        p.join(timeout=60)
        assert p.exitcode == 0
    assert kind == "reads" and n_reads > 0 and torn == []  # every read: one publish's values, complete
    published = {tag: version for kind, tag, version in outcomes if kind == "published"}
    refused = [msg for kind, _, msg in outcomes if kind == "refused"]
    assert published and all("was published meanwhile" in msg for msg in refused)
    with backend.open(create=False) as fs:
        newest = fs.manifest("g")
        assert newest.version == max(published.values()) and newest.meta["tag"] in published
        keys = [f"k{i}" for i in range(N_KEYS)]
        assert set(fs.get("g/a", keys) + fs.get("g/b", keys)) == {newest.meta["tag"]}
        versions = [m.version for m in fs.manifests("g")]
        assert versions == sorted(versions) and set(versions) <= set(published.values())
