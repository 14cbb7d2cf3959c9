"""The daily user-intent flow (002 §4.5): user-activity vectors and query suggestions for every active member.

Documents come from the event log's sessionization as of the run's cutoff. The first run trains the tokenizer,
pre-trains BERT, fine-tunes it on D2 and fits Slice on the fine-tuned vectors (BERT_FT + Slice, 002's deployed
choice) — on a sample of `max_members` members when the config sets one — and saves them under HOME/intent/models;
later runs load them. The first run publishes `intent/user_vector` (float32, 4 x hidden) and `intent/suggestions`
(the top-K suggested queries) for every member active in the last 28 days as one manifest of group `intent`;
later runs are incremental: members with new events are recomputed and members who fell out of the 28 days are
removed, with nearline updates of the current versions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import BertForMaskedLM
from transformers.utils import logging as hf_logging

from jobmatch.events import MemberDocs
from jobmatch.flows.state import DAY_US, FlowContext, NotEnoughData, Say, step_reporter
from jobmatch.intent.bert import PretrainParams, build_model, fine_tune, pretrain, user_vectors
from jobmatch.intent.config import IntentConfig
from jobmatch.intent.datasets import XMLData, xml_datasets
from jobmatch.intent.masking import session_pairs
from jobmatch.intent.tokenizer import ActivityTokenizer
from jobmatch.xmc.slice import Slice, SliceParams

# the flow reports its own progress; transformers' bars ("Loading weights", "Writing model shards") would
# interleave with it
hf_logging.disable_progress_bar()

GROUP, VECTORS, SUGGESTIONS = "intent", "intent/user_vector", "intent/suggestions"
ACTIVE_DAYS = 28
MIN_MEMBERS = 20


def training_sample(docs: list[MemberDocs], cfg: IntentConfig, seed: int) -> tuple[list[MemberDocs], XMLData,
                                                                                   list[int]]:
    """The members the models train on (a sample of `max_members`), their D1/D2 datasets, and the rows with D2
    labels; NotEnoughData when too few members could teach the models anything."""
    if cfg.max_members is not None and len(docs) > cfg.max_members:
        pick = np.random.default_rng(seed).choice(len(docs), cfg.max_members, replace=False)
        docs = [docs[i] for i in np.sort(pick)]
    xml = xml_datasets(docs, top_k=cfg.labels)
    has = [i for i, ls in enumerate(xml.labels_d2) if ls]
    if len(has) < MIN_MEMBERS or len(xml.label_names) < 2:
        raise NotEnoughData(f"intent: {len(has)} members with at least two sessions and a search or an application "
                            f"({len(xml.label_names)} distinct queries/titles); the models need {MIN_MEMBERS}")
    return docs, xml, has


def _train(docs: list[MemberDocs], models: Path, cfg: IntentConfig, seed: int, say: Say) -> None:
    docs, xml, has = training_sample(docs, cfg, seed)
    size = cfg.bert
    say("intent: tokenizer")
    tok = ActivityTokenizer.train([s for d in docs for s in d.sessions], vocab_size=cfg.vocab)
    bert = build_model(tok.vocab_size, size, seed)
    say("intent: BERT pre-training")
    pretrain(bert, tok, [i for d in docs for i in session_pairs(tok, d.sessions, size.max_len)],
             PretrainParams(epochs=cfg.pretrain_epochs, dupe_factor=cfg.dupe_factor, seed=seed),
             progress=step_reporter(say, "intent: BERT pre-training"))
    say("intent: fine-tuning")
    tuned, _ = fine_tune(bert, tok, [xml.context[i] for i in has], [xml.labels_d2[i] for i in has],
                         len(xml.label_names), size.max_len, cfg.finetune(seed),
                         progress=step_reporter(say, "intent: fine-tuning"))
    say("intent: Slice")
    vectors = user_vectors(tuned, tok, [xml.context[i] for i in has], size.max_len)
    slice_model = Slice(SliceParams(shortlist=cfg.shortlist, ef_search=cfg.ef_search, seed=seed)).fit(
        vectors, [xml.labels_d2[i] for i in has], len(xml.label_names))
    models.mkdir(parents=True, exist_ok=True)
    tok.save(models / "tokenizer.json")
    tuned.save_pretrained(models / "bert", safe_serialization=True)
    slice_model.save(models / "slice")
    (models / "labels.json").write_text(json.dumps({"names": xml.label_names, "chunk_len": size.max_len,
                                                   "document": cfg.document}))


def run_intent(ctx: FlowContext, top_k: int = 10, config: IntentConfig | None = None, seed: int = 0) -> dict:
    flow = ctx.state("intent")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    state, cutoff = flow.data, ctx.cutoff_us
    snap = ctx.snapshot()
    models = flow.home / "models"
    trained = not (models / "labels.json").exists()
    since = state.get("cutoff")
    cfg = config or IntentConfig.cpu()
    if trained:
        ctx.say("intent: activity documents")
        _train(snap.documents(content=cfg.document), models, cfg, seed, ctx.say)
    active_from = cutoff - ACTIVE_DAYS * DAY_US
    if since and not trained:
        changed = snap.members_with_events(since_us=since)
        gone = np.setdiff1d(snap.members_with_events(since_us=since - ACTIVE_DAYS * DAY_US, until_us=active_from),
                            snap.members_with_events(since_us=active_from))
    else:
        changed, gone = snap.members_with_events(since_us=active_from), np.zeros(0, np.int64)
    ctx.say(f"intent: user vectors of {changed.size:,} members")
    meta = json.loads((models / "labels.json").read_text())
    # the documents the models were trained on, whatever today's config says (homes from before the setting
    # have the default)
    content = meta.get("document", IntentConfig().document)
    members = snap.documents(changed.tolist(), content=content) if changed.size else []
    tok = ActivityTokenizer.load(models / "tokenizer.json")
    bert = BertForMaskedLM.from_pretrained(models / "bert")
    slice_model = Slice.load(models / "slice")
    keys = [str(d.member_id) for d in members]
    vectors = user_vectors(bert, tok, [d.sessions for d in members], meta["chunk_len"]) if members else \
        np.zeros((0, 1), np.float32)
    suggestions = {}
    if members:
        labels, scores = slice_model.predict(vectors, top_k)
        suggestions = {k: [{"query": meta["names"][int(lab)], "score": round(float(s), 4)} for lab, s in zip(ls, ss)]
                       for k, ls, ss in zip(keys, labels, scores)}
    removed = [str(m) for m in gone.tolist()]
    if since and not trained:
        ctx.store.update(VECTORS, dict(zip(keys, vectors)), delete=removed)
        ctx.store.update(SUGGESTIONS, suggestions, delete=removed)
        manifest = ctx.store.manifest(GROUP)
    else:
        manifest = ctx.store.publish(GROUP, {VECTORS: dict(zip(keys, vectors)), SUGGESTIONS: suggestions},
                                     meta={"as_of": ctx.day, "labels": len(meta["names"])})
    state["cutoff"] = cutoff
    return flow.finish(ctx.day, {"as_of": ctx.day, "status": "ok", "trained": trained, "members": len(keys),
                                 "removed": len(removed), "mode": "incremental" if since and not trained else "full",
                                 "version": manifest.version if manifest else None})


__all__ = ["GROUP", "SUGGESTIONS", "VECTORS", "run_intent"]
