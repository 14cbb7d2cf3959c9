"""Hirer preferences learned online (003): profile terms, per-project term weights, features, ranker."""
