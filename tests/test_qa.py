import json
import subprocess
import sys
from datetime import date, datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobmatch.events import EventLog
from jobmatch.flows.qa import COEFFICIENTS, META, QAFlowConfig, rollback, run_qa, training_rows
from jobmatch.flows.state import FlowContext, NotEnoughData
from jobmatch.game.model import GameModel
from jobmatch.game.serving import QAScorer, TTLCache
from jobmatch.labels import DAY_US, collect_labels, positive_latency
from jobmatch.qa import QAFeaturizer
from jobmatch.store import open_store

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


@pytest.fixture
def flow(small_log, tmp_path):
    """A writable copy of the small market's log, a store, and a context for any day."""
    from conftest import writable_copy

    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    with EventLog(writable_copy(small_log, tmp_path)) as log, open_store(spec, create=True) as store:
        yield log, store, lambda day: FlowContext.create(log, store, spec, tmp_path, day)


def test_daily_flow_publishes_gates_and_rolls_back(flow):
    log, store, ctx = flow
    first = run_qa(ctx(date(2026, 1, 15)))
    assert first["mode"] == "full" and first["published"] and store.manifest("qa").version == 1
    assert store.manifest("qa").datasets == {COEFFICIENTS: 1, META: 1}
    second = run_qa(ctx(date(2026, 1, 16)), QAFlowConfig(tolerance=1.0))  # a gate anything passes
    assert second["mode"].startswith("incremental") and second["previous_validation_auc"] is not None
    assert second["published"] and store.current_version(COEFFICIENTS) == 2
    # a gate that nothing can pass keeps the published model and says why
    third = run_qa(ctx(date(2026, 1, 17)), QAFlowConfig(tolerance=-1.0))
    assert not third["published"] and "keeping version 2" in third["reason"]
    assert store.current_version(COEFFICIENTS) == 2
    # rollback puts coefficients and their meta back together
    rollback(store)
    assert store.current_version(COEFFICIENTS) == 1 and store.current_version(META) == 1
    assert run_qa(ctx(date(2026, 1, 17)))["status"] == "already done"
    with pytest.raises(ValueError, match="before the last run"):
        run_qa(ctx(date(2026, 1, 16)))
    # labels are as known at the cutoff: the model of the 15th never saw feedback given after the 15th
    rows, _ = training_rows(ctx(date(2026, 1, 15)))
    assert rows["applied_at"].max() < ctx(date(2026, 1, 15)).cutoff_us


def test_a_log_too_short_is_one_clear_line(flow):
    _, _, ctx = flow
    with pytest.raises(NotEnoughData, match="qa: as of 2026-01-06 there are"):
        run_qa(ctx(date(2026, 1, 6)))


def test_scorer_fetches_once_caches_and_matches_the_model(flow, tmp_path):
    log, store, ctx = flow
    run_qa(ctx(date(2026, 1, 15)))
    model = GameModel.load(tmp_path / "qa" / "models" / "2026-01-15")
    snap = log.snapshot()
    meta = store.get_one(META, "meta")
    # serving computes the features with the skill embedding published beside the coefficients
    f = QAFeaturizer(snap.entities("jobs"), snap.entities("members"), snap.entities("projects"),
                     skill_basis=meta["skill_basis"])
    now = [0.0]
    scorer = QAScorer(store, f.features, f.project_of_job, TTLCache(ttl_s=60, clock=lambda: now[0]))
    member, jobs = int(model.coordinates_["member"].entity_ids[0]), list(range(0, 300, 3))
    got = scorer.score_member(member, jobs)
    assert scorer.fetches == 1
    trained = QAFeaturizer(*(log.snapshot(ctx(date(2026, 1, 15)).cutoff_us).entities(k)
                             for k in ("jobs", "members", "projects")))
    cols = f.features(np.array([f.project_of_job[j] for j in jobs]), np.full(len(jobs), member))
    expected = model.contributions(cols)
    for name in ("global", "member", "job"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)  # float32 in the store
    # the published embedding is the one the model was trained with
    probe = np.array([f.project_of_job[j] for j in jobs[:3]])
    np.testing.assert_allclose(
        f.features(probe, np.full(3, member))["member_skill_0"],
        trained.features(probe, np.full(3, member))["member_skill_0"], rtol=1e-9, atol=1e-12)
    scorer.score_member(member, jobs[:10])
    assert scorer.fetches == 1  # all cached
    now[0] = 120.0
    scorer.score_member(member, jobs[:10])
    assert scorer.fetches == 2  # expired
    single = [scorer.score_member(member, [j])["probability"][0] for j in jobs[:5]]
    np.testing.assert_allclose(single, got["probability"][:5], rtol=1e-12)
    by_job = scorer.score_job(jobs[0], [member, member])
    assert by_job["probability"][0] == pytest.approx(got["probability"][0])
    no_model = int(np.setdiff1d(snap.entities("members")["member_id"].to_numpy(),
                                model.coordinates_["member"].entity_ids)[0])
    assert scorer.score_member(no_model, jobs[:2])["member"].tolist() == [0.0, 0.0]  # no model -> contributes 0
    with pytest.raises(ValueError, match="job_id"):
        scorer.score_member(member, [10**9])


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
    assert metrics["best_auc"] == max(s["auc"] for s in metrics["steps"] if s["auc"] is not None)
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


