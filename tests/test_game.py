import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from threadpoolctl import threadpool_info

from jobmatch.game import model as game_model
from jobmatch.game import solvers
from jobmatch.game.job import GameJobError, score_file, train_job
from jobmatch.game.model import Coordinate, GameModel, reservoir
from jobmatch.game.solvers import fit_batched, fit_each_scipy, objective
from jobmatch.game.synthetic import known_mixed_model
from jobmatch.metrics import auc

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "game"

COORDS = [Coordinate("global", "fixed", ("g1", "g2", "g3"), l2=1.0),
          Coordinate("member", "random", ("j1", "j2"), l2=1.0, entity="member_id"),
          Coordinate("job", "random", ("m1", "m2"), l2=1.0, entity="job_id")]


@pytest.fixture(scope="module")
def data():
    cols, truth = known_mixed_model(rows=60_000, seed=0)
    idx = np.random.default_rng(1).permutation(60_000)
    return ({k: v[idx[:48_000]] for k, v in cols.items()}, {k: v[idx[48_000:]] for k, v in cols.items()}, truth)


@pytest.fixture(scope="module")
def fitted(data):
    train, val, _ = data
    return GameModel(COORDS, passes=3, validate="coordinate").fit(train, val)


def test_batched_solver_matches_a_scipy_loop():
    rng = np.random.default_rng(0)
    n_ent, d = 200, 4
    counts = rng.integers(1, 40, n_ent)
    ent = np.repeat(np.arange(n_ent), counts)
    X = np.column_stack([np.ones(ent.size), rng.normal(size=(ent.size, d - 1))])
    o = rng.normal(size=ent.size) * 0.3
    y = (rng.random(ent.size) < 0.4).astype(float)
    w = rng.uniform(0.5, 2, ent.size)
    lam = np.tile([0.5, 1.0, 1.0, 2.0], (n_ent, 1))
    mu = rng.normal(size=(n_ent, d)) * 0.1
    b1, v1 = fit_batched(ent, n_ent, X, y, w, o, lam, mu, tol=1e-12)  # the reference's precision
    b2, v2 = fit_each_scipy(ent, n_ent, X, y, w, o, lam, mu)
    np.testing.assert_allclose(b1, b2, atol=1e-5)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-8)
    for e in range(0, n_ent, 37):  # and no entity is worse off than under the reference
        r = ent == e
        assert objective(b1[e], X[r], y[r], w[r], o[r], lam[e], mu[e]) <= \
            objective(b2[e], X[r], y[r], w[r], o[r], lam[e], mu[e]) + 1e-9


def test_chunks_do_not_change_the_answer(monkeypatch):
    rng = np.random.default_rng(1)
    n_ent, d = 60, 4
    ent = np.repeat(np.arange(n_ent), rng.integers(1, 60, n_ent))
    X = np.column_stack([np.ones(ent.size), rng.normal(size=(ent.size, d - 1))])
    y, w, o = (rng.random(ent.size) < 0.4).astype(float), rng.uniform(0.5, 2, ent.size), rng.normal(size=ent.size)
    lam, mu = np.ones((n_ent, d)), np.zeros((n_ent, d))
    indptr = np.r_[0, np.cumsum(np.bincount(ent))]
    whole = solvers.fit_grouped(X, y, w, indptr, o, lam, mu, mu, tol=1e-12)  # coefficients, variances, scores
    # a few blocks per chunk; blocks over 25 rows alone, their rows taken 16 at a time
    monkeypatch.setattr(solvers, "CHUNK_BYTES", 2048)
    chunked = solvers.fit_grouped(X, y, w, indptr, o, lam, mu, mu, tol=1e-12)
    for a, b in zip(whole, chunked):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(whole[2], (X * whole[0][ent]).sum(axis=1), atol=1e-12)


def test_coefficients_of_a_known_mixed_model_are_recovered(fitted, data):
    _, _, truth = data
    g = fitted.coordinates_["global"].coef[0]
    np.testing.assert_allclose(g[1:], truth["global"][1:], atol=0.12)
    for name in ("member", "job"):
        m = fitted.coordinates_[name]
        for j in range(3):
            assert np.corrcoef(m.coef[:, j], truth[name][m.entity_ids, j])[0, 1] > 0.9, (name, j)


