import numpy as np
import pytest
import torch

from jobmatch.intent.bert import (BertSize, FineTuneParams, PretrainParams, build_model, chunks, fine_tune, pretrain,
                                  user_vectors)
from jobmatch.intent.masking import IGNORE, mask_instance, session_pairs
from jobmatch.intent.tokenizer import ACTIONS, ActivityTokenizer

CORPUS = [
    "JOB_SEARCH registered nurse VIEW c_harborpoint_health staff nurse APPLY c_harborpoint_health staff nurse *",
    "VIEW c_northwind_labs software engineer SAVE c_northwind_labs backend engineer DISMISS c_apex_co line cook",
    "JOB_SEARCH data scientist VIEW c_summitpath_capital quantitative analyst APPLY c_summitpath_capital data analyst *",
    "JOB_SEARCH remote software engineer VIEW c_bluegate_systems full stack developer APPLY c_bluegate_systems "
    "full stack developer *",
] * 30


@pytest.fixture(scope="module")
def tok():
    return ActivityTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)


def test_action_tokens_are_whole_and_never_masked(tok):
    for a in ACTIONS:
        enc = tok.encode(f"{a} c_northwind_labs engineer")
        assert enc.ids[0] == tok.tok.token_to_id(a) and enc.ids[0] in tok.action_ids
    rng = np.random.default_rng(0)
    inst = session_pairs(tok, CORPUS[:2], 128)[0]
    for _ in range(200):
        ids, labels = mask_instance(inst, tok, rng, prob=0.5, selective=True)
        masked = labels != IGNORE
        assert not np.isin(inst.ids[masked], tok.action_ids).any()
    unselective = [mask_instance(inst, tok, rng, prob=0.5, selective=False)[1] for _ in range(50)]
    assert any(np.isin(inst.ids[lab != IGNORE], tok.action_ids).any() for lab in unselective)


def test_whole_word_masking_masks_every_sub_token():
    tok = ActivityTokenizer.train(CORPUS, vocab_size=80, min_frequency=1)  # small: words split into pieces
    rng = np.random.default_rng(1)
    inst = session_pairs(tok, CORPUS[:2], 128)[0]
    multi = [w for w in np.unique(inst.word_ids[inst.word_ids >= 0]) if (inst.word_ids == w).sum() > 1]
    assert multi, "the corpus should have words split into several sub-tokens"
    for _ in range(100):
        _, labels = mask_instance(inst, tok, rng, prob=0.3)
        for w in np.unique(inst.word_ids[labels != IGNORE]):
            assert (labels[inst.word_ids == w] != IGNORE).all()


def test_mlm_loss_falls_on_a_tiny_corpus(tok, tmp_path):
    instances = session_pairs(tok, CORPUS, 64)
    model = build_model(tok.vocab_size, BertSize(layers=2, hidden=32, heads=2, max_len=64))
    losses = pretrain(model, tok, instances, PretrainParams(epochs=4, batch_size=8, lr=3e-3, dupe_factor=2),
                      checkpoint=tmp_path / "ckpt")
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert (tmp_path / "ckpt" / "model.safetensors").exists()
    # resuming a finished run trains nothing more and keeps the history
    again = build_model(tok.vocab_size, BertSize(layers=2, hidden=32, heads=2, max_len=64))
    resumed = pretrain(again, tok, instances, PretrainParams(epochs=4, batch_size=8, lr=3e-3, dupe_factor=2),
                       checkpoint=tmp_path / "ckpt")
    assert resumed == losses
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_user_vector_is_4h_and_independent_of_padding(tok):
    size = BertSize(layers=4, hidden=32, heads=2, max_len=64)
    model = build_model(tok.vocab_size, size)
    docs = [CORPUS[:1], CORPUS[:6], CORPUS[2:3]]
    together = user_vectors(model, tok, docs, chunk_len=64)  # batched with others -> padded
    assert together.shape == (3, 4 * size.hidden)
    for i, d in enumerate(docs):
        alone = user_vectors(model, tok, [d], chunk_len=64)  # no padding at all for one chunk
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-4, atol=1e-5)
    assert len(chunks(tok, CORPUS[:40], 64, n_chunks=5)) == 5  # only the recent 5 chunks


