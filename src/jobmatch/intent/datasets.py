"""XML datasets of 002 §5.1 from activity documents, and the fastText baseline.

Each member's sessions come from the event log as activity documents (002 Figure 2) with their entities: the
search queries and the titles of applied jobs (`jobmatch.events.MemberDocs`). Context = the first 80% of a
member's sessions. D1 labels = entities of the held-out last 20%;
D2 labels = entities of all sessions. The label space is the top-K most frequent entities.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from jobmatch.events.documents import MemberDocs


@dataclass
class XMLData:
    member_id: np.ndarray
    context: list[list[str]]  # sessions used to build the user vector
    labels_d1: list[list[int]]
    labels_d2: list[list[int]]
    label_names: list[str]


def xml_datasets(docs: list[MemberDocs], top_k: int = 1000, context_share: float = 0.8,
                 label_members: Collection[int] | None = None) -> XMLData:
    """Members with at least two sessions; labels limited to the top-K entities by member count, counted over
    `label_members` only when given (an evaluation's training members: test members must not shape the labels)."""
    usable = [d for d in docs if len(d.sessions) >= 2]
    counted = usable if label_members is None else [d for d in usable if d.member_id in label_members]
    counts = Counter(e for d in counted for e in {e for s in d.entities for e in s})
    names = [e for e, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]]
    index = {e: i for i, e in enumerate(names)}
    members, context, d1, d2 = [], [], [], []
    for d in usable:
        cut = min(len(d.sessions) - 1, max(1, int(round(context_share * len(d.sessions)))))
        target = {index[e] for s in d.entities[cut:] for e in s if e in index}
        everything = {index[e] for s in d.entities for e in s if e in index}
        members.append(d.member_id)
        context.append(d.sessions[:cut])
        d1.append(sorted(target))
        d2.append(sorted(everything))
    return XMLData(np.array(members), context, d1, d2, names)


def fasttext_model(corpus: list[str], dim: int = 100, epochs: int = 5, seed: int = 0):
    """gensim fastText skip-gram on the session texts (002: skip-gram, window 5)."""
    from gensim.models import FastText

    sentences = [s.split() for s in corpus]
    return FastText(sentences=sentences, vector_size=dim, window=5, min_count=2, sg=1, epochs=epochs, seed=seed,
                    workers=1)


def mean_word_vector(model, text: str) -> np.ndarray:
    words = text.split()
    return np.mean([model.wv[w] for w in words], axis=0) if words else np.zeros(model.vector_size, np.float32)


def fasttext_user_vectors(model, contexts: list[list[str]]) -> np.ndarray:
    """Session vector = mean word vector; user vector = mean over the sessions."""
    return np.stack([np.mean([mean_word_vector(model, s) for s in sessions], axis=0) for sessions in contexts]
                    ).astype(np.float32)


def entity_vectors(model, names: list[str]) -> np.ndarray:
    """Entity (phrase) vectors for semantic similarity@k: the mean of the phrase's word vectors."""
    return np.stack([mean_word_vector(model, n) for n in names]).astype(np.float32)


__all__ = ["XMLData", "entity_vectors", "fasttext_model", "fasttext_user_vectors", "xml_datasets"]