def test_objective_never_increases_and_each_coordinate_helps(fitted):
    values = [s.objective for s in fitted.steps_]
    assert all(b <= a + 1e-6 * abs(a) for a, b in zip(values, values[1:]))
    aucs = [s.auc for s in fitted.steps_[:3]]
    assert aucs[0] < aucs[1] < aucs[2]  # global < +member < +job
    assert fitted.best_auc_ == max(s.auc for s in fitted.steps_)


def test_save_load_is_exact_and_batch_equals_single(fitted, data, tmp_path):
    _, val, _ = data
    fitted.save(tmp_path / "m")
    again = GameModel.load(tmp_path / "m")
    np.testing.assert_array_equal(again.decision_function(val), fitted.decision_function(val))
    batch = fitted.predict_proba(val)
    for i in (0, 17, 4242):
        single = fitted.predict_proba({k: v[i:i + 1] for k, v in val.items()})
        assert single[0] == pytest.approx(batch[i], rel=1e-12)
    (tmp_path / "m" / "model.json").write_text('{"class": "Other", "version": 1}')
    with pytest.raises(ValueError, match="GameModel"):
        GameModel.load(tmp_path / "m")


def test_version_1_models_load(fitted, data, tmp_path):
    _, val, _ = data
    fitted.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    for key in ("l2", "l2_grid"):
        del meta[key]
    for key in ("validate", "threads", "dtype", "tol"):
        del meta["params"][key]
    for c in meta["params"]["coordinates"]:
        del c["l2_grid"]
    for s in meta["steps"]:
        del s["l2"]
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "version": 1}))
    np.testing.assert_array_equal(GameModel.load(tmp_path / "m").decision_function(val), fitted.decision_function(val))


def test_unknown_entities_contribute_zero(fitted, data):
    _, val, _ = data
    row = {k: v[:1].copy() for k, v in val.items()}
    row["member_id"][:] = 10**9
    parts = fitted.contributions(row)
    assert parts["member"][0] == 0.0 and parts["global"][0] != 0.0


def test_entity_bounds(data):
    train, val, _ = data
    few = {k: v[:3000] for k, v in train.items()}
    coords = [COORDS[0], Coordinate("member", "random", ("j1", "j2"), entity="member_id", min_samples=12,
                                    max_samples=15)]
    m = GameModel(coords, passes=1).fit(few, val)
    counts = np.bincount(few["member_id"])
    assert set(m.coordinates_["member"].entity_ids.tolist()) == set(np.flatnonzero(counts >= 12).tolist())
    kept, scale = reservoir(np.array([0] * 10 + [1] * 3), 4, np.random.default_rng(0))
    assert sorted(np.bincount(np.array([0] * 10 + [1] * 3)[kept]).tolist()) == [3, 4]
    assert np.isclose(scale[np.array([0] * 10 + [1] * 3)[kept] == 0], 2.5).all()  # 10 rows kept as 4, weight 2.5


def test_incremental_refit_keeps_untouched_entities_and_uses_the_prior(fitted, data):
    train, val, _ = data
    touched = np.arange(0, 50)
    inc = GameModel(COORDS, passes=1).fit(train, val, prior=fitted,
                                          update={"global": None, "member": touched, "job": None})
    old, new = fitted.coordinates_["member"], inc.coordinates_["member"]
    untouched = ~np.isin(old.entity_ids, touched)
    np.testing.assert_array_equal(new.coef[np.isin(new.entity_ids, old.entity_ids[untouched])], old.coef[untouched])
    np.testing.assert_array_equal(inc.coordinates_["global"].coef, fitted.coordinates_["global"].coef)
    # refit on the same data with the old fit as prior: the refit entities barely move
    moved = np.abs(new.coef[np.isin(new.entity_ids, touched)] - old.coef[np.isin(old.entity_ids, touched)]).max()
    assert moved < 0.2


def test_bad_response_is_named():
    with pytest.raises(ValueError, match="response"):
        GameModel(COORDS[:1]).fit({"response": np.array([0, 2]), "g1": np.zeros(2), "g2": np.zeros(2),
                                   "g3": np.zeros(2)})


def test_float32_and_float64_agree(data):
    train, val, _ = data
    fits = {dtype: GameModel(COORDS, passes=2, dtype=dtype).fit(train, val) for dtype in ("float32", "float64")}
    assert abs(fits["float32"].best_auc_ - fits["float64"].best_auc_) < 1e-4
    for name in ("global", "member", "job"):
        np.testing.assert_allclose(fits["float32"].coordinates_[name].coef, fits["float64"].coordinates_[name].coef,
                                   atol=1e-3)


