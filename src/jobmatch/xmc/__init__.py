"""Extreme multi-label classification: Slice and the XML metrics."""
