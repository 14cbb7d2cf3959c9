import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jobmatch.features import counts_before
from jobmatch.hiring.dataset import candidate_impressions, personalization_features, shown_streams
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


def _replay(prefs, imp, fb, order=None):
    events = [("imp", r) for r in imp.to_pylist()] + [("fb", r) for r in fb.to_pylist()]
    for i in (order if order is not None else range(len(events))):
        kind, r = events[i]
        if kind == "imp":
            prefs.observe_impression(r["project_id"], r["member_id"], r["channel"])
        else:
            prefs.observe_feedback(r["project_id"], r["member_id"], r["channel"], r["feedback"])
    return len(events)


def _busiest_projects(fb, n=3):
    counts = fb.group_by("project_id").aggregate([("member_id", "count")]).sort_by([("member_id_count", "descending")])
    return counts["project_id"].to_pylist()[:n]


def test_counts_are_order_independent_and_idempotent(hiring):
    m, terms, imp = hiring
    fb = m.feedback
    projects = m.projects["project_id"].to_pylist()
    a, b = HirerPreferences(terms, projects=projects), HirerPreferences(terms, projects=projects)
    n = _replay(a, imp, fb)
    order = np.random.default_rng(0).permutation(n)
    _replay(b, imp, fb, order)
    _replay(b, imp, fb, order[::-1])  # every event a second time: no change
    members = m.members["member_id"].to_numpy()[:50]
    for p in _busiest_projects(fb):
        np.testing.assert_array_equal(a.features(p, members), b.features(p, members))
        assert np.abs(a.features(p, members)).sum() > 0


def test_feedback_on_one_project_never_changes_another(hiring):
    m, terms, imp = hiring
    prefs = HirerPreferences(terms, projects=m.projects["project_id"].to_pylist())
    members = m.members["member_id"].to_numpy()[:40]
    a, b = _busiest_projects(m.feedback, 2)
    before = prefs.features(b, members)
    # 20 shown, 10 of them messaged: terms now differ in rate (had all 20 been messaged, every term would be rated
    # at the project's own rate, which says nothing and weighs 0)
    for mem in members[:20]:
        prefs.observe_impression(a, int(mem), "recommended_matches")
    for mem in members[:10]:
        prefs.observe_feedback(a, int(mem), "recommended_matches", "message")
    assert np.abs(prefs.features(a, members)).sum() > 0
    np.testing.assert_array_equal(prefs.features(b, members), before)


def test_bad_feedback_events_are_refused_by_field(hiring):
    m, terms, _ = hiring
    prefs = HirerPreferences(terms, projects=[0, 1])
    with pytest.raises(ValueError, match="project_id: unknown project 99"):
        prefs.observe_feedback(99, 0, "applicants", "message")
    with pytest.raises(ValueError, match="feedback: unknown value 'like'"):
        prefs.observe_feedback(0, 0, "applicants", "like")
    with pytest.raises(ValueError, match="channel: unknown value 'email'"):
        prefs.observe_impression(0, 0, "email")
    with pytest.raises(KeyError, match="member_id: unknown member 10000000"):
        prefs.observe_feedback(0, 10_000_000, "applicants", "message")
    assert np.abs(prefs.features(0, [0, 1])).sum() == 0  # nothing was half-counted


def test_features_never_see_feedback_at_or_after_the_impression(hiring):
    m, terms, imp = hiring
    fb = m.feedback
    ts = imp["ts"].cast(pa.int64()).to_numpy()
    cut = int(np.quantile(ts, 0.6))
    q = imp.filter(pc.less_equal(imp["ts"].cast(pa.int64()), cut))
    args = (q["project_id"].to_numpy(), q["member_id"].to_numpy(), q["ts"].cast(pa.int64()).to_numpy())
    full = personalization_features(terms, shown_streams(imp, fb), *args)
    fb_before = fb.filter(pc.less(fb["ts"].cast(pa.int64()), cut))
    imp_before = imp.filter(pc.less(imp["ts"].cast(pa.int64()), cut))
    truncated = personalization_features(terms, shown_streams(imp_before, fb_before), *args)
    np.testing.assert_array_equal(full, truncated)
    assert np.abs(full).sum() > 0


