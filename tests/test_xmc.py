import numpy as np
import pytest

from jobmatch.xmc.metrics import coverage, precision_at_k, semantic_similarity_at_k
from jobmatch.xmc.slice import Slice, SliceParams, _unit, exact_one_vs_all, fit_one_vs_all, label_vectors
from jobmatch.xmc.synthetic import synthetic_xml


@pytest.fixture(scope="module")
def problem():
    X, Y = synthetic_xml(2400, 300, noise=1.5, seed=3)
    return X[:1800], Y[:1800], X[1800:], [set(y) for y in Y[1800:]]


@pytest.fixture(scope="module")
def fitted(problem):
    X, Y, _, _ = problem
    return Slice(SliceParams(shortlist=50)).fit(X, Y, 300)


def test_slice_is_within_two_points_of_exact_one_vs_all(problem, fitted):
    X, Y, Xte, truth = problem
    pred, _ = fitted.predict(Xte, 5)
    w, b = exact_one_vs_all(X, Y, 300)
    exact = np.argsort(-(_unit(Xte) @ w.T + b), axis=1)[:, :5]
    p_slice, p_exact = precision_at_k(pred, truth, 1), precision_at_k(exact, truth, 1)
    assert p_exact > 0.4  # the problem is learnable but not trivial
    assert p_slice >= p_exact - 0.02, (p_slice, p_exact)


def test_sparse_fit_on_every_pair_equals_the_dense_fit():
    # with every (point, label) pair present the sparse objective is the dense one: same optimum
    X, Y = synthetic_xml(300, 12, dim=8, noise=1.0, seed=5)
    n, L = len(Y), 12
    point, label = np.repeat(np.arange(n), L), np.tile(np.arange(L), n)
    target = np.array([lab in y for y, lab in zip(np.repeat(np.array(Y, dtype=object), L), label)], float)
    w, b = fit_one_vs_all(_unit(X), point, label, target, L, l2=1e-3, max_iter=500, seed=0)
    w_dense, b_dense = exact_one_vs_all(X, Y, L, l2=1e-3, max_iter=500)
    np.testing.assert_allclose(w, w_dense, atol=1e-4)
    np.testing.assert_allclose(b, b_dense, atol=1e-4)


def test_shortlist_recall_against_brute_force(fitted, problem):
    _, _, Xte, _ = problem
    got, _ = fitted.shortlist(Xte, 10)
    exact = np.argsort(-(_unit(Xte) @ fitted.label_vectors_.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_label_vector_is_the_normalized_mean_of_positives():
    X = np.array([[1, 0], [0, 2], [3, 0]], np.float32)
    V = label_vectors(X, [[0], [0, 1], [1]], 3)
    np.testing.assert_allclose(V[0], np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(V[1], np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
    assert not V[2].any()  # a label without positives


def test_save_load_gives_identical_predictions(fitted, problem, tmp_path):
    _, _, Xte, _ = problem
    fitted.save(tmp_path / "s")
    again = Slice.load(tmp_path / "s")
    for a, b in zip(fitted.predict(Xte, 5), again.predict(Xte, 5)):
        np.testing.assert_array_equal(a, b)


def test_metrics_on_known_cases():
    pred = np.array([[3, 1, 2], [0, -1, -1]])
    truth = [{1, 2}, {5}]
    assert precision_at_k(pred, truth, 1) == 0.0
    assert precision_at_k(pred, truth, 3) == pytest.approx((2 / 3 + 0) / 2)
    vectors = np.eye(6)
    assert semantic_similarity_at_k(np.array([[1, 2]]), [{1, 2}], vectors, 2) == pytest.approx(1.0)
    assert semantic_similarity_at_k(np.array([[1, 3]]), [{1}], vectors, 2) == pytest.approx(0.5)
    assert coverage(pred, 6, k=3) == pytest.approx(4 / 6)