def test_fixed_effect_newton_equals_lbfgs(data, monkeypatch):
    train, _, _ = data
    newton = GameModel(COORDS[:1], passes=1, dtype="float64").fit(train)
    monkeypatch.setattr(game_model, "NEWTON_MAX_FEATURES", 1)  # every fixed effect goes to L-BFGS
    lbfgs = GameModel(COORDS[:1], passes=1, dtype="float64", tol=1e-12).fit(train)
    np.testing.assert_allclose(newton.coordinates_["global"].coef, lbfgs.coordinates_["global"].coef, atol=1e-4)
    np.testing.assert_allclose(newton.coordinates_["global"].var, lbfgs.coordinates_["global"].var, rtol=1e-4)


def test_validation_after_every_pass_and_the_best_kept(data):
    train, val, _ = data
    m = GameModel(COORDS, passes=2).fit(train, val)
    assert [s.auc is not None for s in m.steps_] == [False, False, True] * 2
    assert m.best_auc_ == max(s.auc for s in m.steps_ if s.auc is not None)
    assert m.best_auc_ == auc(val["response"], m.decision_function(val))  # the AUC reported is the model's


def test_fit_runs_with_the_threads_asked_for(data):
    train, _, _ = data
    seen = []
    GameModel(COORDS[:1], passes=1, threads=1).fit(train, say=lambda _m: seen.append(
        {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
    assert seen == [{1}]
    with pytest.raises(ValueError, match="threads"):
        GameModel(COORDS, threads=0)


def test_l2_is_chosen_on_validation(data, tmp_path):
    train, val, _ = data
    coords = [COORDS[0], Coordinate("member", "random", ("j1", "j2"), entity="member_id", l2_grid=(1000.0, 1.0))]
    m = GameModel(coords, passes=2).fit(train, val)
    grid = m.l2_grid_["member"]
    assert set(grid) == {1.0, 1000.0} and grid[1.0] > grid[1000.0]  # l2 = 1000 shrinks real effects away
    assert m.coordinates_["member"].l2 == 1.0 and all(s.l2 == 1.0 for s in m.steps_ if s.coordinate == "member")
    again = GameModel.load(m.save(tmp_path / "m"))
    assert again.l2_grid_ == m.l2_grid_ and again.coordinates_["member"].l2 == 1.0
    with pytest.raises(ValueError, match="member.*validation"):
        GameModel(coords).fit(train)


def _relabel(cols: dict, member, job) -> dict:
    return {**cols, "member_id": member(cols["member_id"]), "job_id": job(cols["job_id"])}


def test_string_ids_train_save_load_and_score(data, fitted, tmp_path):
    train, val, _ = data
    as_str = (lambda ids: np.array([f"member-{i}" for i in ids], dtype=object),
              lambda ids: np.array([f"j{i}" for i in ids], dtype=object))
    model = GameModel(COORDS, passes=3).fit(pa.table(_relabel(train, *as_str)), pa.table(_relabel(val, *as_str)))
    assert model.coordinates_["member"].entity_ids.dtype.kind == "U"
    val_str = pa.table(_relabel(val, *as_str))
    before = model.decision_function(val_str)
    again = GameModel.load(model.save(tmp_path / "m"))  # np.load(..., allow_pickle=False) inside
    np.testing.assert_array_equal(again.decision_function(val_str), before)
    np.testing.assert_allclose(before, GameModel(COORDS, passes=3).fit(train, val).decision_function(val), atol=1e-5)
    with pytest.raises(ValueError, match="member_id.*strings.*integers"):
        again.decision_function(val)


def test_integer_ids_near_2_to_the_62(data, tmp_path):
    train, val, _ = data
    big = (lambda ids: ids + 2**62, lambda ids: (ids + 2**62 + 2**40).astype(np.uint64))
    model = GameModel(COORDS, passes=3).fit(_relabel(train, *big), _relabel(val, *big))
    ids = model.coordinates_["member"].entity_ids
    assert ids.dtype == np.int64 and np.array_equal(ids, np.unique(train["member_id"]) + 2**62)  # none merged
    again = GameModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.decision_function(_relabel(val, *big)),
                                  model.decision_function(_relabel(val, *big)))
    np.testing.assert_allclose(model.decision_function(_relabel(val, *big)),
                               GameModel(COORDS, passes=3).fit(train, val).decision_function(val), atol=1e-5)


def test_the_example_trains_and_scores_from_its_files(tmp_path):
    metrics = train_job(EXAMPLE / "game.toml", tmp_path / "m", threads=1)
    assert {"steps", "best_auc", "l2", "l2_grid"} <= set(metrics)
    assert metrics["best_auc"] > 0.65
    for name, grid in metrics["l2_grid"].items():
        assert metrics["l2"][name] == float(max(grid, key=grid.get))
    assert json.loads((tmp_path / "m" / "metrics.json").read_text())["l2"] == metrics["l2"]
    report = (tmp_path / "m" / "report.md").read_text()
    assert "| 3 | per_item |" in report and "l2 chosen" in report
    n = score_file(tmp_path / "m", EXAMPLE / "validation.parquet", tmp_path / "scored.parquet")
    scored = pq.read_table(tmp_path / "scored.parquet")
    assert scored.column_names == ["probability", "score_global", "score_per_user", "score_per_item"]
    val = pq.read_table(EXAMPLE / "validation.parquet")
    assert n == scored.num_rows == val.num_rows
    np.testing.assert_allclose(scored["probability"].to_numpy(),
                               GameModel.load(tmp_path / "m").predict_proba(val), rtol=1e-12)


def test_the_example_data_is_what_its_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_data", EXAMPLE / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    make_data.write(tmp_path)
    for name in ("train.parquet", "validation.parquet"):
        assert pq.read_table(tmp_path / name).equals(pq.read_table(EXAMPLE / name))
    assert sum((EXAMPLE / n).stat().st_size for n in ("train.parquet", "validation.parquet")) <= 1 << 20


@pytest.fixture
def job_dir(tmp_path):
    cols, _ = known_mixed_model(rows=3000)
    pq.write_table(pa.table(cols).slice(0, 2000), tmp_path / "train.parquet")
    pq.write_table(pa.table(cols).slice(2000), tmp_path / "val.parquet")
    (tmp_path / "game.toml").write_text(
        '[data]\ntrain = "train.parquet"\nvalidation = "val.parquet"\n'
        '[[coordinates]]\nname = "global"\ntype = "fixed"\nfeatures = ["g1", "g2"]\nl2 = 1.0\n'
        '[[coordinates]]\nname = "per_member"\ntype = "random"\nentity = "member_id"\nfeatures = ["j1"]\n')
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("mistake, expected", [
    (lambda d: (d / "train.parquet").unlink(), ["data.train", "train.parquet"]),
    (lambda d: (d / "val.parquet").unlink(), ["data.validation", "val.parquet"]),
    (lambda d: _edit(d / "game.toml", '"j1"', '"j9"'), ["train.parquet", "'j9'"]),
    (lambda d: _edit(d / "game.toml", 'type = "random"', 'type = "randm"'), ["per_member", "type", "randm"]),
    (lambda d: _edit(d / "game.toml", 'l2 = 1.0', 'l2 = -1.0'), ["global", "l2", "-1"]),
    (lambda d: _edit(d / "game.toml", '[data]', '[data]\nresponse = "g1"'), ["train.parquet", "'g1'", "0 or 1"]),
    (lambda d: pq.write_table(pq.read_table(d / "train.parquet").set_column(
        1, "member_id", pa.array(np.arange(2000) * 0.5)), d / "train.parquet"),
     ["train.parquet", "member_id", "integers or strings"]),
    (lambda d: pq.write_table(pq.read_table(d / "val.parquet").set_column(
        1, "member_id", pa.array([f"m{i}" for i in range(1000)])), d / "val.parquet"),
     ["game.toml", "member_id", "integers", "strings"]),
])
def test_job_mistakes_are_named_in_one_line(job_dir, tmp_path, mistake, expected):
    mistake(job_dir)
    with pytest.raises(GameJobError) as error:
        train_job(job_dir / "game.toml", tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and all(part in message for part in expected), message


def test_scoring_mistakes_are_named_in_one_line(job_dir, tmp_path):
    train_job(job_dir / "game.toml", tmp_path / "m")
    for model_dir, data, expected in [(tmp_path, job_dir / "val.parquet", "not a GAME model"),
                                      (tmp_path / "m", job_dir / "nope.parquet", "nope.parquet")]:
        with pytest.raises(GameJobError, match=expected):
            score_file(model_dir, data, tmp_path / "s.parquet")
    pq.write_table(pq.read_table(job_dir / "val.parquet").drop_columns(["j1"]), job_dir / "bad.parquet")
    with pytest.raises(GameJobError, match="bad.parquet.*'j1'"):
        score_file(tmp_path / "m", job_dir / "bad.parquet", tmp_path / "s.parquet")
