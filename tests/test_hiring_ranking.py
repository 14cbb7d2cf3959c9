import json
import subprocess
import sys

import numpy as np
import pytest

from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.service import CandidateRankingService
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.taxonomy import builtin_taxonomy


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    cfg = SimConfig(members=1500, days=21, seed=11)
    data = write_market(simulate(builtin_taxonomy(), cfg), tmp_path_factory.mktemp("hire"), cfg, "builtin")
    out = data / "eval"
    result = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "hiring", "--data", str(data), "--out",
                             str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return data, out


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
    data, out = evaluated
    service = CandidateRankingService.from_data(data, out / "ranker")
    project = 3
    candidates = list(range(40))
    ranked = service.rank_candidates(project, candidates)
    assert sorted(c for c, _ in ranked) == candidates
    single = {c: service.rank_candidates(project, [c])[0][1] for c in candidates}
    assert all(np.isclose(score, single[c], rtol=1e-6) for c, score in ranked)
    # the hirer messages five candidates who share the last candidate's skills -> its features move now
    before = service.features(project, [candidates[-1]], "recommended_matches")
    for c in candidates[:5]:
        service.prefs.observe_feedback(project, c, "recommended_matches", "message")
    after = service.features(project, [candidates[-1]], "recommended_matches")
    assert not np.array_equal(before, after)
    with pytest.raises(ValueError, match="project_id"):
        service.rank_candidates(10**9, candidates)
    with pytest.raises(ValueError, match="channel"):
        service.rank_candidates(project, candidates, channel="email")