def test_evaluate_qa_contract(small_market, tmp_path):
    r = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "qa", "--data", str(small_market[1]),
                        "--out", str(tmp_path / "e")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(m["auc"]) == ["gbdt", "global", "global+member", "global+member+job", "game"]
    assert all(0.5 < v < 1 for v in m["auc"].values())
    f = m["freshness"]
    assert set(f) == {"days", "auc_frozen", "auc_daily"} and len(f["days"]) == len(f["auc_daily"]) >= 3
    assert f["auc_frozen"][0] == pytest.approx(f["auc_daily"][0])  # the same model on day 1
    # 21 days are too short for a fully matured test window: the recent window with its pending share
    assert m["protocol"] == "recent" and 0 < m["windows"]["recent"]["pending_share"] < 1
    report = (tmp_path / "e" / "report.md").read_text()
    assert "pending" in report and "as known at the cutoff" in report


def _daily_rows(rng, members: int, per_member: int) -> dict:
    x = rng.normal(size=members * per_member)
    member = np.repeat(np.arange(members), per_member)
    # each member has their own slope on x: the per-member model has something to learn
    slope = np.linspace(-2, 2, members)[member]
    y = (rng.random(x.size) < 1 / (1 + np.exp(-slope * x))).astype(np.int8)
    return {"x": x, "member_id": member, "response": y}


def test_an_incremental_update_refits_a_modelled_entity_from_a_single_new_label():
    """Issue 15: min_samples counted on the day's new rows alone left members whose labels arrive one a day
    without updates for good; the daily chain then trailed a full retrain."""
    from jobmatch.game.model import Coordinate

    coords = [Coordinate("global", "fixed", ("x",)),
              Coordinate("member", "random", ("x",), l2=1.0, entity="member_id", min_samples=2)]
    first = _daily_rows(np.random.default_rng(0), 20, 10)
    prior = GameModel(coords, passes=2).fit(first)
    # one new label per member, the opposite of what each member's model predicts
    new = {"x": np.ones(20), "member_id": np.arange(20),
           "response": (prior.decision_function({"x": np.ones(20), "member_id": np.arange(20)}) < 0).astype(np.int8)}
    update = {"global": None, "member": np.arange(20)}
    after = GameModel(coords, passes=1).fit(new, prior=prior, update=update, keep_best=False)
    moved = np.abs(after.coordinates_["member"].coef - prior.coordinates_["member"].coef).max(axis=1)
    assert (moved > 1e-3).all()
    # an entity the prior does not model still needs min_samples rows
    newcomer = {"x": np.ones(1), "member_id": np.array([99]), "response": np.array([1], np.int8)}
    later = GameModel(coords, passes=1).fit(newcomer, prior=prior, update={"global": None, "member": [99]},
                                            keep_best=False)
    assert 99 not in later.coordinates_["member"].entity_ids
