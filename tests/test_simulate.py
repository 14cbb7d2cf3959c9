import hashlib
import json
from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobmatch import schema
from jobmatch.events.ingest import TimeBounds, validate_table
from jobmatch.simulate import TABLES, SimConfig, market, simulate, truth_dir, write_market
from jobmatch.taxonomy import builtin_taxonomy, load_onet

OUTCOMES = ("viewed", "saved", "applied", "dismissed")


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _content_digest(table, columns):
    """A digest of the values (not of a file format), so it only changes when the simulated market does."""
    t = table.select(columns)
    values = {n: (c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c).to_pylist()
              for n, c in zip(t.column_names, t.columns)}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, tiny_market):
    cfg, market = tiny_market
    a = write_market(market, tmp_path / "a", cfg, "builtin")
    b = write_market(simulate(builtin_taxonomy(), cfg), tmp_path / "b", cfg, "builtin")
    assert _digests(a) == _digests(b) and _digests(truth_dir(a)) == _digests(truth_dir(b))
    assert set(_digests(a)) == {f"{t}.parquet" for t in TABLES}
    other = simulate(builtin_taxonomy(), cfg.model_copy(update={"seed": cfg.seed + 1}))
    assert not other.events.equals(market.events)


# Values recorded from the simulator (SimConfig(members=400, days=14, seed=7)) after it was split into steps and
# its impressions became ingestible events (the refactor drew the same market: checked against the values before
# it), and after the fix of the job-search key (jobs were found by a packed (occupation, posting time) key whose
# time part overflowed after ~6 days, showing jobs before they were posted and from the next occupation: see
# `test_every_shown_job_is_open_when_shown`), and since a hirer request lists each candidate once. They pin
# numpy's random streams too.
GOLDEN = {
    "companies": "99388239034481ab", "jobs": "013489fd9a6bded9", "members": "9e9f184e10a280c3",
    "projects": "fdb2146b7906f594", "events": "a95273c439225c67", "feedback": "a15b26272d21c58d",
    "impressions": "a41c58198928010e",  # member_id, job_id, ts, channel
    "impression_blocks": "fe8235e88a52a569",  # the request (block) number of each impression
    "impression_outcomes": "1926d9a5b09b6549",
    "hirer_impressions": "e8e403b5d5d90602",  # project_id, member_id, ts, channel
    "hirer_requests": "c8f6827223e9a623",
}


def test_every_shown_job_is_open_when_shown():
    """No seeker is shown (or applies to) a job before it is posted or after it expires, and a hirer's feedback
    never precedes the project; a 28-day market, so times run far past the first week."""
    m = simulate(builtin_taxonomy(), SimConfig(members=600, days=28, seed=3))
    posted = dict(zip(m.jobs["job_id"].to_pylist(), m.jobs["posted_at"].cast(pa.int64()).to_pylist()))
    expires = dict(zip(m.jobs["job_id"].to_pylist(), m.jobs["expires_at"].cast(pa.int64()).to_pylist()))
    occupation = dict(zip(m.jobs["job_id"].to_pylist(), m.jobs["occupation"].to_pylist()))
    for j, t in zip(m.impressions["job_id"].to_pylist(), m.impressions["ts"].cast(pa.int64()).to_pylist()):
        assert posted[j] <= t < expires[j]
    created = dict(zip(m.projects["project_id"].to_pylist(), m.projects["created_at"].cast(pa.int64()).to_pylist()))
    assert all(created[p] <= t for p, t in zip(m.feedback["project_id"].to_pylist(),
                                             m.feedback["ts"].cast(pa.int64()).to_pylist()))
    h = m.hirer_impressions
    assert len(set(zip(h["request_id"].to_pylist(), h["member_id"].to_pylist()))) == h.num_rows
    # search results come mostly from the query's occupation: a search for a title finds jobs of that title's kind
    search = m.impressions.filter(pc.equal(m.impressions["channel"], "search"))
    occs = [occupation[j] for j in search["job_id"].to_pylist()]
    assert len(set(occs)) > 5


