"""Approximate nearest neighbours over user vectors (002 §4.3): a sharded HNSW index and audience expansion."""

from jobmatch.ann.expansion import ExpansionParams, expand, query_vectors
from jobmatch.ann.index import AnnParams, ShardedIndex, StaleIndexError

__all__ = ["AnnParams", "ExpansionParams", "ShardedIndex", "StaleIndexError", "expand", "query_vectors"]
