"""Search ranking (002 §4.2): the deep-and-wide listwise ranker, its frozen user tower, features and flow."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from jobmatch.metrics import ndcg_per_group
from jobmatch.rank import ListwiseRanker, RankerParams, SearchFeaturizer

SMALL = RankerParams(deep=(16,), tower=(16, 8), buckets=64, epochs=8, batch_lists=64, seed=0)


def _planted(n_lists: int, seed: int) -> tuple:
    """Each user prefers one of 6 job categories, hidden from everything but their user vector."""
    rng = np.random.default_rng(seed)
    size = 10
    groups = np.repeat(np.arange(n_lists), size)
    preference = rng.integers(0, 6, n_lists)
    user = (np.eye(6)[preference] + 0.3 * rng.standard_normal((n_lists, 6)))[groups].astype(np.float32)
    category = rng.integers(0, 6, groups.size)
    dense = rng.standard_normal((groups.size, 3)).astype(np.float32)
    utility = 2.0 * (category == preference[groups]) + 0.5 * dense[:, 0] + 0.5 * rng.standard_normal(groups.size)
    return dense, category[:, None], groups, (utility > 1.5).astype(float), user


@pytest.fixture(scope="module")
def planted():
    return _planted(1500, 0), _planted(300, 1), _planted(500, 2)


def _ndcg(model: ListwiseRanker, data: tuple, with_user: bool) -> float:
    dense, cats, groups, rel, user = data
    return float(ndcg_per_group(groups, rel, model.predict(dense, cats, user if with_user else None), 10)[1].mean())


def test_an_informative_tower_beats_no_tower(planted):
    train, val, test = planted
    scores = {}
    for with_user in (False, True):
        u = (lambda d: d[4]) if with_user else (lambda d: None)
        model = ListwiseRanker(SMALL).fit(*train[:4], u(train), validation=(*val[:4], u(val)))
        scores[with_user] = _ndcg(model, test, with_user)
    assert scores[True] > scores[False] + 0.15  # the preference is only in the vector
    # an uninformative vector (noise) buys nothing
    noise = np.random.default_rng(9).standard_normal(train[4].shape).astype(np.float32)
    model = ListwiseRanker(SMALL).fit(*train[:4], noise)
    assert _ndcg(model, (*test[:4], np.random.default_rng(8).standard_normal(test[4].shape).astype(np.float32)),
                 True) < scores[True] - 0.15


def test_save_load_exact_batch_equals_single_and_deterministic(planted, tmp_path):
    train, val, test = planted
    model = ListwiseRanker(SMALL, epochs=2).fit(*train[:4], train[4], validation=(*val[:4], val[4]))
    scores = model.predict(*test[:2], test[4])
    again = ListwiseRanker(SMALL, epochs=2).fit(*train[:4], train[4], validation=(*val[:4], val[4]))
    np.testing.assert_array_equal(again.predict(*test[:2], test[4]), scores)
    loaded = ListwiseRanker.load(model.save(tmp_path / "ranker"))
    np.testing.assert_array_equal(loaded.predict(*test[:2], test[4]), scores)
    assert loaded.best_epoch_ == model.best_epoch_ and loaded.history_ == model.history_
    for i in (0, 7, 123):
        single = model.predict(test[0][i:i + 1], test[1][i:i + 1], test[4][i:i + 1])
        np.testing.assert_allclose(single, scores[i:i + 1], rtol=1e-5, atol=1e-6)


def test_checkpoint_is_the_best_validation_epoch(planted):
    train, val, _ = planted
    model = ListwiseRanker(SMALL, epochs=6, patience=6).fit(*train[:4], train[4], validation=(*val[:4], val[4]))
    history = [h["validation_ndcg@25"] for h in model.history_]
    assert model.best_epoch_ == int(np.argmax(history)) + 1
    best = ndcg_per_group(val[2], val[3], model.predict(*val[:2], val[4]), 25)[1].mean()
    assert best == pytest.approx(max(history))


def test_bad_input_is_named(planted):
    train, *_ = planted
    model = ListwiseRanker(SMALL, epochs=1).fit(*train[:4], train[4])
    with pytest.raises(ValueError, match="user: this model was fit with user vectors"):
        model.predict(*train[:2])
    with pytest.raises(ValueError, match="user: expected 6-d"):
        model.predict(*train[:2], train[4][:, :3])
    with pytest.raises(ValueError, match=r"cats: expected hashed ids in \[0, 64\)"):
        ListwiseRanker(SMALL).fit(train[0], train[1] + 100, train[2], train[3])
    with pytest.raises(ValueError, match="relevance: no list has an engaged result"):
        ListwiseRanker(SMALL).fit(*train[:3], np.zeros_like(train[3]))
    with pytest.raises(ValueError, match="tower"):
        RankerParams(tower=(0,))


def _us(day: int, hour: int = 12) -> int:
    return int(datetime(2026, 1, day, hour, tzinfo=timezone.utc).timestamp() * 1e6)


def test_featurizer_known_answers_and_only_the_past_counts():
    ts = pa.timestamp("us", tz="UTC")
    jobs = pa.table({"job_id": [1, 2], "company_id": [0, 0], "title": ["Senior Registered Nurse", "Line Cook"],
                     "occupation": ["RN", "CK"], "skills": [["triage", "iv therapy"], ["grill"]],
                     "location": ["boston", "austin"], "remote": [True, False],
                     "seniority": pa.array([4, 2], pa.int8()),
                     "posted_at": pa.array([_us(1), _us(2)], ts), "expires_at": pa.array([_us(20), _us(20)], ts)})
    members = pa.table({"member_id": [7], "title": ["registered nurse"], "occupation": ["RN"], "skills": [["triage"]],
                        "seniority": pa.array([3], pa.int8()), "location": ["boston"], "open_to_work": [True]})
    events = pa.table({"member_id": [8, 8, 9], "ts": pa.array([_us(3), _us(5), _us(4)], ts),
                       "action": ["APPLY", "APPLY", "VIEW"], "job_id": [1, 1, 1]})
    f = SearchFeaturizer(jobs, members, events, buckets=1 << 10)
    dense, cats = f.transform([7, 7, 7], [1, 2, 1], ["remote registered nurse", "iv therapy", "registered nurse"],
                              [_us(4, 18), _us(4, 18), _us(6)], has_vector=[1, 1, 0])
    from jobmatch.rank.features import DENSE_FEATURES

    col = {n: dense[:, i] for i, n in enumerate(DENSE_FEATURES)}
    assert col["query_in_title"].tolist() == [1, 0, 1]
    assert col["query_title_overlap"][0] == pytest.approx(2 / 3)  # {registered, nurse} of {senior, registered, nurse}
    assert col["query_is_job_skill"].tolist() == [0, 0, 0] and col["query_remote"].tolist() == [1, 0, 0]
    assert col["query_remote_x_job_remote"].tolist() == [1, 0, 0]
    assert col["job_applies_before"].tolist() == pytest.approx([np.log1p(1), 0, np.log1p(2)])  # day-5 apply later
    assert col["job_views_before"].tolist() == pytest.approx([np.log1p(1), 0, np.log1p(1)])
    assert col["job_age_days"][0] == pytest.approx(3.25)
    assert col["has_user_vector"].tolist() == [1, 1, 0]
    assert cats.shape == (3, 7) and (cats >= 0).all() and (cats < 1 << 10).all()
    assert cats[0, 0] == cats[2, 0] and cats[0, 0] != cats[1, 0]  # the same occupation hashes the same
    assert f.transform([7], [2], ["iv therapy"], [_us(4)])[0][0, DENSE_FEATURES.index("query_is_job_skill")] == 0
    assert f.transform([7], [1], ["IV Therapy"], [_us(4)])[0][0, DENSE_FEATURES.index("query_is_job_skill")] == 1


def test_search_ranking_flow_trains_and_publishes(tiny_log, tmp_path):
    from jobmatch.events import EventLog
    from jobmatch.flows.intent import GROUP as INTENT, VECTORS
    from jobmatch.flows.search_ranking import MODEL, SearchRankingFlowConfig, run_search_ranking, user_inputs
    from jobmatch.flows.state import FlowContext, NotEnoughData
    from jobmatch.store import open_store

    db = tmp_path / "events.duckdb"
    shutil.copy(tiny_log, db)
    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    cfg = SearchRankingFlowConfig(ranker=RankerParams(deep=(16,), tower=(16,), epochs=2, buckets=1 << 12))
    with EventLog(db) as log, open_store(spec, create=True) as store:
        def ctx(day: date) -> FlowContext:
            return FlowContext.create(log, store, spec, tmp_path / "flows", day)

        with pytest.raises(NotEnoughData, match="intent"):
            run_search_ranking(ctx(date(2026, 1, 12)), cfg)
        rng = np.random.default_rng(0)
        members = log.snapshot().members_with_events()
        store.publish(INTENT, {VECTORS: {str(m): rng.standard_normal(8).astype(np.float32) for m in members[::2]}})
        result = run_search_ranking(ctx(date(2026, 1, 12)), cfg)
        assert result["status"] == "ok" and result["lists"] > 50
        record = store.get_one(MODEL, "current")
        model = ListwiseRanker.load(record["path"])
        assert model.user_dim_ == 8 and record["source"]["manifest"] == store.manifest(INTENT).version
        user, has = user_inputs(store, members[:4], record["source"]["version"])
        assert has.tolist() == [1, 0, 1, 0] and not user[1].any()


@pytest.mark.slow
def test_evaluate_search_ranking_quick_contract(small_log, small_market, tmp_path):
    from jobmatch.evaluate.search_ranking import CEILING, VARIANTS, evaluate_search_ranking
    from jobmatch.evaluate.truth import Truth
    from jobmatch.events import EventLog

    with EventLog(small_log, read_only=True) as log:
        m = evaluate_search_ranking(log, tmp_path, Truth(small_market[2]), quick=True)
    for key in ("ndcg@10", "ndcg@25", "auc"):
        assert list(m[key]) == [*VARIANTS, CEILING] and all(0.5 < v <= 1 for v in m[key].values())
    assert set(m["vs_deep_wide"]["deep-wide+bert_ft"]) == {"all", "drifted", "not_drifted"}
    paired = m["vs_deep_wide"]["deep-wide+bert_ft"]["all"]["ndcg@25"]
    assert paired["se"] > 0 and paired["diff"] == pytest.approx(m["ndcg@25"]["deep-wide+bert_ft"] -
                                                                m["ndcg@25"]["deep-wide"])
    assert "paired" in (tmp_path / "report.md").read_text()