@pytest.mark.redis
def test_redis_counts_match_memory_and_are_shared_across_processes(hiring, redis_url):
    import subprocess
    import sys

    from jobmatch.hiring.state import RedisProjectCounts

    m, terms, imp = hiring
    projects = m.projects["project_id"].to_pylist()
    prefix = "hiretest"
    mem = HirerPreferences(terms, projects=projects)
    red = HirerPreferences(terms, RedisProjectCounts(redis_url, prefix=prefix), projects=projects)
    fb = m.feedback.slice(0, 400)
    _replay(mem, imp.slice(0, 0), fb)
    red.counts.add_many([])  # pipeline path with nothing to do
    _replay(red, imp.slice(0, 0), fb)
    members = m.members["member_id"].to_numpy()[:30]
    for p in _busiest_projects(fb):
        np.testing.assert_array_equal(mem.features(p, members), red.features(p, members))
    # another process records feedback; this one sees it on its next read
    target = _busiest_projects(fb, 1)[0]
    before = red.features(target, members)
    term = int(terms.terms_of(int(members[0]))[0])
    code = ("from jobmatch.hiring.state import RedisProjectCounts\n"
            "from jobmatch.hiring.online import code, C_RATED, C_TERM_RATED, N_SHOWN, N_TERM_SHOWN\n"
            f"c = RedisProjectCounts({redis_url!r}, prefix={prefix!r})\n"
            f"print(c.add_once({target}, 'f:external', [code(N_SHOWN, 1), code(C_RATED, 1, 1), "
            f"code(N_TERM_SHOWN, 1, 0, {term}), code(C_TERM_RATED, 1, 1, {term})]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert not np.array_equal(red.features(target, members), before)
    red.counts.close()


def test_batch_observation_equals_event_by_event(hiring):
    m, terms, _ = hiring
    fb = m.feedback
    projects = m.projects["project_id"].to_pylist()
    rows = list(zip(fb["project_id"].to_pylist(), fb["member_id"].to_pylist(), fb["channel"].to_pylist(),
                    fb["feedback"].to_pylist()))
    single, batch = HirerPreferences(terms, projects=projects), HirerPreferences(terms, projects=projects)
    new = sum(single.observe_feedback(*r) for r in rows)
    assert batch.observe_feedback_batch(rows[: len(rows) // 2]) + batch.observe_feedback_batch(rows) == new
    with pytest.raises(ValueError, match="feedback"):  # validated before anything is applied
        batch.observe_feedback_batch([rows[0], (rows[0][0], rows[0][1], "applicants", "like")])
    members = m.members["member_id"].to_numpy()[:50]
    for p in _busiest_projects(fb):
        np.testing.assert_array_equal(single.features(p, members), batch.features(p, members))


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def counts(request, tmp_path):
    from jobmatch.hiring.state import MemoryProjectCounts, RedisProjectCounts, SQLiteProjectCounts

    if request.param == "memory":
        c = MemoryProjectCounts()
    elif request.param == "sqlite":
        c = SQLiteProjectCounts(tmp_path / "store.sqlite")
    else:
        c = RedisProjectCounts(request.getfixturevalue("redis_url"), prefix=f"conf{tmp_path.name}")
    yield c
    c.close()


def test_project_counts_conformance(counts):
    assert counts.add_once(1, "a", [10, 11, 11]) and not counts.add_once(1, "a", [10])
    assert counts.add_once(2, "a", [10])
    assert counts.add_many([(1, "b", [10]), (1, "a", [10]), (1, "c", [12])]) == 2
    assert counts.lookup(1, np.array([10, 11, 12, 99])).tolist() == [2, 2, 1, 0]
    assert counts.lookup(2, np.array([10, 11])).tolist() == [1, 0]
    assert counts.lookup(3, np.array([10])).tolist() == [0]


def test_sqlite_counts_are_not_created_by_readers(tmp_path):
    from jobmatch.hiring.state import SQLiteProjectCounts
    from jobmatch.store import StoreError

    path = tmp_path / "store.sqlite"
    with pytest.raises(StoreError, match="no project counts"):
        SQLiteProjectCounts(path, create=False)
    assert not path.exists()
    SQLiteProjectCounts(path).close()
    reader = SQLiteProjectCounts(path, create=False)
    assert reader.lookup(1, np.array([5])).tolist() == [0]
    reader.close()


def test_sqlite_counts_are_shared_by_processes(tmp_path, hiring):
    import subprocess
    import sys

    from jobmatch.hiring.state import SQLiteProjectCounts

    path = tmp_path / "store.sqlite"
    c = SQLiteProjectCounts(path)
    code = ("from jobmatch.hiring.state import SQLiteProjectCounts\n"
            f"print(SQLiteProjectCounts({str(path)!r}).add_once(5, 'x', [1, 2]))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"
    assert c.lookup(5, np.array([1, 2, 3])).tolist() == [1, 1, 0]
    c.close()
