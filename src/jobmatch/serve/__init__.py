"""The HTTP API (`create_app`), its API keys, and the `jobmatch serve` / `jobmatch keys` commands."""
