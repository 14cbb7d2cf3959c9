import json
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobmatch.flows.qa import COEFFICIENTS, QAFlowConfig, rollback, run_qa
from jobmatch.game.model import GameModel
from jobmatch.game.serving import QAScorer, TTLCache
from jobmatch.labels import DAY_US, collect_labels, positive_latency
from jobmatch.qa import QAFeaturizer
from jobmatch.simulate import SimConfig, simulate, write_market
from jobmatch.store import SQLiteStore
from jobmatch.taxonomy import builtin_taxonomy

T0 = int(datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp() * 1e6)
H = 3_600_000_000


def _apps(rows):
    return pa.table({"project_id": [r[0] for r in rows], "job_id": [r[0] for r in rows],
                     "member_id": [r[1] for r in rows],
                     "applied_at": pa.array([T0 + r[2] for r in rows], pa.timestamp("us", tz="UTC"))})


def _fb(rows):
    return pa.table({"feedback_id": [f"f{i}" for i in range(len(rows))], "project_id": [r[0] for r in rows],
                     "member_id": [r[1] for r in rows],
                     "ts": pa.array([T0 + r[3] for r in rows], pa.timestamp("us", tz="UTC")),
                     "channel": ["applicants"] * len(rows), "feedback": [r[2] for r in rows]})


def test_label_rules_as_of_a_date():
    apps = _apps([(1, 10, 0), (1, 11, 1 * H), (1, 12, 2 * H), (1, 13, 3 * H), (2, 20, 0), (2, 21, 0)])
    fb = _fb([(1, 10, "view_profile", 5 * H), (1, 11, "archive", 6 * H), (1, 13, "message", 30 * H),
              (2, 21, "message", 20 * DAY_US)])

    def status(as_of):
        labels = collect_labels(apps, fb, T0 + as_of)
        return dict(zip(labels["member_id"].to_pylist(), labels["status"].to_pylist()))

    early = status(4 * H)
    assert set(early.values()) == {"pending"}  # nothing known yet
    mid = status(7 * H)
    assert (mid[10], mid[11], mid[12], mid[13]) == ("positive", "explicit_negative", "pending", "pending")
    day2 = status(31 * H)
    assert day2[12] == "inferred_negative"  # the hirer engaged with member 13, who applied later
    assert day2[13] == "positive" and day2[20] == "pending"
    late = status(15 * DAY_US)
    assert late[20] == "conclusive_negative" and late[21] == "conclusive_negative"
    assert status(21 * DAY_US)[21] == "positive"  # a late positive overrides the silence
    labels = collect_labels(apps, fb, T0 + 21 * DAY_US)
    assert labels.filter(pa.compute.equal(labels["status"], "pending")).num_rows == 0
    # positives after 5 h, 27 h and 20 days
    assert positive_latency(labels, 3) == pytest.approx([1 / 3, 2 / 3, 2 / 3])


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    cfg = SimConfig(members=1500, days=21, seed=5)
    return write_market(simulate(builtin_taxonomy(), cfg), tmp_path_factory.mktemp("qa"), cfg, "builtin")


