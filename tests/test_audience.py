"""Audience expansion (002 §4.3): the sharded index, query-vector construction, anchors, SANNS and the flow."""

from __future__ import annotations

import shutil
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from jobmatch.ann import AnnParams, ExpansionParams, ShardedIndex, StaleIndexError, expand
from jobmatch.ann.anchors import exact_match_anchors
from jobmatch.ann.expansion import merge_audience, query_vectors
from jobmatch.ann.sanns import sanns_entities


def _random(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_sharded_search_equals_exact_search_when_the_graphs_are_searched_fully():
    X = _random(300, 12)
    index = ShardedIndex(AnnParams(shards=3, ef_search=300)).fit(np.arange(300) * 10 + 7, X)
    Q = index.transform(X[:40])
    rows, sims = index.search(Q, 15)
    rows_x, sims_x = index.exact_search(Q, 15)
    np.testing.assert_array_equal(rows, rows_x)
    np.testing.assert_allclose(sims, sims_x, atol=1e-5)
    assert (rows[:, 0] == np.arange(40)).all() and np.allclose(sims[:, 0], 1, atol=1e-5)  # each is its own nearest
    keys, _ = index.query(X[:2], 400)  # more than the index holds: padded
    assert (keys[:, :300] >= 0).all() and (keys[:, 300:] == -1).all()


def test_batch_equals_single_query():
    X = _random(500, 16, 1)
    index = ShardedIndex(AnnParams(shards=4)).fit(np.arange(500), X)
    Q = index.transform(X[:20])
    rows, sims = index.search(Q, 10)
    for i in range(20):
        r, s = index.search(Q[i:i + 1], 10)
        np.testing.assert_array_equal(r[0], rows[i])
        np.testing.assert_allclose(s[0], sims[i])


def test_ann_recall_against_exact_on_clustered_vectors():
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((30, 32))
    X = (centres[rng.integers(0, 30, 4000)] + 0.6 * rng.standard_normal((4000, 32))).astype(np.float32)
    index = ShardedIndex(AnnParams(shards=4, M=16, ef_construction=100, ef_search=100)).fit(np.arange(4000), X)
    Q = index.transform(X[rng.permutation(4000)[:300]])
    ann, _ = index.search(Q, 50)
    exact, _ = index.exact_search(Q, 50)
    recall = np.mean([np.intersect1d(a, e).size / 50 for a, e in zip(ann, exact)])
    assert recall >= 0.95


def test_planted_similar_user_cluster_is_found_by_expansion():
    rng = np.random.default_rng(3)
    background = rng.standard_normal((2000, 64))
    direction = rng.standard_normal(64) * 3
    cluster = direction + 0.3 * rng.standard_normal((40, 64))
    X = np.vstack([background, cluster]).astype(np.float32)
    keys = np.arange(X.shape[0]) + 1000
    members = keys[2000:]
    index = ShardedIndex(AnnParams(shards=4)).fit(keys, X)
    anchors = members[:5]
    for method in ("mean", "prf"):
        (rows, sims), = expand(index, [index.rows(anchors)], ExpansionParams(method=method, k=200, threshold=0.6))
        found = index.keys_[rows]
        assert set(found) == set(members), method  # every planted member, no one else
        audience = merge_audience(anchors, found)
        assert list(audience[:5]) == list(anchors) and set(audience) == set(members)
    # a background member among the seeds: PRF's neighbourhood vote keeps the query inside the cluster
    noisy = np.r_[anchors[:3], keys[:1]]
    (rows, _), = expand(index, [index.rows(noisy)], ExpansionParams(method="prf", k=200, threshold=0.6))
    assert set(members) <= set(index.keys_[rows])
    # no seed with a vector: no expansion
    (rows, _), = expand(index, [index.rows([-5])], ExpansionParams())
    assert rows.size == 0
    Q, has = query_vectors(index, [index.rows(anchors), np.array([], np.int64)])
    assert has.tolist() == [True, False] and np.allclose(np.linalg.norm(Q[0]), 1) and not Q[1].any()


def test_save_load_is_exact_and_a_stale_index_is_refused(tmp_path):
    X = _random(400, 8, 4)
    index = ShardedIndex(AnnParams(shards=3)).fit(np.arange(400), X)
    source = {"group": "intent", "manifest": 3, "vectors": "intent/user_vector", "version": 7}
    index.save(tmp_path / "ann", source)
    loaded = ShardedIndex.load(tmp_path / "ann", source)
    Q = index.transform(X[:30])
    for a, b in zip(index.search(Q, 20), loaded.search(Q, 20)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.keys_, index.keys_)
    with pytest.raises(StaleIndexError, match="rebuild"):
        ShardedIndex.load(tmp_path / "ann", {**source, "manifest": 4})
    with pytest.raises(FileExistsError):
        index.save(tmp_path / "ann", source)
    (tmp_path / "ann" / "ann.json").write_text('{"class": "Slice", "version": 1}')
    with pytest.raises(ValueError, match="ShardedIndex"):
        ShardedIndex.load(tmp_path / "ann")


def test_bad_input_is_named():
    X = _random(10, 4)
    with pytest.raises(ValueError, match="keys: ids must be unique"):
        ShardedIndex().fit(np.zeros(10, np.int64), X)
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="vectors: NaN"):
        ShardedIndex().fit(np.arange(10), X)
    with pytest.raises(ValueError, match="shards"):
        AnnParams(shards=0)
    with pytest.raises(ValueError, match="method"):
        ExpansionParams(method="median")
    index = ShardedIndex().fit(np.arange(10), _random(10, 4))
    with pytest.raises(ValueError, match=r"vectors: expected \(n, 4\)"):
        index.query(_random(2, 5), 3)


