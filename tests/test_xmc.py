import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

import jobmatch.xmc.slice as slice_module
import jobmatch.xmc.tree as tree_module
from jobmatch.xmc.metrics import coverage, precision_at_k, semantic_similarity_at_k
from jobmatch.xmc.slice import Slice, SliceParams, _unit, check_labels, exact_one_vs_all, fit_pairs, label_vectors
from jobmatch.xmc.synthetic import sparse_bow_xml, synthetic_xml


def truth_sets(Y: sp.csr_matrix) -> list[set[int]]:
    return [set(Y.indices[Y.indptr[i]:Y.indptr[i + 1]].tolist()) for i in range(Y.shape[0])]


def exact_top(X, W, b, k):
    return np.argsort(-np.asarray(X @ W.T + b), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def dense_problem():
    X, Y = synthetic_xml(2400, 300, noise=1.5, seed=3)
    return X[:1800], Y[:1800], X[1800:], [set(y) for y in Y[1800:]]


@pytest.fixture(scope="module")
def dense_fitted(dense_problem):
    X, Y, _, _ = dense_problem
    return Slice(SliceParams(shortlist=50)).fit(X, Y, 300)


@pytest.fixture(scope="module")
def bow_problem():
    p = sparse_bow_xml(1500, 1500, 120, seed=4)
    return p.X[:1200], p.Y[:1200], p.X[1200:], truth_sets(p.Y[1200:])


@pytest.fixture(scope="module")
def bow_fitted(bow_problem):
    X, Y, _, _ = bow_problem
    return Slice(leaf_size=20, beam=4).fit(X, Y)  # six clusters, four searched: the tree is exercised


@pytest.mark.parametrize("which", ["dense", "bow"])
def test_slice_is_within_two_points_of_exact_one_vs_all(which, request):
    X, Y, Xte, truth = request.getfixturevalue(f"{which}_problem")
    model = request.getfixturevalue(f"{which}_fitted")
    W, b = exact_one_vs_all(X, Y, None if sp.issparse(Y) else 300, C=model.selection_["C"])
    p_exact = precision_at_k(exact_top(slice_module.unit_features(Xte), W, b, 5), truth, 1)
    p_slice = precision_at_k(model.predict(Xte, 5)[0], truth, 1)
    assert p_exact > 0.3  # the problem is learnable but not trivial
    assert p_slice >= p_exact - 0.02, (p_slice, p_exact)


def test_fit_pairs_equals_liblinear_per_label(monkeypatch):
    # the chunked block-diagonal problem is the per-label problems side by side: same optimum as one LinearSVC each
    monkeypatch.setattr(slice_module, "CHUNK_NNZ", 1 << 10)  # several chunks
    p = sparse_bow_xml(200, 150, 9, seed=5)
    X, Y = slice_module.unit_features(p.X), p.Y
    n, L = Y.shape
    label, point = np.divmod(np.arange(n * L), n)
    target = Y.toarray().T.ravel() > 0
    W, b = fit_pairs(X, point, label, target, L, C=2.0, tol=1e-8, max_iter=100_000)
    for lab in range(L):
        ref = LinearSVC(C=2.0, tol=1e-8, max_iter=100_000).fit(X, target[lab * n:(lab + 1) * n])
        np.testing.assert_allclose(W[lab], ref.coef_[0], atol=2e-4)
        np.testing.assert_allclose(b[lab], ref.intercept_[0], atol=2e-4)


def test_loss_is_a_sum_over_pairs_not_a_mean():
    # every pair twice at C is every pair once at 2C (a mean would be unchanged by the duplication instead)
    p = sparse_bow_xml(150, 100, 4, seed=6)
    X, Y = slice_module.unit_features(p.X), p.Y
    n, L = Y.shape
    label, point = np.divmod(np.arange(n * L), n)
    target = Y.toarray().T.ravel() > 0
    twice = np.repeat(np.arange(n * L), 2)
    kw = {"tol": 1e-8, "max_iter": 100_000}
    W2, b2 = fit_pairs(X, point[twice], label[twice], target[twice], L, C=0.5, **kw)
    W1, b1 = fit_pairs(X, point, label, target, L, C=1.0, **kw)
    np.testing.assert_allclose(W2, W1, atol=2e-4)
    np.testing.assert_allclose(b2, b1, atol=2e-4)


@pytest.mark.parametrize("sparse", [False, True])
def test_slice_with_every_label_shortlisted_is_exact_one_vs_all(sparse):
    X, Y = synthetic_xml(300, 12, dim=8, noise=1.0, seed=5)
    X = sp.csr_matrix(X) if sparse else X
    fixed = {"C": 1.0, "classifier_weight": 1.0, "predict_shortlist": 12, "tol": 1e-6, "max_iter": 10_000}
    model = Slice(shortlist=12, **fixed).fit(X, Y, 12)
    W, b = exact_one_vs_all(X, Y, 12, C=1.0, tol=1e-6, max_iter=10_000)
    np.testing.assert_allclose(model.W_, W, atol=1e-5)
    np.testing.assert_allclose(model.b_, b, atol=1e-5)
    Xu = slice_module.unit_features(X)
    np.testing.assert_array_equal(model.predict(X, 3)[0], exact_top(Xu, model.W_, model.b_, 3))


def test_hnsw_shortlist_recall_against_brute_force(dense_fitted, dense_problem):
    _, _, Xte, _ = dense_problem
    got, _ = dense_fitted.shortlist(Xte, 10)
    exact = np.argsort(-(_unit(Xte) @ dense_fitted.label_vectors_.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_label_tree_is_exact_when_every_cluster_is_searched_and_recalls_with_a_narrow_beam(bow_fitted, bow_problem):
    _, _, Xte, _ = bow_problem
    Q = slice_module.unit_features(Xte)
    sims = (Q @ bow_fitted.label_vectors_.T).toarray()
    exact = np.argsort(-sims, axis=1, kind="stable")[:, :10]
    tree = bow_fitted.index_
    assert tree.starts_.size - 1 == 6
    wide = tree_module.LabelTree.from_assignment(tree.label_vectors_, tree.assign_, tree.leaf_size, 6, tree.seed)
    got, got_sims = wide.query(Q, 10)
    np.testing.assert_allclose(got_sims, np.take_along_axis(sims, got, 1), rtol=1e-5)
    np.testing.assert_allclose(got_sims, np.take_along_axis(sims, exact, 1), rtol=1e-5)  # same top-10 similarities
    narrow, _ = tree.query(Q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(narrow.tolist(), exact.tolist())])
    assert recall >= 0.8


def test_label_vector_is_the_normalized_mean_of_positives():
    X = np.array([[1, 0], [0, 2], [3, 0]], np.float32)
    Y = check_labels([[0], [0, 1], [1]], 3, 3)
    for Xi in (_unit(X), sp.csr_matrix(_unit(X))):
        V = label_vectors(Xi, Y)
        V = V.toarray() if sp.issparse(V) else V
        np.testing.assert_allclose(V[0], np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
        np.testing.assert_allclose(V[1], np.array([1, 1]) / np.sqrt(2), rtol=1e-6)
        assert not V[2].any()  # a label without positives


@pytest.mark.parametrize("which", ["dense", "bow"])
def test_save_load_gives_identical_predictions(which, request, tmp_path):
    _, _, Xte, _ = request.getfixturevalue(f"{which}_problem")
    model = request.getfixturevalue(f"{which}_fitted")
    model.save(tmp_path / "s")
    again = Slice.load(tmp_path / "s")
    for a, b in zip(model.predict(Xte, 5), again.predict(Xte, 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", ["dense", "bow"])
def test_batched_prediction_equals_one_batch(which, request, monkeypatch):
    _, _, Xte, _ = request.getfixturevalue(f"{which}_problem")
    model = request.getfixturevalue(f"{which}_fitted")
    whole = model.predict(Xte[:200], 5)
    monkeypatch.setattr(slice_module, "BATCH_ELEMENTS", 1)  # one row per batch
    monkeypatch.setattr(tree_module, "BATCH_ELEMENTS", 1)
    for a, b in zip(whole, model.predict(Xte[:200], 5)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", ["dense", "bow"])
def test_prediction_takes_dense_or_sparse_queries_alike(which, request):
    _, _, Xte, _ = request.getfixturevalue(f"{which}_problem")
    model = request.getfixturevalue(f"{which}_fitted")
    other = Xte[:50].toarray() if sp.issparse(Xte) else sp.csr_matrix(Xte[:50])
    for a, b in zip(model.predict(Xte[:50], 5), model.predict(other, 5)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_labels_as_csr_or_lists_give_the_same_model(bow_problem):
    X, Y, Xte, _ = bow_problem
    lists = truth_sets(Y)
    fixed = {"C": 1.0, "classifier_weight": 0.5, "predict_shortlist": 10}
    a = Slice(**fixed).fit(X[:400], Y[:400]).predict(Xte, 5)
    b = Slice(**fixed).fit(X[:400], [sorted(s) for s in lists[:400]], Y.shape[1]).predict(Xte, 5)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_selection_comes_from_the_grids_and_params_round_trip(dense_fitted):
    sel = dense_fitted.selection_
    assert sel["C"] in dense_fitted.params.C_grid
    assert sel["classifier_weight"] in slice_module.CLASSIFIER_WEIGHTS
    assert 1 <= sel["predict_shortlist"] <= 50
    params = dense_fitted.get_params()
    assert Slice(**params).params == dense_fitted.params
    assert Slice().set_params(C=3.0).params.C == 3.0


def test_more_labels_than_requested_pads_with_minus_one(dense_fitted, dense_problem):
    _, _, Xte, _ = dense_problem
    labels, scores = dense_fitted.predict(Xte[:3], 301)
    assert labels.shape == (3, 301) and (labels[:, -1] == -1).all() and (scores[:, -1] == 0).all()
    assert all(len(set(row[:300].tolist())) == 300 for row in labels)


@pytest.mark.parametrize("case, match", [
    ("features", "X: 31 features, the model was fit on 32"),
    ("nan", "X: NaN or infinity in row 2"),
    ("k", "k: expected at least 1"),
])
def test_bad_prediction_input_raises_one_clear_error(dense_fitted, dense_problem, case, match):
    _, _, Xte, _ = dense_problem
    X = {"features": Xte[:5, :31], "nan": np.where(np.arange(5)[:, None] == 2, np.nan, Xte[:5]), "k": Xte[:5]}[case]
    with pytest.raises(ValueError, match=match):
        dense_fitted.predict(X, 0 if case == "k" else 5)  # raises before hnswlib sees the query: no crash


def test_wrong_feature_count_raises_for_sparse_models_too(bow_fitted, bow_problem):
    _, _, Xte, _ = bow_problem
    with pytest.raises(ValueError, match="X: 1499 features, the model was fit on 1500"):
        bow_fitted.predict(Xte[:, :1499], 5)


@pytest.mark.parametrize("X, Y, n_labels, match", [
    (np.ones((3, 2)), [[0], [1]], 2, "Y: 2 rows for 3 rows of X"),
    (np.array([[1.0, 0], [np.nan, 1]]), [[0], [1]], 2, "X: NaN or infinity in row 1"),
    (np.eye(2), [[0], [2]], 2, r"Y: label id 2 in row 1 is outside 0..1 \(n_labels=2\)"),
    (np.eye(2), [[-1], [0]], 2, "Y: label id -1 in row 0 is outside"),
    (np.eye(2), sp.csr_matrix(np.array([[2.0, 0], [0, 1]])), 2, "Y: an indicator matrix holds 0/1, found 2.0"),
    (np.eye(2), sp.csr_matrix(np.eye(2)), 3, "Y: n_labels=3 but the indicator matrix has 2 columns"),
    (np.ones(3), [[0]], 1, r"X: expected a 2-D \(points x features\) array, got shape \(3,\)"),
])
def test_bad_training_input_raises_one_clear_error(X, Y, n_labels, match):
    with pytest.raises(ValueError, match=match):
        Slice().fit(X, Y, n_labels)


def test_dense_label_matrix_is_refused_as_ambiguous():
    with pytest.raises(TypeError, match=r"Y: a dense \(2, 2\) array is ambiguous"):
        Slice().fit(np.eye(2), np.array([[1, 0], [0, 1]]), 2)


def test_sparse_bow_labels_are_their_keywords():
    # known structure: a label's vector (mean of its documents) puts its keywords first
    p = sparse_bow_xml(2000, 800, 20, seed=7)
    V = label_vectors(slice_module.unit_features(p.X), p.Y).toarray()
    top = np.argsort(-V, axis=1)[:, :5]
    share = np.mean([np.isin(t, kw).mean() for t, kw in zip(top, p.keywords)])
    assert share >= 0.8
    assert p.X.shape == (2000, 800) and p.Y.shape == (2000, 20) and p.Y.getnnz(axis=1).min() >= 1
    np.testing.assert_allclose(sp.linalg.norm(p.X, axis=1), 1.0, rtol=1e-5)


def test_metrics_on_known_cases():
    pred = np.array([[3, 1, 2], [0, -1, -1]])
    truth = [{1, 2}, {5}]
    assert precision_at_k(pred, truth, 1) == 0.0
    assert precision_at_k(pred, truth, 3) == pytest.approx((2 / 3 + 0) / 2)
    vectors = np.eye(6)
    assert semantic_similarity_at_k(np.array([[1, 2]]), [{1, 2}], vectors, 2) == pytest.approx(1.0)
    assert semantic_similarity_at_k(np.array([[1, 3]]), [{1}], vectors, 2) == pytest.approx(0.5)
    assert coverage(pred, 6, k=3) == pytest.approx(4 / 6)
