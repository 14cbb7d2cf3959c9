import hashlib

import numpy as np
import pyarrow.compute as pc
import pytest

from jobmatch.schema import EVENT_SCHEMA, FEEDBACK_SCHEMA
from jobmatch.simulate import TABLES, SimConfig, simulate, write_market
from jobmatch.taxonomy import builtin_taxonomy, load_onet


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, tiny_market):
    cfg, market = tiny_market
    a = write_market(market, tmp_path / "a", cfg, "builtin")
    b = write_market(simulate(builtin_taxonomy(), cfg), tmp_path / "b", cfg, "builtin")
    assert _digests(a) == _digests(b)
    assert {f"{t}.parquet" for t in TABLES} <= set(_digests(a))
    other = simulate(builtin_taxonomy(), cfg.model_copy(update={"seed": cfg.seed + 1}))
    assert not other.events.equals(market.events)


def test_tables_follow_the_schemas(tiny_market):
    _, m = tiny_market
    assert m.events.schema.equals(EVENT_SCHEMA) and m.feedback.schema.equals(FEEDBACK_SCHEMA)
    assert pc.count_distinct(m.events["event_id"]).as_py() == m.events.num_rows
    search = pc.equal(m.events["action"], "SEARCH")
    assert pc.all(pc.is_valid(pc.filter(m.events["query"], search))).as_py()
    assert pc.all(pc.is_valid(pc.filter(m.events["job_id"], pc.invert(search)))).as_py()
    # feedback only on known projects and members
    assert pc.max(m.feedback["project_id"]).as_py() < m.projects.num_rows
    assert pc.max(m.feedback["member_id"]).as_py() < m.members.num_rows


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
