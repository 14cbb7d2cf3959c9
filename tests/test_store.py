"""One conformance suite, run against every FeatureStore backend."""

import numpy as np
import pytest

from jobmatch.store import FeatureStore, RedisStore, SQLiteStore, StoreError, open_store

_counter = iter(range(10**9))


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, tmp_path) -> FeatureStore:
    if request.param == "sqlite":
        fs = SQLiteStore(tmp_path / "store.sqlite")
    else:
        fs = RedisStore(request.getfixturevalue("redis_url"), prefix=f"t{next(_counter)}")
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


def test_records_round_trip(store):
    record = {"score": 0.25, "terms": ["python", "sql"], "n": 3, "ok": True, "nested": {"a": None}}
    store.push("qa/member", {"7": record, "8": "text", "9": 1.5})
    assert store.get("qa/member", ["7", "8", "9"]) == [record, "text", 1.5]


def test_versions_rollback_and_retention(store):
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
    assert store.versions(ds) == [2, 3]  # only the previous version is kept for rollback
    assert store.get_one(ds, "a", version=1) is None


def test_nearline_update_changes_only_named_keys(store):
    ds = "hiring/weights"
    store.update(ds, {"p1": {"w": 1}})  # no version yet: the update creates one
    assert store.current_version(ds) == 1
    store.push(ds, {"p1": {"w": 2}, "p2": {"w": 5}})
    store.update(ds, {"p1": {"w": 3}})
    assert store.get(ds, ["p1", "p2"]) == [{"w": 3}, {"w": 5}]
    assert store.get(ds, ["p1"], version=1) == [{"w": 1}]


def test_bad_input_is_named_and_stored_data_survives(store):
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
    assert store.current_version(ds) == 1 and store.versions(ds) == [1]
    assert store.get(ds, ["a", "b"])[1] is None and store.get_one(ds, "a").tolist() == [1.0] * 3
    with pytest.raises(StoreError, match="dataset"):
        store.push("Bad Name!", {"a": 1})
    with pytest.raises(StoreError, match="previous"):
        store.rollback("never/pushed")


def test_large_batches_cross_internal_chunks(store):
    data = {f"k{i}": i for i in range(12_000)}
    store.push("big/records", data)
    keys = [f"k{i}" for i in range(0, 12_000, 7)]
    assert store.get("big/records", keys) == [int(k[1:]) for k in keys]
    assert store.datasets() == ["big/records"]


def test_open_store_by_spec(tmp_path):
    with open_store(f"sqlite:{tmp_path / 's.sqlite'}") as fs:
        fs.push("x/y", {"k": 1})
    with open_store(str(tmp_path / "s.sqlite")) as fs:
        assert fs.get_one("x/y", "k") == 1


def test_readers_never_see_a_half_pushed_version(tmp_path):
    """A second connection reads the old version, whole, while a push is half written."""
    path = tmp_path / "s.sqlite"
    writer, reader = SQLiteStore(path), SQLiteStore(path)
    writer.push("d/v", {f"k{i}": 1 for i in range(100)})
    seen = []

    def on_statement(sql: str) -> None:  # runs inside the writer's open transaction
        if sql.startswith("INSERT OR REPLACE INTO kv") and len(seen) < 1:
            seen.append(reader.get("d/v", ["k0", "k99"]) + [reader.current_version("d/v")])

    writer._db.set_trace_callback(on_statement)
    writer.push("d/v", {f"k{i}": 2 for i in range(100)})
    assert seen == [[1, 1, 1]]
    assert reader.get("d/v", ["k0", "k99"]) == [2, 2]
    writer.close(), reader.close()