def test_exact_match_anchors():
    jobs = pa.table({"occupation": ["RN", "RN", "SW"], "location": ["boston", "boston", "austin"],
                     "remote": [False, True, False], "skills": [["iv", "triage"], ["iv"], ["python"]]})
    members = pa.table({"member_id": [5, 6, 7, 8, 9], "occupation": ["RN", "RN", "RN", "SW", "SW"],
                        "location": ["boston", "boston", "miami", "austin", "boston"],
                        "skills": [["iv"], ["iv", "triage"], ["iv"], [], ["python"]]})
    a = exact_match_anchors(jobs, members)
    assert a[0].tolist() == [6, 5]  # same city only, more matching skills first
    assert a[1].tolist() == [5, 6, 7]  # remote: any city; equal overlap by id
    assert a[2].tolist() == [8]


def test_sanns_attributes_what_similar_seekers_applied_to():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal(8) * 3, rng.standard_normal(8) * 3
    X = np.vstack([a + 0.2 * rng.standard_normal((6, 8)), b + 0.2 * rng.standard_normal((6, 8))]).astype(np.float32)
    keys = np.arange(12)
    index = ShardedIndex(AnnParams(shards=2)).fit(keys, X)
    # members 0-2 (cluster a) applied to nurse jobs, members 6-8 (cluster b) to an engineer job
    member = np.array([0, 1, 2, 6, 7, 8])
    job = np.array([100, 100, 101, 200, 200, 200])
    out = sanns_entities(index, member, job, np.arange(6), np.array([100, 101, 200]),
                         np.array(["registered nurse", "icu nurse", "software engineer"], object),
                         np.array(["RN", "RN", "SW"], object), first_appliers=10, neighbours=5, top=2)
    assert out[4] == (["registered nurse", "icu nurse"], ["RN"])  # never applied; its neighbours did
    assert out[10] == (["software engineer"], ["SW"])


def _publish_vectors(store, members: np.ndarray, dim: int, seed: int, as_of: str):
    from jobmatch.flows.intent import GROUP, SUGGESTIONS, VECTORS

    rng = np.random.default_rng(seed)
    vectors = {str(m): rng.standard_normal(dim).astype(np.float32) for m in members.tolist()}
    suggestions = {str(m): [{"query": "remote registered nurse", "score": 0.9}] for m in members.tolist()}
    return store.publish(GROUP, {VECTORS: vectors, SUGGESTIONS: suggestions}, meta={"as_of": as_of})


