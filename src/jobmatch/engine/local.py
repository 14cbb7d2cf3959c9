"""The in-process engine: SQL with DuckDB, a partition function called once on the whole table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.engine import Source

PART = "part-0.parquet"  # the one file of a `map_batches` output folder (Spark writes several)


class LocalEngine:
    name = "local"
    distributed = False

    def sql(self, query: str, tables: Mapping[str, Source]) -> pa.Table:
        con = duckdb.connect()
        try:
            for name, source in tables.items():
                if isinstance(source, pa.Table):
                    con.register(name, source)
                else:  # DuckDB scans the file (or a folder's files) itself
                    con.read_parquet(_files(source)).create_view(name)
            return con.sql(query).to_arrow_table()
        finally:
            con.close()

    def map_batches(self, source: Source, fn: Callable[[pa.Table], pa.Table], schema: pa.Schema,
                    out: str | Path | None = None) -> pa.Table:
        table = source if isinstance(source, pa.Table) else self.sql("SELECT * FROM source", {"source": source})
        result = fn(table).cast(schema)
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            pq.write_table(result, Path(out) / PART)
        return result

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _files(source: str | Path) -> str:
    """A Parquet path as DuckDB takes it: a folder (Spark's output) as the glob of its files."""
    return f"{source}/*.parquet" if Path(source).is_dir() else str(source)