def test_market_is_the_one_recorded(tiny_market):
    cfg, m = tiny_market
    assert cfg == SimConfig(members=400, days=14, seed=7)
    for name in ("companies", "jobs", "members", "projects", "events", "feedback"):
        table = getattr(m, name)
        assert _content_digest(table, table.column_names) == GOLDEN[name], name
    assert _content_digest(m.impressions, ["member_id", "job_id", "ts", "channel"]) == GOLDEN["impressions"]
    assert _content_digest(m.truth["impression_outcomes"], list(OUTCOMES)) == GOLDEN["impression_outcomes"]
    assert _content_digest(m.hirer_impressions, ["project_id", "member_id", "ts", "channel"]) \
        == GOLDEN["hirer_impressions"]
    # request ids number the blocks (requests) as the old integer ids did
    for table, prefix, key in ((m.impressions, "s7r", "impression_blocks"), (m.hirer_impressions, "s7q",
                                                                              "hirer_requests")):
        assert pc.all(pc.starts_with(table["request_id"], prefix)).as_py()
        number = pc.cast(pc.utf8_slice_codeunits(table["request_id"], len(prefix)), pa.int64())
        assert _content_digest(pa.table({"request_id": number}), ["request_id"]) == GOLDEN[key]


def test_tables_follow_the_schemas(tiny_market):
    _, m = tiny_market
    for kind in TABLES:
        table = getattr(m, kind)
        assert table.schema.equals(schema.KINDS[kind].schema), kind
        assert pc.count_distinct(table[schema.ID_FIELD[kind]]).as_py() == table.num_rows, kind
    search = pc.equal(m.events["action"], "SEARCH")
    assert pc.all(pc.is_valid(pc.filter(m.events["query"], search))).as_py()
    assert pc.all(pc.is_valid(pc.filter(m.events["job_id"], pc.invert(search)))).as_py()
    # feedback only on known projects and members
    assert pc.max(m.feedback["project_id"]).as_py() < m.projects.num_rows
    assert pc.max(m.feedback["member_id"]).as_py() < m.members.num_rows
    assert set(m.truth["impression_outcomes"].column_names) == {"impression_id", *OUTCOMES}
    assert m.truth["impression_outcomes"]["impression_id"].equals(m.impressions["impression_id"])


def test_every_table_passes_ingest_validation(tiny_market):
    cfg, m = tiny_market
    # "now" just after the period, so the check does not depend on the wall clock
    bounds = TimeBounds(now=cfg.start + timedelta(days=cfg.days + 1))
    for kind in TABLES:
        batch = validate_table(kind, getattr(m, kind), bounds)
        assert batch.errors == [], (kind, [str(e) for e in batch.errors[:3]])
        assert batch.rows.num_rows == getattr(m, kind).num_rows


