"""The daily user-intent flow (002 §4.5): user-activity vectors and query suggestions for every active member.

The first run trains the tokenizer, pre-trains BERT, fine-tunes it on D2 and fits Slice on the fine-tuned vectors
(BERT_FT + Slice, 002's deployed choice), and saves them under HOME/intent/models; later runs load them. Each run
publishes two datasets as new versions: `intent/user_vector` (float32, 4 x hidden) and `intent/suggestions`
(the top-K suggested queries per member).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from transformers import BertForMaskedLM

from jobmatch.flows.state import FlowState, day_end_us
from jobmatch.intent.bert import PretrainParams, build_model, fine_tune, pretrain, user_vectors
from jobmatch.intent.config import IntentConfig
from jobmatch.intent.datasets import member_documents, xml_datasets
from jobmatch.intent.masking import session_pairs
from jobmatch.intent.tokenizer import ActivityTokenizer
from jobmatch.store import FeatureStore
from jobmatch.xmc.slice import Slice, SliceParams

VECTORS, SUGGESTIONS = "intent/user_vector", "intent/suggestions"
ACTIVE_DAYS = 28
DAY_US = 86_400_000_000


def _train(docs, models: Path, cfg: IntentConfig, seed: int) -> None:
    xml = xml_datasets(docs, top_k=cfg.labels)
    size = cfg.bert
    corpus = [s for d in docs for s in d.sessions]
    tok = ActivityTokenizer.train(corpus, vocab_size=cfg.vocab)
    bert = build_model(tok.vocab_size, size, seed)
    pretrain(bert, tok, [i for d in docs for i in session_pairs(tok, d.sessions, size.max_len)],
             PretrainParams(epochs=cfg.pretrain_epochs, dupe_factor=cfg.dupe_factor, seed=seed))
    has = [i for i, ls in enumerate(xml.labels_d2) if ls]
    tuned, _ = fine_tune(bert, tok, [xml.context[i] for i in has], [xml.labels_d2[i] for i in has],
                         len(xml.label_names), size.max_len, cfg.finetune(seed))
    vectors = user_vectors(tuned, tok, [xml.context[i] for i in has], size.max_len)
    slice_model = Slice(SliceParams(shortlist=cfg.shortlist, ef_search=cfg.ef_search, seed=seed)).fit(
        vectors, [xml.labels_d2[i] for i in has], len(xml.label_names))
    models.mkdir(parents=True, exist_ok=True)
    tok.save(models / "tokenizer.json")
    tuned.save_pretrained(models / "bert", safe_serialization=True)
    slice_model.save(models / "slice")
    (models / "labels.json").write_text(json.dumps({"names": xml.label_names, "chunk_len": size.max_len}))


def run_intent(data: str | Path, home: str | Path, store: FeatureStore, as_of: datetime, top_k: int = 10,
               config: IntentConfig | None = None, seed: int = 0) -> dict:
    data, intent_home = Path(data), Path(home) / "intent"
    flow = FlowState(intent_home)
    as_of, cutoff = day_end_us(as_of)
    day = flow.check_after(as_of)
    t = {n: pq.read_table(data / f"{n}.parquet") for n in ("events", "jobs", "companies")}
    events = t["events"].filter(pc.less(t["events"]["ts"].cast(pa.int64()), cutoff))
    docs = member_documents(events, t["jobs"], t["companies"])
    models = intent_home / "models"
    trained = not (models / "labels.json").exists()
    if trained:
        _train(docs, models, config or IntentConfig.cpu(), seed)
    tok = ActivityTokenizer.load(models / "tokenizer.json")
    bert = BertForMaskedLM.from_pretrained(models / "bert")
    slice_model = Slice.load(models / "slice")
    meta = json.loads((models / "labels.json").read_text())
    recent = events.filter(pc.greater_equal(events["ts"].cast(pa.int64()), cutoff - ACTIVE_DAYS * DAY_US))
    active = set(pc.unique(recent["member_id"]).to_pylist())
    members = [d for d in docs if d.member_id in active]
    vectors = user_vectors(bert, tok, [d.sessions for d in members], meta["chunk_len"])
    labels, scores = slice_model.predict(vectors, top_k)
    keys = [str(d.member_id) for d in members]
    suggestions = {k: [{"query": meta["names"][int(l)], "score": round(float(s), 4)} for l, s in zip(ls, ss)]
                   for k, ls, ss in zip(keys, labels, scores)}
    result = {"as_of": day, "members": len(keys), "trained": trained,
              "versions": {VECTORS: store.push(VECTORS, dict(zip(keys, vectors))),
                           SUGGESTIONS: store.push(SUGGESTIONS, suggestions)}}
    flow.data["last_as_of"] = day
    flow.data.setdefault("runs", []).append({k: v for k, v in result.items() if k != "versions"})
    flow.save()
    return result


__all__ = ["SUGGESTIONS", "VECTORS", "run_intent"]
