"""Loading a folder of batches (a simulator's output, or a company's export) through validated ingest.

The simulator is just one producer: its files take exactly the path a user's files take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobmatch.events.ingest import IngestError, TimeBounds, folder_files, read_batch
from jobmatch.events.log import EventLog
from jobmatch.schema import ENTITY_KINDS, STREAM_KINDS


def load_entities(log: EventLog, folder: Path, bounds: TimeBounds | None = None) -> dict[str, int]:
    """Validate and upsert every entity file of a folder; a batch with any bad row is refused whole."""
    files = folder_files(folder, ENTITY_KINDS)
    if not files:
        raise IngestError(folder, problem="no entity files (companies, jobs, members, projects as .parquet or "
                                          ".jsonl)")
    batches = {}
    for kind, path in files.items():  # validate everything before writing anything
        batch = read_batch(path, kind, bounds)
        if batch.errors:
            raise IngestError(path, batch.errors)
        batches[kind] = batch
    return {kind: log.put_entities(kind, b.rows, source=str(files[kind])) for kind, b in batches.items()}


def ingest_folder(log: EventLog, folder: Path, bounds: TimeBounds | None = None,
                  say: Callable[[str], None] | None = None) -> dict[str, int]:
    """Entities, then every stream kind present (events, feedback, impressions, hirer impressions)."""
    say = say or (lambda _m: None)
    say("load entities")
    counts = load_entities(log, folder, bounds)
    for kind, path in folder_files(folder, STREAM_KINDS).items():
        say(f"ingest {kind}")
        batch = read_batch(path, kind, bounds)
        if batch.errors:
            raise IngestError(path, batch.errors)
        counts[kind] = log.append(kind, batch.rows, source=str(path)).inserted
    return counts
