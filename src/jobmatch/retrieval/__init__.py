"""Candidate selection over job postings (002 §4.4): a tantivy inverted index and weighted boolean clauses built
from profiles, predicted entities and similar seekers."""

from jobmatch.retrieval.clauses import (PROFILE_KINDS, ClauseWeights, entity_clauses, kinds_of, occupation_clauses,
                                        profile_clauses)
from jobmatch.retrieval.index import FIELDS, Clause, JobIndex, title_words

__all__ = ["Clause", "ClauseWeights", "FIELDS", "JobIndex", "PROFILE_KINDS", "entity_clauses", "kinds_of",
           "occupation_clauses", "profile_clauses", "title_words"]
