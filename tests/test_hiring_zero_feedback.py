"""Issue 15's diagnosis of the hiring learning curve: online features must carry hirer feedback, nothing else.

The with-online ranker was ~0.011 NDCG@1 ahead on requests whose project had no feedback yet. The cause: term
weights were non-zero without any rating (log(k / (n + k)) for a term shown on n earlier candidates), i.e. an
impression-count feature. These tests pin the fix and the property the diagnosis relies on.
"""

import numpy as np
import pytest

from jobmatch.hiring.dataset import build_dataset
from jobmatch.hiring.ranker import CandidateRanker
from jobmatch.hiring.weights import term_weight


def test_no_rating_means_no_weight_whatever_was_shown():
    shown = np.array([0, 1, 5, 50, 500])
    assert np.all(term_weight(0, shown, 0, 1000) == 0.0)
    # a term rated at exactly the project's rate says nothing either, at any volume
    assert term_weight(np.array([1, 10, 100]), np.array([10, 100, 1000]), 50, 500) == pytest.approx([0, 0, 0])


def test_rows_of_projects_without_feedback_have_all_zero_online_features(tiny_market):
    _, m = tiny_market
    ds = build_dataset(m.events, m.feedback, m.jobs, m.members, m.projects, m.hirer_impressions)
    prior = ds.rows["prior_feedback"].to_numpy()
    assert (prior == 0).sum() > 100 and (prior > 0).sum() > 100  # both kinds of rows are there
    assert not np.abs(ds.online[prior == 0]).any()
    assert np.abs(ds.online[prior > 0]).any()


def test_a_ranker_given_all_zero_online_features_ranks_like_the_one_without(tiny_market):
    _, m = tiny_market
    ds = build_dataset(m.events, m.feedback, m.jobs, m.members, m.projects, m.hirer_impressions)
    y = ds.rows["label"].to_numpy()
    groups = ds.rows["request_id"].to_numpy(zero_copy_only=False)
    names = list(ds.standard_names)
    zeros = np.zeros_like(ds.online)
    without = CandidateRanker(n_estimators=40, seed=3).fit(ds.standard, y, groups, names)
    with_zero = CandidateRanker(n_estimators=40, seed=3).fit(np.hstack([ds.standard, zeros]), y, groups,
                                                             names + ds.online_names)
    a = without.predict(ds.standard)
    b = with_zero.predict(np.hstack([ds.standard, zeros]))
    np.testing.assert_array_equal(a, b)
    assert all(with_zero.importance()[f] == 0.0 for f in ds.online_names)
