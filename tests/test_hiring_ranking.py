import json
import subprocess
import sys

import numpy as np
import pytest

import pyarrow as pa
import pyarrow.compute as pc

from jobmatch.events import EventLog
from jobmatch.hiring.dataset import build_dataset, candidate_impressions
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.service import CandidateRankingService
from jobmatch.hiring.state import MemoryProjectCounts


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, small_market):
    _, data, truth = small_market
    out = tmp_path_factory.mktemp("hire") / "eval"
    result = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "hiring", "--data", str(data), "--truth",
                             str(truth), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out / "events.duckdb", out


def test_metrics_json_has_the_contract_shape(evaluated):
    _, out = evaluated
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"ndcg@1", "ndcg@5", "ndcg@10", "learning_curve", "top10_features"}
    for k in ("ndcg@1", "ndcg@5", "ndcg@10"):
        assert set(m[k]) == {"without_online", "with_online"} and all(0 < v <= 1 for v in m[k].values())
    assert m["learning_curve"]["events"] == [0, 5, 10, 25, 50]
    assert len(m["learning_curve"]["ndcg@1"]) == 5 and len(m["top10_features"]) == 10
    details = json.loads((out / "details.json").read_text())
    # a learned ranker beats a random order on the same test requests
    assert m["ndcg@1"]["without_online"] > details["random_ndcg"]["1"] + 0.05
    assert details["oracle_ndcg"] is not None  # the truth was handed over explicitly
    assert (out / "hiring.png").stat().st_size > 10_000 and "Learning curve" in (out / "report.md").read_text()


def test_ranker_save_load_is_exact(evaluated, tmp_path):
    _, out = evaluated
    model = CandidateRanker.load(out / "ranker")
    X = np.random.default_rng(0).normal(size=(50, len(model.feature_names_)))
    model.save(tmp_path / "again")
    np.testing.assert_array_equal(CandidateRanker.load(tmp_path / "again").predict(X), model.predict(X))
    (tmp_path / "again" / "meta.json").write_text(json.dumps({"class": "Other", "version": 1}))
    with pytest.raises(ValueError, match="CandidateRanker"):
        CandidateRanker.load(tmp_path / "again")


def test_service_batch_equals_single_and_reacts_to_feedback(evaluated):
    db, out = evaluated
    with EventLog(db, read_only=True) as log:
        service = CandidateRankingService.from_snapshot(log.snapshot(), out / "ranker")
    project = 3
    candidates = list(range(40))
    ranked = service.rank_candidates(project, candidates)
    assert sorted(c for c, _ in ranked) == candidates
    single = {c: service.rank_candidates(project, [c])[0][1] for c in candidates}
    assert all(np.isclose(score, single[c], rtol=1e-6) for c, score in ranked)
    # the hirer is shown ten candidates and messages five -> the terms the last candidate shares with them move its
    # features now (messaging every candidate shown would rate all terms at the project's own rate: weight 0)
    before = service.features(project, [candidates[-1]], "recommended_matches")
    for c in candidates[:10]:
        service.prefs.observe_impression(project, c, "recommended_matches")
    for c in candidates[:5]:
        service.prefs.observe_feedback(project, c, "recommended_matches", "message")
    after = service.features(project, [candidates[-1]], "recommended_matches")
    assert not np.array_equal(before, after)
    with pytest.raises(ValueError, match="project_id"):
        service.rank_candidates(10**9, candidates)
    with pytest.raises(ValueError, match="channel"):
        service.rank_candidates(project, candidates, channel="email")


def test_serving_computes_the_training_features(evaluated):
    """The service's features for a request, at the request's time and with the counts as they stood then, are the
    training row's features: activity signals are computed as of the request, not frozen at start-up."""
    db, out = evaluated
    with EventLog(db, read_only=True) as log:
        snap = log.snapshot()
        ds = build_dataset(snap.events(), snap.feedback(), snap.entities("jobs"), snap.entities("members"),
                           snap.entities("projects"), snap.hirer_impressions())
        service = CandidateRankingService.from_snapshot(snap, out / "ranker", MemoryProjectCounts())
        imp = candidate_impressions(snap.events(), snap.entities("projects"), snap.hirer_impressions())
        feedback = snap.feedback()
    rows = ds.rows
    ts = rows["ts"].cast(pa.int64()).to_numpy()
    requests = rows["request_id"].to_numpy(zero_copy_only=False)
    channel = rows["channel"].to_numpy(zero_copy_only=False)
    # a sourcing request late in the period, after its project had feedback
    late = np.flatnonzero((channel == "recommended_matches") & (rows["prior_feedback"].to_numpy() > 3))[-1]
    sel = np.flatnonzero(requests == requests[late])
    at = int(ts[late])
    before = lambda t: t.filter(pc.less(t["ts"].cast(pa.int64()), at))  # noqa: E731
    shown, rated = before(imp), before(feedback)
    service.prefs.observe_impression_batch(zip(*(shown[c].to_pylist() for c in ("project_id", "member_id",
                                                                                 "channel"))))
    service.prefs.observe_feedback_batch(zip(*(rated[c].to_pylist() for c in ("project_id", "member_id", "channel",
                                                                              "feedback"))))
    project = int(rows["project_id"][late].as_py())
    members = rows["member_id"].to_numpy()[sel].tolist()
    served = service.features(project, members, "recommended_matches", at_us=at)
    trained = np.hstack([ds.standard, ds.online])[sel]
    np.testing.assert_allclose(served, trained, rtol=1e-9, atol=1e-9)
    # a day later the same candidates' activity signals have moved on: nothing is frozen
    assert not np.array_equal(service.features(project, members, "recommended_matches", at_us=at + 30 * 86_400_000_000),
                              served)
