"""Generalized additive mixed models (GAME): fixed effect + per-entity random effects by coordinate descent.

model (the estimator), solvers (batched Newton, the scipy reference), config (game.toml), job (`jobmatch game
train` / `game score` on Parquet), synthetic (data from known models), serving (online QA scoring).
"""
