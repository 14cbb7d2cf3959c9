"""Occupational taxonomies: a small built-in one, and O*NET read from a configured path."""

from jobmatch.taxonomy.base import Occupation, Taxonomy
from jobmatch.taxonomy.builtin import builtin_taxonomy
from jobmatch.taxonomy.onet import load_onet

__all__ = ["Occupation", "Taxonomy", "builtin_taxonomy", "load_onet", "resolve_taxonomy"]


def resolve_taxonomy(spec: str) -> Taxonomy:
    """`builtin` or `onet:PATH` (the CLI's --taxonomy)."""
    if spec == "builtin":
        return builtin_taxonomy()
    if spec.startswith("onet:") and len(spec) > 5:
        return load_onet(spec[5:])
    raise ValueError(f"taxonomy: expected 'builtin' or 'onet:PATH', got {spec!r}")