def test_daily_flow_publishes_gates_and_rolls_back(market, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite")
    first = run_qa(market, tmp_path, store, datetime(2026, 1, 14))
    assert first["mode"] == "full" and first["published"] and store.current_version(COEFFICIENTS) == 1
    second = run_qa(market, tmp_path, store, datetime(2026, 1, 15))
    assert second["mode"].startswith("incremental") and second["previous_validation_auc"] is not None
    assert second["published"] and store.current_version(COEFFICIENTS) == 2
    # a gate that nothing can pass keeps the published model and says why
    third = run_qa(market, tmp_path, store, datetime(2026, 1, 16), QAFlowConfig(tolerance=-1.0))
    assert not third["published"] and "keeping version 2" in third["reason"]
    assert store.current_version(COEFFICIENTS) == 2
    assert rollback(store) == 1 and store.current_version(COEFFICIENTS) == 1
    with pytest.raises(ValueError, match="as_of"):
        run_qa(market, tmp_path, store, datetime(2026, 1, 16))
    store.close()


def test_scorer_fetches_once_caches_and_matches_the_model(market, tmp_path):
    store = SQLiteStore(tmp_path / "store.sqlite")
    run_qa(market, tmp_path, store, datetime(2026, 1, 14))
    model = GameModel.load(tmp_path / "qa" / "models" / "2026-01-14")
    t = {n: pq.read_table(market / f"{n}.parquet") for n in ("jobs", "members", "projects")}
    f = QAFeaturizer(t["jobs"], t["members"], t["projects"])
    now = [0.0]
    scorer = QAScorer(store, f.features, f.project_of_job, TTLCache(ttl_s=60, clock=lambda: now[0]))
    member, jobs = int(model.coordinates_["member"].entity_ids[0]), list(range(0, 300, 3))
    got = scorer.score_member(member, jobs)
    assert scorer.fetches == 1
    cols = f.features(np.array([f.project_of_job[j] for j in jobs]), np.full(len(jobs), member))
    expected = model.contributions(cols)
    for name in ("global", "member", "job"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)  # float32 in the store
    scorer.score_member(member, jobs[:10])
    assert scorer.fetches == 1  # all cached
    now[0] = 120.0
    scorer.score_member(member, jobs[:10])
    assert scorer.fetches == 2  # expired
    single = [scorer.score_member(member, [j])["probability"][0] for j in jobs[:5]]
    np.testing.assert_allclose(single, got["probability"][:5], rtol=1e-12)
    by_job = scorer.score_job(jobs[0], [member, member])
    assert by_job["probability"][0] == pytest.approx(got["probability"][0])
    no_model = int(np.setdiff1d(t["members"]["member_id"].to_numpy(), model.coordinates_["member"].entity_ids)[0])
    assert scorer.score_member(no_model, jobs[:2])["member"].tolist() == [0.0, 0.0]  # no model -> contributes 0
    with pytest.raises(ValueError, match="job_id"):
        scorer.score_member(member, [10**9])
    store.close()


def test_game_cli_trains_and_scores(tmp_path):
    from jobmatch.game.synthetic import known_mixed_model

    cols, _ = known_mixed_model(rows=8000)
    table = pa.table(cols)
    pq.write_table(table.slice(0, 6000), tmp_path / "train.parquet")
    pq.write_table(table.slice(6000), tmp_path / "val.parquet")
    (tmp_path / "game.toml").write_text(
        '[data]\ntrain = "train.parquet"\nvalidation = "val.parquet"\n[training]\npasses = 2\n'
        '[[coordinates]]\nname = "global"\ntype = "fixed"\nfeatures = ["g1", "g2", "g3"]\n'
        '[[coordinates]]\nname = "per_member"\ntype = "random"\nentity = "member_id"\nfeatures = ["j1", "j2"]\n')
    run = [sys.executable, "-m", "jobmatch.cli"]
    r = subprocess.run(run + ["game", "train", "--config", str(tmp_path / "game.toml"), "--out", str(tmp_path / "m")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert [(s["pass"], s["coordinate"]) for s in metrics["steps"]] == [
        (1, "global"), (1, "per_member"), (2, "global"), (2, "per_member")]
    assert metrics["best_auc"] == max(s["auc"] for s in metrics["steps"])
    r = subprocess.run(run + ["game", "score", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "val.parquet"),
                              "--out", str(tmp_path / "scored.parquet")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    scored = pq.read_table(tmp_path / "scored.parquet")
    assert scored.column_names == ["probability", "score_global", "score_per_member"] and scored.num_rows == 2000
    (tmp_path / "bad.toml").write_text('[data]\ntrain = "train.parquet"\n[[coordinates]]\nname = "x"\n'
                                       'type = "random"\nfeatures = ["g1"]\nl2 = -1\n')
    r = subprocess.run(run + ["game", "train", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "b")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "l2" in r.stderr


def test_evaluate_qa_contract(market, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "qa", "--data", str(market), "--out",
                        str(tmp_path / "e")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(m["auc"]) == ["gbdt", "global", "global+member", "global+member+job", "game"]
    assert all(0.5 < v < 1 for v in m["auc"].values())
    f = m["freshness"]
    assert set(f) == {"days", "auc_frozen", "auc_daily"} and len(f["days"]) == len(f["auc_daily"]) >= 3
    assert f["auc_frozen"][0] == pytest.approx(f["auc_daily"][0])  # the same model on day 1