def _rows(*columns):
    """Rows of equal-length int columns, in sorted order (for comparing multisets of rows)."""
    rows = np.stack(columns, axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_requests_are_ranked_lists(tiny_market):
    _, m = tiny_market
    for table, owner in ((m.impressions, "member_id"), (m.hirer_impressions, "project_id")):
        per = table.group_by("request_id").aggregate([("position", "count"), ("position", "count_distinct"),
                                                      ("position", "max"), (owner, "count_distinct"),
                                                      ("channel", "count_distinct")])
        # a request shows one owner, on one channel, a list with one row per position
        assert pc.all(pc.equal(per["position_count"], per["position_count_distinct"])).as_py()
        assert pc.all(pc.equal(per[f"{owner}_count_distinct"], 1)).as_py()
        assert pc.all(pc.equal(per["channel_count_distinct"], 1)).as_py()
    # hirers see a request's candidates at once, positions 0..n-1
    per = m.hirer_impressions.group_by("request_id").aggregate([("ts", "count_distinct"), ("position", "max"),
                                                                ("position", "count")])
    assert pc.all(pc.equal(per["ts_count_distinct"], 1)).as_py()
    assert pc.all(pc.equal(pc.add(per["position_max"], 1), per["position_count"])).as_py()


def test_search_impressions_follow_their_search(tiny_market):
    """A search request's jobs are shown slot by slot after the SEARCH event that carries the same query."""
    cfg, m = tiny_market
    imp, ev = m.impressions, m.events
    is_search = pc.equal(imp["channel"], "search")
    assert pc.all(pc.equal(is_search, pc.is_valid(imp["query"]))).as_py()  # a query on search rows only
    search = imp.filter(is_search)
    asked_at = (search["ts"].cast(pa.int64()).to_numpy() - search["position"].to_numpy() * market.SLOT_US
                - market.QUERY_LEAD_US)
    logged = ev.filter(pc.equal(ev["action"], "SEARCH"))
    searched = set(zip(logged["member_id"].to_pylist(), logged["ts"].cast(pa.int64()).to_pylist(),
                       logged["query"].to_pylist()))
    inside = asked_at >= int(cfg.start.timestamp() * 1e6)  # a SEARCH before the period is not logged
    expected = set(zip(search["member_id"].to_numpy()[inside].tolist(), asked_at[inside].tolist(),
                       pc.filter(search["query"], pa.array(inside)).to_pylist()))
    assert expected and expected <= searched


def test_events_are_the_impressions_outcomes(tiny_market):
    """The seeker's actions are attributable to impressions: a VIEW is at its impression (same member, job,
    channel and time); a SAVE/APPLY/DISMISS follows an impression flagged with it."""
    _, m = tiny_market
    imp, ev, outcomes = m.impressions, m.events, m.truth["impression_outcomes"]
    channels = pa.array(list(schema.CHANNEL_CODES))

    def columns(table, mask, with_ts):
        table = table.filter(pa.array(mask))
        cols = [table["member_id"].to_numpy(), table["job_id"].to_numpy(),
                pc.index_in(table["channel"], channels).to_numpy()]
        return [*cols, table["ts"].cast(pa.int64()).to_numpy()] if with_ts else cols

    def acted(action):
        return pc.equal(ev["action"], action).to_numpy(zero_copy_only=False)

    viewed = outcomes["viewed"].to_numpy(zero_copy_only=False)
    assert np.array_equal(_rows(*columns(ev, acted("VIEW"), True)), _rows(*columns(imp, viewed, True)))
    for action, name in (("SAVE", "saved"), ("APPLY", "applied"), ("DISMISS", "dismissed")):
        flagged = outcomes[name].to_numpy(zero_copy_only=False)
        done, shown = _rows(*columns(ev, acted(action), False)), _rows(*columns(imp, flagged, False))
        assert 0 < len(done) <= len(shown)
        assert {tuple(k) for k in done.tolist()} <= {tuple(k) for k in shown.tolist()}, action


def test_truth_is_written_apart_from_the_data(tmp_path, tiny_market):
    cfg, m = tiny_market
    data = write_market(m, tmp_path / "data", cfg, "builtin")
    truth = tmp_path / "data-truth"
    assert data == tmp_path / "data" and truth_dir(data) == truth
    assert sorted(p.name for p in data.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    latent = {c for t in m.truth.values() for c in t.column_names} - {
        c for kind in TABLES for c in schema.KINDS[kind].names}
    assert {"quality", "drift_at", "viewed", "applied", "attractiveness", "weight"} <= latent
    for path in data.iterdir():
        assert not latent & set(pq.read_schema(path).names), path.name
    assert {p.name for p in truth.iterdir()} == {f"{n}.parquet" for n in m.truth} | {"simulation.json"}
    meta = json.loads((truth / "simulation.json").read_text())
    assert meta["config"]["seed"] == cfg.seed and meta["rows"]["impressions"] == m.impressions.num_rows
    assert pq.read_table(truth / "impression_outcomes.parquet").equals(m.truth["impression_outcomes"])
    # an explicit truth folder; never one inside the data (or holding it)
    elsewhere = write_market(m, tmp_path / "d2", cfg, "builtin", truth=tmp_path / "secret")
    assert (tmp_path / "secret" / "members.parquet").is_file() and not truth_dir(elsewhere).exists()
    for bad in (tmp_path / "d3" / "truth", tmp_path / "d3", tmp_path):
        with pytest.raises(ValueError, match="truth"):
            write_market(m, tmp_path / "d3", cfg, "builtin", truth=bad)


def test_refuses_a_data_folder_with_truth_inside(tmp_path, tiny_market):
    cfg, m = tiny_market
    (tmp_path / "old" / "truth").mkdir(parents=True)
    with pytest.raises(ValueError, match="older layout"):
        write_market(m, tmp_path / "old", cfg, "builtin")


@pytest.fixture(scope="module")
def default_regime():
    # The regime depends on ratios (jobs and companies scale with members), so a quarter-size market shows it.
    cfg = SimConfig(members=5000, days=28, seed=3)
    return simulate(builtin_taxonomy(), cfg)


def test_default_market_is_in_the_seeds_regime(default_regime):
    ev = default_regime.events
    member = ev["member_id"].to_numpy()
    action = ev["action"].to_numpy(zero_copy_only=False)
    applies = action == "APPLY"
    job = ev["job_id"].fill_null(-1).to_numpy()
    _, per_applicant = np.unique(member[applies], return_counts=True)
    _, per_job = np.unique(np.unique(np.stack([job[applies], member[applies]]), axis=1)[0], return_counts=True)
    assert np.median(per_applicant) >= 5  # most applicants apply to >= 5 jobs (001)
    assert np.median(per_job) >= 10  # most postings get >= 10 applicants (001)
    members = np.unique(member)
    never = 1 - np.unique(member[action == "SEARCH"]).size / members.size
    assert 0.11 <= never <= 0.21  # ~16% of seekers never search (002)
    _, per_member = np.unique(member, return_counts=True)
    assert np.percentile(per_member, 99) > 8 * np.median(per_member)  # heavy tail of very active members


def test_intent_drift_shows_in_behaviour(default_regime):
    m = default_regime
    truth = m.truth["members"]
    kind = truth["drift_kind"].to_numpy(zero_copy_only=False)
    drift_at = truth["drift_at"].cast("int64").fill_null(2**62).to_numpy()
    after_occ = truth["target_occupation_after"].to_numpy(zero_copy_only=False)
    job_occ = m.jobs["occupation"].to_numpy(zero_copy_only=False)
    job_remote = m.jobs["remote"].to_numpy(zero_copy_only=False)
    ev = m.events
    applies = pc.equal(ev["action"], "APPLY").to_numpy(zero_copy_only=False)
    mem = ev["member_id"].to_numpy()[applies]
    job = pc.filter(ev["job_id"], applies).to_numpy()
    ts = ev["ts"].cast("int64").to_numpy()[applies]
    late = ts >= drift_at[mem]
    occ_drifters = kind[mem] == "occupation"
    hit = job_occ[job] == after_occ[mem]
    assert hit[occ_drifters & late].mean() > hit[occ_drifters & ~late].mean() + 0.15
    remote_drifters = kind[mem] == "remote"
    assert job_remote[job][remote_drifters & late].mean() > job_remote[job][remote_drifters & ~late].mean() + 0.15


def test_first_positive_feedback_mostly_on_day_one(default_regime):
    m = default_regime
    ev, fb = m.events, m.feedback
    applies = pc.equal(ev["action"], "APPLY").to_numpy(zero_copy_only=False)
    key = ev["member_id"].to_numpy()[applies] * 10**6 + pc.filter(ev["job_id"], applies).to_numpy()
    applied_at = dict(zip(key.tolist(), ev["ts"].cast("int64").to_numpy()[applies].tolist()))
    pos = pc.and_(pc.equal(fb["channel"], "applicants"), pc.equal(fb["feedback"], "view_profile")).to_numpy(
        zero_copy_only=False)
    fkey = fb["member_id"].to_numpy()[pos] * 10**6 + fb["project_id"].to_numpy()[pos]
    delay_days = (fb["ts"].cast("int64").to_numpy()[pos] - np.array([applied_at[k] for k in fkey.tolist()])) / 86.4e9
    assert (delay_days >= 0).all()
    by_day = np.bincount(np.floor(delay_days).astype(int))
    assert by_day[0] == by_day.max() and 0.2 < by_day[0] / by_day.sum() < 0.6


def test_onet_taxonomy_simulates(onet_path):
    cfg = SimConfig(members=600, days=10, seed=2)
    m = simulate(load_onet(onet_path), cfg)
    occs = set(m.jobs["occupation"].to_pylist()) | set(m.members["occupation"].to_pylist())
    assert m.events.num_rows > 1000 and len(occs) <= cfg.max_occupations
