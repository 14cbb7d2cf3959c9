"""Candidate selection (002 §4.4): the tantivy job index, clause sets and their learned weights."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from jobmatch.retrieval import (Clause, ClauseWeights, JobIndex, entity_clauses, kinds_of, occupation_clauses,
                                profile_clauses, title_words)

TS = pa.timestamp("us", tz="UTC")


def _us(day: int) -> int:
    return int(datetime(2026, 1, day, tzinfo=timezone.utc).timestamp() * 1e6)


def _jobs(rows: list[tuple]) -> pa.Table:
    """(job_id, title, occupation, skills, location, remote, posted day, expires day)"""
    cols = list(zip(*rows))
    return pa.table({"job_id": pa.array(cols[0], pa.int64()), "title": list(cols[1]), "occupation": list(cols[2]),
                     "skills": pa.array(list(cols[3]), pa.list_(pa.string())), "location": list(cols[4]),
                     "remote": list(cols[5]), "posted_at": pa.array([_us(d) for d in cols[6]], TS),
                     "expires_at": pa.array([_us(d) for d in cols[7]], TS)})


JOBS = _jobs([
    (10, "Senior Registered Nurse", "RN", ["Triage", "IV therapy"], "boston", False, 1, 20),
    (11, "registered nurse", "RN", ["triage"], "austin", True, 2, 20),
    (12, "Nurse, Registered", "RN", ["iv therapy"], "boston", False, 3, 4),
    (13, "Software Engineer", "SW", ["python"], "boston", True, 1, 20),
    (14, "Python Developer", "SW", ["python", "sql"], "austin", False, 5, 20),
    (15, "Line Cook", "CK", ["grill"], "boston", False, 1, 20),
])


@pytest.fixture(scope="module")
def index() -> JobIndex:
    return JobIndex.build(JOBS)


def test_a_clause_set_retrieves_exactly_the_documents_it_should(index):
    phrase = Clause("t", (("title", "registered nurse"),))
    assert sorted(index.search([phrase])[0].tolist()) == [10, 11]  # a phrase, not two words anywhere
    assert sorted(index.search([Clause("t", (("title", "nurse"),))])[0].tolist()) == [10, 11, 12]
    remote_python = Clause("s", (("skills", "Python"), ("remote", "true")))
    assert index.search([remote_python])[0].tolist() == [13]
    boston_rn = Clause("o", (("occupation", "RN"), ("location", "Boston")))
    assert sorted(index.search([boston_rn])[0].tolist()) == [10, 12]
    ids, scores = index.search([phrase, remote_python, boston_rn], {"t": 2.0, "s": 0.5, "o": 1.0})
    assert dict(zip(ids.tolist(), scores.tolist())) == {10: 3.0, 11: 2.0, 12: 1.0, 13: 0.5}
    assert ids.tolist() == [10, 11, 12, 13]  # best first
    ids, _ = index.search([phrase, remote_python, boston_rn], {"t": 2.0, "s": 0.0, "o": 1.0})
    assert 13 not in ids  # a kind weighted 0 is dropped
    assert index.search([phrase, boston_rn], {"t": 1.0, "o": 1.0}, k=1)[0].tolist() == [10]
    # open on day 4: job 12 expired that day (expiry is exclusive), job 14 not posted yet
    ids, _ = index.search([Clause("a", (("location", "boston"),)), Clause("a", (("location", "austin"),))],
                          open_at_us=_us(4) + 1)
    assert sorted(ids.tolist()) == [10, 11, 13, 15]
    assert index.search([])[0].size == 0


def _matches(clause: Clause, job: dict) -> bool:
    """The reference matcher the index must agree with."""
    for field, value in clause.conditions:
        if field == "title":
            words, title = title_words(value), title_words(job["title"])
            if not any(title[i:i + len(words)] == words for i in range(len(title) - len(words) + 1)):
                return False
        elif field == "skills":
            if value.lower() not in {s.lower() for s in job["skills"]}:
                return False
        elif field == "remote":
            if job["remote"] != (value == "true"):
                return False
        elif job[field].lower() != value.lower():
            return False
    return True


def test_index_agrees_with_a_reference_matcher_on_random_clauses():
    rng = np.random.default_rng(0)
    words = ["nurse", "registered", "senior", "cook", "engineer", "data", "lead"]
    skills = ["python", "sql", "triage", "grill", "excel"]
    rows = [(i, " ".join(rng.choice(words, rng.integers(1, 4))), str(rng.choice(["RN", "SW", "CK"])),
             list(rng.choice(skills, rng.integers(0, 3), replace=False)), str(rng.choice(["boston", "austin"])),
             bool(rng.random() < 0.3), 1, 20) for i in range(200)]
    jobs = _jobs(rows)
    index = JobIndex.build(jobs)
    records = jobs.to_pylist()
    for _ in range(60):
        conditions = []
        for field in rng.choice(["title", "occupation", "skills", "location", "remote"], rng.integers(1, 3),
                                replace=False):
            value = {"title": lambda: " ".join(rng.choice(words, rng.integers(1, 3))),
                     "occupation": lambda: str(rng.choice(["RN", "SW", "CK"])),
                     "skills": lambda: str(rng.choice(skills)),
                     "location": lambda: str(rng.choice(["boston", "austin"])),
                     "remote": lambda: str(rng.choice(["true", "false"]))}[field]()
            conditions.append((str(field), value))
        clause = Clause("k", tuple(conditions))
        expected = sorted(r["job_id"] for r in records if _matches(clause, r))
        assert sorted(index.search([clause])[0].tolist()) == expected, clause


def test_kind_counts_count_matched_clauses_per_kind(index):
    clauses = profile_clauses("RN", "Registered Nurse", ["triage", "iv therapy"], "boston")
    ids, counts = index.kind_counts(clauses, kinds_of(["profile"]))
    got = {j: c.tolist() for j, c in zip(ids.tolist(), counts)}
    # occupation, title phrase, skills matched, location
    assert got[10] == [1, 1, 2, 1] and got[11] == [1, 1, 1, 0] and got[12] == [1, 0, 1, 1]
    assert got[13] == [0, 0, 0, 1] and got[15] == [0, 0, 0, 1] and 14 not in got


def test_entity_clauses_rewrite_predicted_entities():
    clauses = entity_clauses(["remote python", "Registered Nurse", "registered nurse", "excel", "!!"], "predicted",
                             {"python", "excel"})
    assert clauses == [Clause("predicted_skill", (("skills", "python"), ("remote", "true"))),
                       Clause("predicted_title", (("title", "registered nurse"),)),
                       Clause("predicted_skill", (("skills", "excel"),))]
    assert occupation_clauses(["RN", "RN", "SW"], "sanns") == [Clause("sanns_occupation", (("occupation", "RN"),)),
                                                               Clause("sanns_occupation", (("occupation", "SW"),))]
    with pytest.raises(ValueError, match="field must be one of"):
        Clause("x", (("salary", "1"),))
    with pytest.raises(ValueError, match="sources"):
        kinds_of(["profile", "magic"])


def test_clause_weights_learn_the_informative_kind(tmp_path):
    rng = np.random.default_rng(1)
    n = 4000
    counts = rng.integers(0, 3, (n, 3)).astype(float)
    applied = rng.random(n) < 1 / (1 + np.exp(-(-3 + 1.5 * counts[:, 0])))  # only the first kind matters
    weights = ClauseWeights().fit(counts, applied, ["useful", "noise", "noise2"])
    w = weights.weights
    assert w["useful"] > 1.0 and w["noise"] < 0.2 and w["noise2"] < 0.2
    loaded = ClauseWeights.load(weights.save(tmp_path / "weights.json"))
    assert loaded.weights == w
    np.testing.assert_array_equal(loaded.score(counts), weights.score(counts))
    with pytest.raises(ValueError, match="both applied and not-applied"):
        ClauseWeights().fit(counts, np.zeros(n, bool), ["a", "b", "c"])


def test_index_on_disk_reopens_the_same(tmp_path, index):
    on_disk = JobIndex.build(JOBS, tmp_path / "jobs")
    clauses = [Clause("t", (("title", "nurse"),)), Clause("s", (("skills", "python"),))]
    again = JobIndex.open(tmp_path / "jobs")
    for a, b in zip(on_disk.search(clauses), again.search(clauses)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.search(clauses)[0], index.search(clauses)[0])
    with pytest.raises(FileExistsError):
        JobIndex.build(JOBS, tmp_path / "jobs")
    with pytest.raises(FileNotFoundError, match="no job index"):
        JobIndex.open(tmp_path / "nothing")


@pytest.mark.slow
def test_evaluate_candidate_selection_quick_contract(small_log, small_market, tmp_path):
    from jobmatch.evaluate.candidate_selection import VARIANTS, evaluate_candidate_selection
    from jobmatch.evaluate.truth import Truth
    from jobmatch.events import EventLog

    with EventLog(small_log, read_only=True) as log:
        m = evaluate_candidate_selection(log, tmp_path, Truth(small_market[2]), quick=True)
    assert list(m) == list(VARIANTS)
    for v in m.values():
        assert 0 <= v["recall@25"] <= v["recall@100"] <= 1 and 0.5 < v["auc"] <= 1
    # the profile baseline retrieves far more of the applied jobs than chance
    assert m["baseline"]["recall@100"] > 0.5
    assert 0 <= m["baseline"]["recall@100_drifted"] <= 1
    assert "Table 6" in (tmp_path / "report.md").read_text()
