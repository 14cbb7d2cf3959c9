"""Generalized additive mixed models (GAME): fixed effect + per-entity random effects by coordinate descent."""
