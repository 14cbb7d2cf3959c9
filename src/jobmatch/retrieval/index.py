"""An inverted index over job postings (tantivy) and clause-based candidate selection (002 §4.4, §5.5).

Fields: `title` (words, positions kept for phrases), `occupation`, `skills` (one exact term per skill),
`location` (exact), `remote` (boolean), `posted` and `expires` (µs, for "open at" filters), `job_id` (stored).
Text values are lower-cased on both sides, so a clause matches regardless of case.

A *clause* is a conjunction of conditions (a title phrase, an exact occupation / skill / location, remote); a
retrieval query is the disjunction of weighted clauses, each a constant-score query, so a job's score is exactly
the sum of the weights of the clauses it matches — explainable, and the weights are a linear model's
(`retrieval.clauses.ClauseWeights`). The index is built on one writer thread and committed once.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import tantivy
from tantivy import FieldType, Occur, Query

FIELDS = ("title", "occupation", "skills", "location", "remote")
_WORD = re.compile(r"[a-z0-9]+")  # what tantivy's default tokenizer keeps of ASCII text, lower-cased


def title_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True)
class Clause:
    """Conditions that must all hold: (field, value) with field one of FIELDS; `title` is a phrase of words,
    `remote` the string 'true' or 'false', the others exact values. `kind` names the clause's family (profile
    title, predicted skill, ...): weights are learned per kind."""

    kind: str
    conditions: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        if not self.conditions:
            raise ValueError(f"clause {self.kind!r}: no conditions")
        for field, value in self.conditions:
            if field not in FIELDS:
                raise ValueError(f"clause {self.kind!r}: field must be one of {', '.join(FIELDS)}, got {field!r}")
            if field == "remote" and value not in ("true", "false"):
                raise ValueError(f"clause {self.kind!r}: remote must be 'true' or 'false', got {value!r}")
            if field == "title" and not title_words(value):
                raise ValueError(f"clause {self.kind!r}: title {value!r} has no words")


class JobIndex:
    """`JobIndex.build(jobs, path=None)` (in memory without a path), `JobIndex.open(path)`, `search(...)`."""

    def __init__(self, index: tantivy.Index):
        self._index = index
        self._schema = index.schema
        self._searcher = index.searcher()

    @staticmethod
    def _schema_builder() -> tantivy.Schema:
        b = tantivy.SchemaBuilder()
        b.add_unsigned_field("job_id", stored=True, indexed=True, fast=True)
        b.add_text_field("title", tokenizer_name="default")
        for field in ("occupation", "skills", "location"):
            b.add_text_field(field, tokenizer_name="raw")
        b.add_boolean_field("remote", indexed=True)
        b.add_integer_field("posted", indexed=True, fast=True)
        b.add_integer_field("expires", indexed=True, fast=True)
        return b.build()

    @classmethod
    def build(cls, jobs: pa.Table, path: str | Path | None = None) -> JobIndex:
        """Index `jobs` (job_id, title, occupation, skills, location, remote, posted_at, expires_at); with `path`, in
        a new folder there (written beside it, then renamed into place)."""
        ids = jobs["job_id"].to_numpy()
        if ids.size and ids.min() < 0:
            raise ValueError(f"job_id: the index stores unsigned ids, got {ids.min()}")
        target = tmp = None
        if path is not None:
            target = Path(path)
            if target.exists():
                raise FileExistsError(f"path: {target} exists; a job index is written once, to a new folder")
            tmp = target.with_name(target.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        index = tantivy.Index(cls._schema_builder(), path=None if tmp is None else str(tmp))
        writer = index.writer(heap_size=50_000_000, num_threads=1)
        posted = jobs["posted_at"].cast(pa.int64()).to_numpy()
        expires = jobs["expires_at"].cast(pa.int64()).to_numpy()
        for i, (job_id, title, occ, skills, loc, remote) in enumerate(zip(
                ids.tolist(), *(jobs[c].to_pylist() for c in ("title", "occupation", "skills", "location", "remote")))):
            doc = tantivy.Document()
            doc.add_unsigned("job_id", job_id)
            doc.add_text("title", title)
            doc.add_text("occupation", occ.lower())
            for s in skills or ():
                doc.add_text("skills", s.lower())
            doc.add_text("location", loc.lower())
            doc.add_boolean("remote", bool(remote))
            doc.add_integer("posted", int(posted[i]))
            doc.add_integer("expires", int(expires[i]))
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        if tmp is not None:
            tmp.rename(target)
            index = tantivy.Index.open(str(target))
        index.reload()
        return cls(index)

    @classmethod
    def open(cls, path: str | Path) -> JobIndex:
        if not Path(path).is_dir() or not tantivy.Index.exists(str(path)):
            raise FileNotFoundError(f"path: no job index at {str(path)!r}")
        return cls(tantivy.Index.open(str(path)))

    @property
    def size(self) -> int:
        return self._searcher.num_docs

    def _condition(self, field: str, value: str) -> Query:
        if field == "remote":
            return Query.term_query(self._schema, "remote", value == "true")
        if field == "title":
            words = title_words(value)
            return Query.term_query(self._schema, "title", words[0]) if len(words) == 1 else \
                Query.phrase_query(self._schema, "title", words)
        return Query.term_query(self._schema, field, value.lower())

    def clause_query(self, clause: Clause) -> Query:
        parts = [self._condition(f, v) for f, v in clause.conditions]
        return parts[0] if len(parts) == 1 else Query.boolean_query([(Occur.Must, p) for p in parts])

    def search(self, clauses: Sequence[Clause], weights: dict[str, float] | None = None, k: int | None = None,
               open_at_us: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The jobs matching at least one clause of positive weight (weight per kind; 1 without `weights`), best
        first: (job ids, scores = sums of the matched clauses' weights). `k` None: every match. With
        `open_at_us`, only jobs posted before and expiring after that time."""
        weighted = [(c, 1.0 if weights is None else float(weights.get(c.kind, 0.0))) for c in clauses]
        should = [(Occur.Should, Query.const_score_query(self.clause_query(c), w)) for c, w in weighted if w > 0]
        if not should:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = Query.boolean_query(should)
        if open_at_us is not None:
            t = int(open_at_us)
            is_open = Query.boolean_query([
                (Occur.Must, Query.range_query(self._schema, "posted", FieldType.Integer, upper_bound=t,
                                               include_upper=False)),
                (Occur.Must, Query.range_query(self._schema, "expires", FieldType.Integer, lower_bound=t,
                                               include_lower=False))])
            query = Query.boolean_query([(Occur.Must, Query.const_score_query(is_open, 0.0)), (Occur.Must, query)])
        limit = self.size if k is None else int(k)
        if limit < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        hits = self._searcher.search(query, limit, count=False).hits
        ids = np.array(self._searcher.fast_field_values("job_id", [a for _, a in hits]), np.int64) if hits else \
            np.zeros(0, np.int64)
        scores = np.array([s for s, _ in hits], np.float32)
        order = np.lexsort((ids, -scores))  # equal scores by job id: a stable answer whatever the segment layout
        return ids[order], scores[order]

    def kind_counts(self, clauses: Sequence[Clause], kinds: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Every job matching some clause of `kinds`, and per kind how many of its clauses it matches:
        (job ids, counts (n_jobs, len(kinds))) — the features of the clause-weight model."""
        found: dict[int, np.ndarray] = {}
        for col, kind in enumerate(kinds):
            ids, counts = self.search([c for c in clauses if c.kind == kind])
            for j, n in zip(ids.tolist(), counts.tolist()):
                found.setdefault(j, np.zeros(len(kinds), np.float32))[col] = n
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, len(kinds)), np.float32)
        ids = np.array(sorted(found), np.int64)
        return ids, np.stack([found[j] for j in ids.tolist()])


__all__ = ["Clause", "FIELDS", "JobIndex", "title_words"]
