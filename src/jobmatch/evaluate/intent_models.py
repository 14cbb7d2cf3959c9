"""The user-intent models a downstream evaluation (002 §4.2-4.4) trains for itself, leak-free.

Given the activity documents *before the evaluation's cutoff*, fit what the intent flow deploys and the seed's
downstream tasks consume frozen: fastText (skip-gram) user vectors, BERT pre-trained then fine-tuned on D2 (the
BERT_FT user vector), and a Slice per vector kind predicting the entities (queries, applied titles) of interest.
Nothing after the cutoff reaches a model; vectors and suggestions are then computed for any documents (as of the
cutoff, or as of an earlier snapshot).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from transformers import BertForMaskedLM

from jobmatch.events import EventLog, MemberDocs, Snapshot
from jobmatch.flows.intent import training_sample
from jobmatch.flows.state import step_reporter
from jobmatch.intent.bert import PretrainParams, build_model, fine_tune, pretrain, user_vectors
from jobmatch.intent.config import IntentConfig
from jobmatch.intent.datasets import fasttext_model, fasttext_user_vectors
from jobmatch.intent.masking import session_pairs
from jobmatch.intent.tokenizer import ActivityTokenizer
from jobmatch.rank.model import torch_threads
from jobmatch.xmc.slice import Slice, SliceParams

VECTOR_KINDS = ("fasttext", "bert_ft")
TORCH_THREADS = 1  # these BERTs are small: on a shared 2-core machine one thread trains them fastest
DAY_US = 86_400_000_000
TEST_DAYS = 7


def last_week(snap: Snapshot, min_days: int = 14) -> tuple[int, int, int]:
    """(first event, start of the test week, end of the log) in microseconds: the test week is the last 7 days of
    the log's span, starting on the same time of day as the first event."""
    span = snap.time_range()
    if span is None:
        raise ValueError("data: the event log holds no events")
    t_start, t_end = span[0], span[1] + 1
    n_days = (t_end - t_start) // DAY_US + 1
    if n_days < min_days:
        raise ValueError(f"data: {n_days} days of events; the evaluation needs at least {min_days}")
    return t_start, t_start + (n_days - TEST_DAYS) * DAY_US, t_end


def models_before_test_week(log: EventLog, config: IntentConfig, seed: int, say: Callable[[str], None]
                            ) -> tuple[Snapshot, tuple[int, int, int], list[MemberDocs], IntentModels]:
    """(the log's snapshot, `last_week` of it, the documents before the test week, the intent models fit on them)."""
    snap = log.snapshot()
    weeks = last_week(snap)
    say("documents before the test week")
    docs = log.snapshot(weeks[1]).documents()
    return snap, weeks, docs, IntentModels.fit(docs, config, seed, say)


@dataclass
class IntentModels:
    fasttext: object  # gensim FastText
    tokenizer: ActivityTokenizer
    bert: BertForMaskedLM
    chunk_len: int
    label_names: list[str]
    slices: dict[str, Slice]

    @classmethod
    def fit(cls, docs: list[MemberDocs], config: IntentConfig, seed: int = 0,
            say: Callable[[str], None] | None = None) -> IntentModels:
        """Train on `docs` (a snapshot's documents: only what happened before its cutoff)."""
        with torch_threads(TORCH_THREADS):
            return cls._fit(docs, config, seed, say or (lambda _m: None))

    @classmethod
    def _fit(cls, docs: list[MemberDocs], config: IntentConfig, seed: int, say: Callable[[str], None]
             ) -> IntentModels:
        docs, xml, has = training_sample(docs, config, seed)
        corpus = [s for d in docs for s in d.sessions]
        size = config.bert
        say("intent models: fastText")
        ft = fasttext_model(corpus, dim=config.fasttext_dim, epochs=config.fasttext_epochs, seed=seed)
        say("intent models: tokenizer")
        tok = ActivityTokenizer.train(corpus, vocab_size=config.vocab)
        bert = build_model(tok.vocab_size, size, seed)
        instances = [inst for d in docs for inst in session_pairs(tok, d.sessions, size.max_len)]

        def progress(stage: str) -> Callable[[int, int, float], None]:
            return step_reporter(say, f"intent models: {stage}")

        pretrain(bert, tok, instances, PretrainParams(epochs=config.pretrain_epochs, dupe_factor=config.dupe_factor,
                                                      seed=seed), progress=progress("BERT pre-training"))
        context, labels = [xml.context[i] for i in has], [xml.labels_d2[i] for i in has]
        tuned, _ = fine_tune(bert, tok, context, labels, len(xml.label_names), size.max_len, config.finetune(seed),
                             progress=progress("BERT fine-tuning"))
        say("intent models: Slice")
        params = SliceParams(shortlist=config.shortlist, ef_search=config.ef_search, seed=seed)
        train_vectors = {"fasttext": fasttext_user_vectors(ft, context),
                         "bert_ft": user_vectors(tuned, tok, context, size.max_len)}
        slices = {kind: Slice(params).fit(train_vectors[kind], labels, len(xml.label_names)) for kind in VECTOR_KINDS}
        return cls(ft, tok, tuned, size.max_len, xml.label_names, slices)

    def vectors(self, docs: list[MemberDocs]) -> dict[str, np.ndarray]:
        """Each member's fastText and BERT_FT user vector from their documents."""
        with torch_threads(TORCH_THREADS):
            return self._vectors([d.sessions for d in docs])

    def _vectors(self, sessions: list[list[str]]) -> dict[str, np.ndarray]:
        if not sessions:
            return {"fasttext": np.zeros((0, self.fasttext.vector_size), np.float32),
                    "bert_ft": np.zeros((0, 4 * self.bert.config.hidden_size), np.float32)}
        return {"fasttext": fasttext_user_vectors(self.fasttext, sessions),
                "bert_ft": user_vectors(self.bert, self.tokenizer, sessions, self.chunk_len)}

    def suggest(self, kind: str, vectors: np.ndarray, k: int) -> tuple[list[list[str]], np.ndarray]:
        """The top-k predicted entities per member from the Slice of vector `kind`, and their scores."""
        if vectors.shape[0] == 0:
            return [], np.zeros((0, k))
        labels, scores = self.slices[kind].predict(vectors, k)
        return [[self.label_names[j] for j in row if j >= 0] for row in labels], scores


__all__ = ["IntentModels", "VECTOR_KINDS", "last_week"]
