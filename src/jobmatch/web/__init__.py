"""The explorer web pages under /ui/, served by `jobmatch serve` on the same app and keys as the /v1 API."""
