import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jobmatch.hiring.dataset import candidate_impressions, counts_before, personalization_features, shown_streams
from jobmatch.hiring.online import HirerPreferences
from jobmatch.hiring.terms import ProfileTerms
from jobmatch.hiring.weights import term_weight


@pytest.fixture(scope="module")
def hiring(tiny_market):
    _, m = tiny_market
    imp = candidate_impressions(m.events, m.projects, m.hirer_impressions)
    return m, ProfileTerms.from_members(m.members), imp


def test_counts_before_is_strict_and_per_key():
    ev_key = np.array([1, 1, 1, 2, 2])
    ev_ts = np.array([10, 20, 20, 5, 30])
    ev_col = np.array([0, 1, 0, 0, 1])
    got = counts_before(ev_key, ev_ts, ev_col, 2, np.array([1, 1, 1, 2, 3]), np.array([10, 21, 20, 31, 100]))
    assert got.tolist() == [[0, 0], [2, 1], [1, 0], [1, 1], [0, 0]]


def test_weight_is_zero_without_evidence_and_signed_with_it():
    assert term_weight(0, 0, 5, 20) == pytest.approx(0.0)
    liked = term_weight(np.arange(0, 11), 10, 5, 20)
    assert liked[0] < 0 < liked[-1] and (np.diff(liked) > 0).all()
    # more evidence at the same rate -> a stronger weight
    assert term_weight(20, 20, 5, 40) > term_weight(2, 2, 5, 40) > 0


def test_offline_point_in_time_features_equal_an_online_replay(hiring):
    m, terms, imp = hiring
    fb = m.feedback
    online = HirerPreferences(terms, projects=m.projects["project_id"].to_pylist())
    # replay in time order; at equal times the candidate is scored before any event is applied
    stream = []
    for r in imp.to_pylist():
        stream.append((r["ts"], 0, "query", r))
        stream.append((r["ts"], 1, "imp", r))
    for r in fb.to_pylist():
        stream.append((r["ts"], 1, "fb", r))
    stream.sort(key=lambda x: (x[0], x[1]))
    rows, expected = [], []
    for _, _, kind, r in stream:
        if kind == "query":
            rows.append(r)
            expected.append(online.features(r["project_id"], [r["member_id"]])[0])
        elif kind == "imp":
            online.observe_impression(r["project_id"], r["member_id"], r["channel"])
        else:
            online.observe_feedback(r["project_id"], r["member_id"], r["channel"], r["feedback"])
    q = pa.Table.from_pylist(rows)
    got = personalization_features(terms, shown_streams(imp, fb), q["project_id"].to_numpy(),
                                   q["member_id"].to_numpy(), q["ts"].cast(pa.int64()).to_numpy())
    expected = np.array(expected)
    assert np.abs(expected).sum() > 0
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
