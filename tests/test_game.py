import numpy as np
import pytest

from jobmatch.game.model import Coordinate, GameModel, reservoir
from jobmatch.game.solvers import fit_batched, fit_each_scipy, objective
from jobmatch.game.synthetic import known_mixed_model

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
    return GameModel(COORDS, passes=3).fit(train, val)


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
    b1, v1 = fit_batched(ent, n_ent, X, y, w, o, lam, mu)
    b2, v2 = fit_each_scipy(ent, n_ent, X, y, w, o, lam, mu)
    np.testing.assert_allclose(b1, b2, atol=1e-5)
    np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-8)
    for e in range(0, n_ent, 37):  # and no entity is worse off than under the reference
        r = ent == e
        assert objective(b1[e], X[r], y[r], w[r], o[r], lam[e], mu[e]) <= \
            objective(b2[e], X[r], y[r], w[r], o[r], lam[e], mu[e]) + 1e-9


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
