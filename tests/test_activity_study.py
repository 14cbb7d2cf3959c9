"""The activity study's point and the proxy-task negative sampler it compares (random vs hard negatives)."""

import math

import numpy as np
import pytest

from jobmatch.embed.sequences import APPLY, DISMISS, PAD, POSITIVE, REAL, SAVE, SOURCE, proxy_examples


def synthetic_log(seed=3, members=150, jobs=60, groups=6):
    rng = np.random.default_rng(seed)
    member = np.repeat(np.arange(members), rng.integers(4, 50, members))
    code = rng.choice([APPLY, SAVE, DISMISS], member.size, p=[0.45, 0.3, 0.25]).astype(np.int8)
    ts = np.sort(rng.integers(0, 20 * 86_400_000_000, member.size))
    order = np.lexsort((ts, member))  # action_log's order: member, then time
    log = (member[order], rng.integers(jobs, size=member.size), code, ts[order])
    return log, np.arange(jobs) % groups


HARD = ("random", "dismissed", "occupation")


def test_negatives_share_their_positive_context_and_never_enter_one():
    """Added negatives are targets only: contexts hold real actions, and each negative's context is exactly the
    context of a positive example, so nothing in a context (presence, position) can tell a negative from its twin."""
    log, group = synthetic_log()
    ex = proxy_examples(log, np.random.default_rng(0), negatives=HARD, job_group=group)
    assert set(np.unique(ex.context.action).tolist()) <= {PAD, APPLY, SAVE, DISMISS}
    added = ex.source != REAL
    assert (ex.label[added] == 0).all() and added.any()
    positive_contexts = {(ex.context.job[i].tobytes(), ex.context.action[i].tobytes())
                         for i in np.flatnonzero((ex.source == REAL) & (ex.label == 1))}
    for i in np.flatnonzero(added):
        assert (ex.context.job[i].tobytes(), ex.context.action[i].tobytes()) in positive_contexts
    for kind in HARD:  # every kind found candidates on this log
        assert (ex.source == SOURCE[kind]).sum() > 0, kind
    assert (ex.source == SOURCE["random"]).sum() == ((ex.source == REAL) & (ex.label == 1)).sum()


def test_hard_negatives_are_never_positives_and_match_their_kind():
    log, group = synthetic_log(seed=5)
    member, job, code, _ = log
    engaged = {(m, j) for m, j, c in zip(member.tolist(), job.tolist(), code.tolist()) if c in POSITIVE}
    dismissed = {(m, j) for m, j, c in zip(member.tolist(), job.tolist(), code.tolist()) if c == DISMISS}
    ex = proxy_examples(log, np.random.default_rng(1), negatives=HARD, job_group=group)
    groups_by_context: dict[bytes, set[int]] = {}
    for i in np.flatnonzero((ex.source == REAL) & (ex.label == 1)):
        groups_by_context.setdefault(ex.context.job[i].tobytes() + ex.context.action[i].tobytes(), set()).add(
            int(group[ex.target_job[i]]))
    for i in np.flatnonzero(np.isin(ex.source, [SOURCE["dismissed"], SOURCE["occupation"]])):
        m, j = int(ex.context.member_id[i]), int(ex.target_job[i])
        assert (m, j) not in engaged  # a hard negative is never a job the member applied to or saved
        if ex.source[i] == SOURCE["dismissed"]:
            assert (m, j) in dismissed and j not in ex.context.job[i]
        else:
            key = ex.context.job[i].tobytes() + ex.context.action[i].tobytes()
            assert int(group[j]) in groups_by_context[key]  # the occupation of the positive it was drawn for
    with pytest.raises(ValueError, match="job_group"):
        proxy_examples(log, np.random.default_rng(1), negatives=("occupation",))
    with pytest.raises(ValueError, match="negatives"):
        proxy_examples(log, np.random.default_rng(1), negatives=("nearby",))


def test_default_negatives_are_the_random_ones():
    log, _ = synthetic_log()
    a = proxy_examples(log, np.random.default_rng(2))
    b = proxy_examples(log, np.random.default_rng(2), negatives=("random",))
    np.testing.assert_array_equal(a.target_job, b.target_job)
    assert set(np.unique(a.source).tolist()) == {REAL, SOURCE["random"]}


@pytest.mark.slow
def test_activity_study_quick_grid(tmp_path):
    from jobmatch.studies.activity import GAPS, METRICS, STUDY
    from jobmatch.studies.runner import run_study

    assert STUDY.name == "activity" and set(STUDY.metrics) <= set(METRICS + GAPS)
    result = run_study(STUDY, tmp_path, quick=True)
    rows = {tuple(r["value"]): r for r in result["rows"]}
    assert set(rows) == set(STUDY.quick_grid)
    m = rows[STUDY.quick_grid[-1]]
    for key in METRICS[:4]:
        assert 0.5 < m[key] < 1, (key, m[key])
    for key in METRICS[4:]:  # drifted members exist at the quick grid's high drift share
        assert 0.5 < m[key] < 1 or math.isnan(m[key]), (key, m[key])
    assert any(k.startswith("auc_hist1_7_") for k in m) and any(k.startswith("auc_hist8_32_") for k in m)
    assert m["gap_learned"] == pytest.approx(m["auc_learned_random"] - max(m["auc_mean"], m["auc_decay"]))
    assert math.isnan(rows[STUDY.quick_grid[0]]["gap_learned_drift"])  # drift 0: nobody drifted
    assert "activity.png" in (tmp_path / "report.md").read_text() and "000 reports" in result["conclusion"]
