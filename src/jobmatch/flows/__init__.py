"""Scheduled flows that tie the parts together."""
