"""Nearline: the event queue the API publishes to, and the worker that applies queued events to the event log,
the member activity embeddings and the hirer feedback counts (see `queue` and `worker`)."""
