"""Batch engines for the flows: `local` (in-process, the default) and `spark` (PySpark), behind one interface.

`Engine` is what a flow may ask of an engine: SQL over Parquet files and a function mapped over a table's
partitions. The local engine runs both in this process (DuckDB, one call over the whole table), so the flows' code
path under it is today's; the Spark engine runs them on a cluster (or `local[*]`). The Spark engine also exposes
its session and the aggregation primitives the GAME trainer builds on (`jobmatch.game.spark`). PySpark is imported
only when a Spark engine is opened, so the default install does not need it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from jobmatch.engine.spark import SparkEngine

ENGINES = ("local", "spark")
Source = Union[str, Path, pa.Table]  # a Parquet file or folder (any Hadoop-compatible URI on Spark), or a table


class EngineError(RuntimeError):
    """The engine cannot be opened or cannot run what it was asked (missing PySpark or Java, a bad master)."""


class Engine(Protocol):
    name: str
    distributed: bool  # whether work leaves this process (then its functions must be picklable, inputs paths)

    def sql(self, query: str, tables: Mapping[str, Source]) -> pa.Table:
        """Run `query` with each name of `tables` bound to that Parquet path or table; the result on the driver."""

    def map_batches(self, source: Source, fn: Callable[[pa.Table], pa.Table], schema: pa.Schema,
                    out: str | Path | None = None) -> pa.Table:
        """`fn` applied to each partition of `source` (the local engine: the whole table, once); the results
        concatenated, in no particular order. With `out`, they are also written there as a Parquet folder."""

    def close(self) -> None: ...


def list_column(values: np.ndarray) -> pa.Array:
    """An (n, d) array as a column of n length-d lists (of the array's dtype): how arrays travel in Parquet
    between the driver and an engine's workers."""
    n, d = values.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * d), pa.array(values.ravel()))


def list_matrix(column: pa.ChunkedArray | pa.Array, d: int) -> np.ndarray:
    """A column of length-d lists as an (n, d) array (`list_column`'s inverse)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(-1, d)


def open_engine(name: str = "local", master: str | None = None, **options: object) -> Engine | SparkEngine:
    """The engine called `name`; `master` (Spark only) is a Spark master URL; when None, spark-submit's master
    or else `local[*]`."""
    if name == "local":
        if master is not None:
            raise EngineError(f"--master: only for --engine spark (got --master {master!r} with --engine local)")
        from jobmatch.engine.local import LocalEngine

        return LocalEngine()
    if name == "spark":
        from jobmatch.engine.spark import SparkEngine

        return SparkEngine(master, **options)
    raise EngineError(f"--engine: expected one of {', '.join(ENGINES)}, got {name!r}")


__all__ = ["ENGINES", "Engine", "EngineError", "Source", "list_column", "list_matrix", "open_engine"]
