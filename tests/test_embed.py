import json
import subprocess
import sys
from datetime import date, datetime, timezone

import numpy as np
import pytest

from jobmatch.embed.aggregators import DecayAggregator, LearnedAggregator, MeanAggregator
from jobmatch.embed.jobs import JobEncoder
from jobmatch.embed.sequences import (APPLY, DISMISS, PAD, SAVE, SEQ_LEN, ProxyExamples, Sequences, action_log,
                                      member_sequences, proxy_examples)
from jobmatch.metrics import auc
from jobmatch.events import EventLog
from jobmatch.flows.activity import (JOB_EMBEDDINGS, EmbeddingModels, RealtimeActivity, dataset_name,
                                     run_activity_embeddings)
from jobmatch.flows.state import FlowContext
from jobmatch.store import open_store

DIM = 8


def random_sequences(n=20, seed=0, n_jobs=50):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, SEQ_LEN + 1, n)
    action = np.full((n, SEQ_LEN), PAD, np.int8)
    job = np.full((n, SEQ_LEN), -1, np.int64)
    for i, L in enumerate(lengths):
        action[i, SEQ_LEN - L:] = rng.choice([APPLY, SAVE, DISMISS], L)
        job[i, SEQ_LEN - L:] = rng.integers(n_jobs, size=L)
    ts = np.cumsum(np.ones((n, SEQ_LEN), np.int64), axis=1)
    return Sequences(np.arange(n), job, action, ts), rng.normal(size=(n_jobs, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def learned():
    seqs, emb = random_sequences(200, seed=1)
    rng = np.random.default_rng(2)
    ex = ProxyExamples(seqs, rng.integers(50, size=200), rng.integers(2, size=200), np.ones(200))
    return {arch: LearnedAggregator(arch, dim=DIM, hidden=16, epochs=1).fit(ex, emb) for arch in ("cnn", "transformer")}


def aggregators(learned):
    return [MeanAggregator(), DecayAggregator(0.7), *learned.values()]


def test_decay_weights_sum_to_one_per_action_and_favour_recent():
    seqs, _ = random_sequences()
    w = DecayAggregator(0.6).weights(seqs)
    for i in range(len(seqs)):
        for k, a in enumerate((APPLY, SAVE, DISMISS)):
            present = (seqs.action[i] == a).any()
            assert w[i, k].sum() == pytest.approx(1.0 if present else 0.0)
            slots = np.flatnonzero(seqs.action[i] == a)
            assert (np.diff(w[i, k, slots]) > 0).all()  # newer actions weigh more
    np.testing.assert_allclose(DecayAggregator(1.0).weights(seqs), MeanAggregator().weights(seqs))
    with pytest.raises(ValueError, match="r"):
        DecayAggregator(1.5)


def test_padding_never_changes_an_output(learned):
    seqs, emb = random_sequences()
    noisy = Sequences(seqs.member_id, seqs.job.copy(), seqs.action.copy(), seqs.ts.copy())
    pad = seqs.action == PAD
    noisy.job[pad] = np.random.default_rng(9).integers(50, size=pad.sum())  # garbage behind the PAD label
    noisy.ts[pad] = 12345
    for agg in aggregators(learned):
        np.testing.assert_array_equal(agg.transform(noisy, emb), agg.transform(seqs, emb), err_msg=agg.name)


def test_batch_equals_single(learned):
    seqs, emb = random_sequences()
    for agg in aggregators(learned):
        batch = agg.transform(seqs, emb)
        single = np.vstack([agg.transform(seqs.take(np.array([i])), emb) for i in range(len(seqs))])
        np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6, err_msg=agg.name)


def test_save_load_is_exact(learned, tmp_path):
    seqs, emb = random_sequences()
    for agg in aggregators(learned):
        agg.save(tmp_path / agg.name)
        again = type(agg).load(tmp_path / agg.name)
        assert again.key == agg.key
        np.testing.assert_array_equal(again.transform(seqs, emb), agg.transform(seqs, emb))
    tokens = [["t:a", "s:x"], ["t:a", "s:y"], ["t:b"], ["t:b", "s:x"]] * 5
    enc = JobEncoder(dim=DIM, epochs=2, batch_size=4, min_count=1).fit(tokens, np.array([[0, 1], [2, 3]] * 10))
    enc.save(tmp_path / "enc")
    np.testing.assert_array_equal(JobEncoder.load(tmp_path / "enc").transform(tokens), enc.transform(tokens))


def test_proxy_dataset_rules():
    member = np.repeat([1, 2, 3], [40, 3, 6])
    rng = np.random.default_rng(0)
    ts = np.arange(member.size) * 3_600_000_000
    code = rng.choice([APPLY, SAVE, DISMISS], member.size, p=[0.5, 0.3, 0.2]).astype(np.int8)
    log = (member, rng.integers(30, size=member.size), code, ts)
    ex = proxy_examples(log, stride=8)
    # member 2 (3 actions) is dropped; member 1 gets a window every 8 actions; member 3 one window
    assert sorted(set(ex.context.member_id.tolist())) == [1, 3]
    assert (ex.context.member_id == 1).sum() == len(range(40, 3, -8)) and (ex.context.member_id == 3).sum() == 1
    assert ((ex.context.action != PAD).sum(axis=1) <= SEQ_LEN - 1).all()
    newest = ex.context.member_id == 1
    assert (ex.context.action[newest][0] != PAD).sum() == SEQ_LEN - 1  # a full window: 31 before the target
    # on a larger log (positives dominate, as in 000's 97/3), random negatives bring the classes near 50/50
    big_member = np.repeat(np.arange(400), rng.integers(4, 60, 400))
    big_code = rng.choice([APPLY, SAVE, DISMISS], big_member.size, p=[0.6, 0.37, 0.03]).astype(np.int8)
    big = (big_member, rng.integers(30, size=big_member.size), big_code, np.arange(big_member.size) * 3_600_000_000)
    plain = proxy_examples(big)
    assert plain.label.mean() > 0.9
    ex2 = proxy_examples(big, rng)
    assert 0.4 < ex2.label.mean() < 0.6
    rand_neg = ex2.weight < 1
    assert rand_neg.sum() == plain.label.sum()  # one random negative per positive
    assert (ex2.weight[rand_neg] < ex2.weight[(ex2.label == 0) & ~rand_neg].min()).all()  # RAND_NEG weighs less


def test_random_negatives_cannot_be_told_by_position():
    """A random negative is never part of a context: every context holds real actions only, and each random
    negative shares its context with the positive it was drawn for, so the context alone cannot tell them apart."""
    rng = np.random.default_rng(3)
    member = np.repeat(np.arange(200), rng.integers(4, 50, 200))
    code = rng.choice([APPLY, SAVE, DISMISS], member.size, p=[0.5, 0.4, 0.1]).astype(np.int8)
    log = (member, rng.integers(40, size=member.size), code, np.sort(rng.integers(0, 10**12, member.size)))
    ex = proxy_examples(log, rng)
    assert set(np.unique(ex.context.action).tolist()) <= {PAD, APPLY, SAVE, DISMISS}
    n_real = proxy_examples(log).label.size
    neg = np.arange(ex.label.size) >= n_real
    twins = np.flatnonzero(ex.label[:n_real] == 1)
    assert neg.sum() == twins.size and (ex.label[neg] == 0).all()
    np.testing.assert_array_equal(ex.context.job[neg], ex.context.job[twins])
    np.testing.assert_array_equal(ex.context.action[neg], ex.context.action[twins])
    # the last context action says nothing about the label once the targets are paired
    last = ex.context.action[:, -1]
    paired = np.r_[twins, np.flatnonzero(neg)]
    for a in (APPLY, SAVE, DISMISS):
        sel = last[paired] == a
        if sel.sum() > 20:
            assert abs(ex.label[paired][sel].mean() - 0.5) < 1e-9


def test_learned_encoder_beats_chance_on_a_known_task():
    """Members act on jobs of one cluster; the held-out job is positive iff it is from that cluster."""
    rng = np.random.default_rng(0)
    n_jobs, n = 60, 1200
    centres = rng.normal(size=(2, DIM))
    cluster = np.arange(n_jobs) % 2
    emb = (centres[cluster] + 0.3 * rng.normal(size=(n_jobs, DIM))).astype(np.float32)
    own = rng.integers(2, size=n)
    job = np.full((n, SEQ_LEN), -1, np.int64)
    act = np.full((n, SEQ_LEN), PAD, np.int8)
    for i in range(n):
        L = rng.integers(3, 12)
        job[i, -L:] = rng.choice(np.flatnonzero(cluster == own[i]), L)
        act[i, -L:] = APPLY
    label = rng.integers(2, size=n)
    target = np.array([rng.choice(np.flatnonzero(cluster == (own[i] if label[i] else 1 - own[i]))) for i in range(n)])
    seqs = Sequences(np.arange(n), job, act, np.zeros((n, SEQ_LEN), np.int64))
    ex = ProxyExamples(seqs, target, label, np.ones(n))
    train, test = np.arange(n) < 900, np.arange(n) >= 900
    for arch in ("cnn", "transformer"):
        model = LearnedAggregator(arch, dim=DIM, hidden=16, epochs=8, batch_size=64).fit(ex.subset(train), emb)
        got = auc(label[test], model.predict_proba(seqs.take(np.flatnonzero(test)), target[test], emb))
        assert got > 0.9, (arch, got)


def test_flow_publishes_every_encoder_then_only_changed_members(small_log, tmp_path):
    from conftest import writable_copy

    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    with EventLog(writable_copy(small_log, tmp_path)) as log, open_store(spec, create=True) as store:
        first = run_activity_embeddings(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 18)), epochs=1)
        names = {"activity_embedding/mean-v1", "activity_embedding/decay-v1", "activity_embedding/learned-cnn-v2",
                 "activity_embedding/learned-transformer-v2", JOB_EMBEDDINGS}
        assert first["mode"] == "full" and set(store.manifest("activity").datasets) == names
        models = EmbeddingModels.load(tmp_path / "activity" / "models")
        ev = log.snapshot(int(datetime(2026, 1, 19, tzinfo=timezone.utc).timestamp() * 1e6)).events()
        seqs = member_sequences(action_log(ev, models.job_row), int(datetime(2026, 1, 19, tzinfo=timezone.utc)
                                                                     .timestamp() * 1e6))
        member = int(seqs.member_id[0])
        for name, agg in models.aggregators.items():
            stored = store.get_one(dataset_name(agg), str(member))
            np.testing.assert_allclose(stored, agg.transform(seqs.take(np.array([0])), models.job_emb)[0], rtol=1e-5,
                                       atol=1e-6)
        second = run_activity_embeddings(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 20)))
        assert second["mode"] == "incremental" and 0 < second["members"] < first["members"]
        assert store.current_version("activity_embedding/mean-v1") == 1  # nearline updates, no new version
        assert run_activity_embeddings(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 20)))["status"] \
            == "already done"
        with pytest.raises(ValueError, match="before the last run"):
            run_activity_embeddings(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 19)))
        # a member whose only actions aged out of the 28-day window loses their embedding
        much_later = run_activity_embeddings(FlowContext.create(log, store, spec, tmp_path, date(2026, 2, 24)))
        assert much_later["removed"] > 0 and store.get_one("activity_embedding/mean-v1", str(member)) is None

        live = RealtimeActivity(models, store).load(ev)
        assert live.update_member(member, {"action": "VIEW", "job_id": 1, "ts": 0}) is None
        now = int(datetime(2026, 1, 26).timestamp() * 1e6)
        vectors = live.update_member(member, {"action": "APPLY", "job_id": int(models.job_ids[5]), "ts": now})
        batch = models.embed(live.sequence(member, now + 1))
        for name in vectors:
            np.testing.assert_array_equal(vectors[name], batch[name][0])
            np.testing.assert_allclose(store.get_one(dataset_name(models.aggregators[name]), str(member)), vectors[name])
        with pytest.raises(ValueError, match="job_id"):
            live.update_member(member, {"action": "SAVE", "job_id": 10**9, "ts": now})


def test_evaluate_activity_contract(small_market, tmp_path):
    _, data, truth = small_market
    r = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "activity", "--data", str(data), "--truth",
                        str(truth), "--out", str(tmp_path / "e"), "--quick"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    variants = ["profile", "mean", "decay", "learned-cnn", "learned-transformer"]
    assert list(m) == ["auc", "ndcg@10", "auc_drift_members", "bytes_per_member", "auc_by_history"]
    assert list(m["auc_by_history"]) == ["0", "1-7", "8-32"]
    assert all(list(by) == variants for by in m["auc_by_history"].values())
    assert list(m["auc"]) == variants and list(m["ndcg@10"]) == variants
    assert list(m["auc_drift_members"]) == variants and list(m["bytes_per_member"]) == variants[1:]
    assert all(0.5 < v < 1 for v in m["auc"].values())
    assert m["bytes_per_member"]["mean"] == 3 * m["bytes_per_member"]["learned-cnn"]