def test_evaluate_intent_quick_contract(tmp_path, small_market):
    import json
    import subprocess
    import sys

    data = small_market[1]
    r = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "intent", "--data", str(data), "--out",
                        str(tmp_path / "e"), "--quick"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    variants = ["fasttext+e2e", "bert+e2e", "fasttext+slice", "bert_pt+slice", "bert_ft+slice", "popularity",
                "copy-context"]
    keys = ["p@1", "p@3", "p@5", "sim@1", "sim@3", "sim@5", "coverage"]
    assert list(m) == ["D1", "D2"]
    for d in m.values():
        assert list(d) == variants and all(list(v) == keys for v in d.values())
        assert all(0 <= v[k] <= 1 for v in d.values() for k in keys)
    # a learned suggester beats the base rate: fastText + Slice P@1 on D2 well above 1 / labels
    assert m["D2"]["fasttext+slice"]["p@1"] > 0.1
    report = (tmp_path / "e" / "report.md").read_text()
    assert "chosen on validation" in report and "copy-the-context" in report
    bad = subprocess.run([sys.executable, "-m", "jobmatch.cli", "evaluate", "intent", "--data", str(data), "--out",
                          str(tmp_path / "e"), "--size", "huge"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--size" in bad.stderr and "'huge'" in bad.stderr


def test_intent_flow_publishes_vectors_and_suggestions(tiny_log, tmp_path):
    import shutil
    import subprocess
    import sys
    from datetime import date

    from jobmatch.events import EventLog
    from jobmatch.flows.intent import GROUP, SUGGESTIONS, VECTORS, run_intent
    from jobmatch.flows.state import FlowContext
    from jobmatch.intent.config import IntentConfig
    from jobmatch.store import open_store

    db = tmp_path / "events.duckdb"
    shutil.copy(tiny_log, db)
    spec = f"sqlite:{tmp_path / 'store.sqlite'}"
    with EventLog(db) as log, open_store(spec, create=True) as store:
        first = run_intent(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 12)), top_k=5,
                           config=IntentConfig.quick())
        assert first["trained"] and first["members"] > 100 and store.manifest(GROUP).datasets == {
            VECTORS: 1, SUGGESTIONS: 1}
        second = run_intent(FlowContext.create(log, store, spec, tmp_path, date(2026, 1, 14)), top_k=5,
                            config=IntentConfig.quick())
        # incremental: only members with new events, written into the current versions
        assert not second["trained"] and second["mode"] == "incremental" and 0 < second["members"] < first["members"]
        assert store.current_version(VECTORS) == 1
        member = next(k for k in map(str, range(50)) if store.get_one(SUGGESTIONS, k) is not None)
        vector = store.get_one(VECTORS, member)
    assert vector.shape == (4 * 32,)
    out = subprocess.run([sys.executable, "-m", "jobmatch.cli", "suggest", member, "--store", spec],
                         capture_output=True, text=True)
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 5
    unknown = subprocess.run([sys.executable, "-m", "jobmatch.cli", "suggest", "999999", "--store", spec],
                             capture_output=True, text=True)
    assert unknown.returncode == 2 and "member 999999" in unknown.stderr and "Traceback" not in unknown.stderr


def test_fine_tuning_learns_a_known_answer(tok):
    # four kinds of seeker, each user's label is their kind: the fine-tuned model must recover it from the text
    kinds = CORPUS[:4]
    docs = [[kinds[u % 4], kinds[u % 4]] for u in range(48)]
    labels = [[u % 4] for u in range(48)]
    size = BertSize(layers=4, hidden=16, heads=2, max_len=32)
    model = build_model(tok.vocab_size, size, seed=0)
    tuned, head = fine_tune(model, tok, docs, labels, 4, size.max_len, FineTuneParams(epochs=6, n_chunks=2, lr=3e-3,
                                                                                     batch_size=8))
    with torch.no_grad():
        scores = head(torch.from_numpy(user_vectors(tuned, tok, docs, size.max_len, n_chunks=2)))
    accuracy = (scores.argmax(1).numpy() == np.arange(48) % 4).mean()
    assert accuracy > 0.9  # the base rate of any one kind is 0.25
    assert not torch.equal(next(tuned.parameters()), next(model.parameters()))  # BERT itself was updated