def test_audience_flow_builds_refreshes_and_publishes_clause_sets(tiny_log, tmp_path):
    from jobmatch.events import EventLog
    from jobmatch.flows.audience import CLAUSES, GROUP, META, AudienceFlowConfig, run_audience
    from jobmatch.flows.state import FlowContext, NotEnoughData
    from jobmatch.retrieval import Clause, JobIndex
    from jobmatch.store import open_store

    db = tmp_path / "events.duckdb"
    shutil.copy(tiny_log, db)
    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    cfg = AudienceFlowConfig(ann=AnnParams(shards=2), refresh_days=3)
    with EventLog(db) as log, open_store(spec, create=True) as store:
        def ctx(day: date) -> FlowContext:
            return FlowContext.create(log, store, spec, tmp_path / "flows", day)

        with pytest.raises(NotEnoughData, match="intent"):
            run_audience(ctx(date(2026, 1, 11)), cfg)
        members = log.snapshot().members_with_events()
        _publish_vectors(store, members, 16, 0, "2026-01-12")
        first = run_audience(ctx(date(2026, 1, 12)), cfg)
        assert first["status"] == "ok" and first["rebuilt_index"] and first["members"] > 100
        assert first["weights_fit"] == {"reason": "first run"}
        assert run_audience(ctx(date(2026, 1, 12)), cfg)["status"] == "already done"
        meta = store.get_one(META, "current")
        assert set(store.manifest(GROUP).datasets) == {CLAUSES, META}
        member = next(str(m) for m in members.tolist() if store.get_one(CLAUSES, str(m)) is not None)
        kinds = {kind for kind, _ in store.get_one(CLAUSES, member)}
        assert {"profile_occupation", "profile_location"} <= kinds and "predicted_title" in kinds
        index = ShardedIndex.load(meta["ann_index"], meta["source"])
        assert index.size == first["members"]
        jobs = JobIndex.open(meta["job_index"])
        hits, _ = jobs.search([Clause("predicted_title", (("title", "registered nurse"), ("remote", "true")))],
                              meta["weights"])
        assert jobs.size > 0 and hits.size <= jobs.size
        # the next day: the same intent manifest, so the index is kept; the weights learn from the applications
        second = run_audience(ctx(date(2026, 1, 13)), cfg)
        assert not second["rebuilt_index"] and second["weights_fit"].get("applications", 0) > 0
        # a new intent manifest: the old index no longer matches the vectors, and the flow rebuilds it
        _publish_vectors(store, members, 16, 1, "2026-01-14")
        current = store.manifest("intent")
        with pytest.raises(StaleIndexError):
            ShardedIndex.load(meta["ann_index"], {**meta["source"], "manifest": current.version})
        third = run_audience(ctx(date(2026, 1, 14)), cfg)
        assert third["rebuilt_index"]
        assert store.get_one(META, "current")["source"]["manifest"] == current.version


@pytest.mark.slow
def test_evaluate_audience_quick_contract(small_log, small_market, tmp_path):
    from jobmatch.evaluate.audience import evaluate_audience
    from jobmatch.evaluate.truth import Truth
    from jobmatch.events import EventLog

    with EventLog(small_log, read_only=True) as log:
        m = evaluate_audience(log, tmp_path, Truth(small_market[2]), quick=True)
    assert set(m) == {"anchor", "expansion", "ann"}
    assert set(m["anchor"]) == {"applied", "fit"}
    for name, e in m["expansion"].items():
        for point in ("at_threshold", "at_double_audience"):
            # anchors plus more members: reach never falls
            assert e[point]["applied"]["recall"] >= m["anchor"]["applied"]["recall"] - 1e-12, name
            assert e[point]["applied"]["audience"] >= m["anchor"]["applied"]["audience"]
    assert all(s["recall@k"] >= 0.95 for s in m["ann"].values())
    assert "ANN recall vs exact" in (tmp_path / "report.md").read_text() and (tmp_path / "audience.png").exists()
