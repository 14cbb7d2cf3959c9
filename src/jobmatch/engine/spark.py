"""The Spark engine: a SparkSession (`local[*]` or a cluster's master) and the primitives the flows build on.

Partition functions take and return pyarrow tables (`mapInArrow`, `applyInArrow`), so no pandas conversion sits
between Spark and the numpy code. Functions sent to executors are pickled by Spark's cloudpickle; they must
reach only files the executors can read (Parquet folders, model folders on shared storage).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobmatch.engine import EngineError, Source

INSTALL_HINT = "pip install 'jobmatch[spark]'"


def _pyspark():
    try:
        import pyspark  # noqa: F401
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise EngineError(f"--engine spark needs PySpark, which is not installed ({e.name}): {INSTALL_HINT}") \
            from None
    return SparkSession


def _partition_table(batches: Iterator[pa.RecordBatch]) -> pa.Table | None:
    batches = list(batches)
    return pa.Table.from_batches(batches) if batches else None


class SparkEngine:
    """A SparkSession with jobmatch's settings: UTC timestamps, Arrow transfers, the driver's Python on executors
    (unless PYSPARK_PYTHON says otherwise), no console progress bars. `conf` adds or overrides Spark settings."""

    name = "spark"
    distributed = True

    def __init__(self, master: str | None = None, app_name: str = "jobmatch", shuffle_partitions: int | None = None,
                 driver_memory: str | None = None, ui: bool = False, conf: Mapping[str, str] | None = None):
        SparkSession = _pyspark()
        # PySpark 4.3 warns that it "does not yet fully support pandas >= 3" on every Arrow UDF it builds; this
        # engine hands executors Arrow tables, never pandas frames, so the warning would only be noise on stderr
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        # executors' Python workers must import jobmatch: by default the interpreter running this
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        settings = {"spark.ui.enabled": str(ui).lower(), "spark.ui.showConsoleProgress": "false",
                    "spark.sql.session.timeZone": "UTC", "spark.sql.execution.arrow.pyspark.enabled": "true"}
        if shuffle_partitions is not None:
            settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
        if driver_memory is not None:
            settings["spark.driver.memory"] = driver_memory
        settings.update(conf or {})
        builder = SparkSession.builder.appName(app_name)
        # under spark-submit (which starts the JVM and says where: PYSPARK_GATEWAY_PORT) the master is the one it
        # was given; elsewhere `master`, or all the local cores
        if master is not None or "PYSPARK_GATEWAY_PORT" not in os.environ:
            builder = builder.master(master or "local[*]")
        for key, value in settings.items():
            builder = builder.config(key, value)
        # a session already running in this process (a notebook's, a test's) is used and left running on close
        self._owned = SparkSession.getActiveSession() is None
        try:
            self.session = builder.getOrCreate()
        except Exception as e:  # noqa: BLE001 - the JVM's failures come as several exception types; all mean this
            raise EngineError(f"--master {master!r}: Spark could not start ({type(e).__name__}: "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}); it needs Java 17 "
                              "(java on PATH or JAVA_HOME)") from None
        self.session.sparkContext.setLogLevel("ERROR")
        self.master = self.session.sparkContext.master

    @property
    def parallelism(self) -> int:
        return self.session.sparkContext.defaultParallelism

    def frame(self, source: Source):
        """A DataFrame of a Parquet path (file, folder or URI) or of an in-memory table."""
        if isinstance(source, pa.Table):
            return self.session.createDataFrame(source)
        return self.session.read.parquet(str(source))

    def sql(self, query: str, tables: Mapping[str, Source]) -> pa.Table:
        for name, source in tables.items():
            self.frame(source).createOrReplaceTempView(name)
        return self.session.sql(query).toArrow()

    def map_batches(self, source: Source, fn: Callable[[pa.Table], pa.Table], schema: pa.Schema,
                    out: str | Path | None = None) -> pa.Table:
        df = self.frame(source)
        if df.rdd.getNumPartitions() < self.parallelism:  # one small file reads as one partition: spread it
            df = df.repartition(self.parallelism)
        result = self.map_frame(df, fn, schema)
        if out is None:
            return result.toArrow().cast(schema)
        result.write.mode("overwrite").parquet(str(out))
        return self.frame(out).toArrow().cast(schema)

    def map_frame(self, df, fn: Callable[[pa.Table], pa.Table], schema: pa.Schema):
        """`fn` over each partition of DataFrame `df` (a whole partition as one table), as a DataFrame."""
        from pyspark.sql.pandas.types import from_arrow_schema

        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            table = _partition_table(batches)
            if table is not None:
                yield from fn(table).cast(schema).to_batches()

        return df.mapInArrow(run, from_arrow_schema(schema))

    def partition_sum(self, df, fn: Callable[[pa.Table], np.ndarray], size: int) -> np.ndarray:
        """The sum over `df`'s partitions of `fn(partition)` (float64 vectors of length `size`; zeros when `df` has
        no rows), added on the driver in partition order, so a rerun on the same partitioning gives the same bits."""
        def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
            table = _partition_table(batches)
            if table is not None and table.num_rows:
                yield pa.record_batch({"v": pa.array([np.asarray(fn(table), np.float64)], pa.list_(pa.float64()))})

        rows = df.mapInArrow(run, "v array<double>").toArrow()["v"].to_pylist()
        return np.sum(np.array(rows, np.float64).reshape(-1, size), axis=0)

    def cogroup_map(self, left, right, key: str, buckets: int,
                    fn: Callable[[int, pa.Table, pa.Table], pa.Table], schema: pa.Schema):
        """Rows of `left` and `right` hashed on column `key` into `buckets` buckets; `fn(bucket, left rows, right
        rows)` of each bucket (every row of one key in the same call), as a DataFrame. A bucket is one call, so a
        function that batches its work over many keys runs once per bucket, not once per key."""
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        bucket = F.pmod(F.hash(F.col(key)), F.lit(buckets)).alias("_bucket")
        grouped = [df.select(bucket, *df.columns).groupBy("_bucket") for df in (left, right)]
        return grouped[0].cogroup(grouped[1]).applyInArrow(
            lambda key, a, b: fn(key[0].as_py(), a.drop_columns(["_bucket"]), b.drop_columns(["_bucket"])).cast(schema),
            from_arrow_schema(schema))

    def close(self) -> None:
        if self._owned:
            self.session.stop()

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
