"""Saved models: a JSON file naming the class and format version, beside arrays (npz/JSON, never pickle)."""

from __future__ import annotations

import json
from pathlib import Path


def write_meta(path: Path, cls: type, version: int, **fields: object) -> None:
    path.write_text(json.dumps({"class": cls.__name__, "version": version, **fields}, indent=2) + "\n")


def read_meta(path: Path, cls: type, version: int) -> dict:
    """The metadata at `path`, after checking it was written by `cls` in format `version`."""
    meta = json.loads(path.read_text())
    if meta.get("class") != cls.__name__ or meta.get("version") != version:
        raise ValueError(f"{path.parent}: expected a {cls.__name__} v{version} model, found "
                         f"{meta.get('class')} v{meta.get('version')}")
    return meta
