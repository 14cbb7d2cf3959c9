"""The event log as Parquet (`jobmatch export`, and the inputs the flows hand a distributed engine).

One file per stream (events, feedback, seeker and hirer impressions: the rows before the snapshot's cutoff, and
since `since_us` when given) and per entity table, with the log's schemas, so Spark (or any Parquet reader) sees
what the flows' snapshot reads return.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from jobmatch.events import Snapshot
from jobmatch.schema import ENTITY_KINDS, STREAM_KINDS

EXPORT_KINDS = STREAM_KINDS + ENTITY_KINDS


def export_snapshot(snap: Snapshot, out: str | Path, kinds: Sequence[str] = EXPORT_KINDS,
                    since_us: int | None = None) -> dict[str, tuple[Path, int]]:
    """Write `kinds` of the snapshot to OUT/<kind>.parquet (written then renamed: a reader never sees half a file);
    returns each kind's path and number of rows."""
    unknown = [k for k in kinds if k not in EXPORT_KINDS]
    if unknown:
        raise ValueError(f"kinds: unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(EXPORT_KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind in kinds:
        table = snap.stream(kind, since_us=since_us) if kind in STREAM_KINDS else snap.entities(kind)
        path = out / f"{kind}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
        tmp.replace(path)
        paths[kind] = (path, table.num_rows)
    return paths
