"""The Spark engine gives the local engine's answers: GAME coefficients (through `jobmatch game train --engine
spark`, and with a prior), scoring, and `jobmatch run daily --engine spark`'s hirer counts and activity embeddings,
on the same small data, with one real local Spark session (local[2]) for the module."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute in a partition function
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobmatch.cli import app
from jobmatch.engine import EngineError, open_engine
from jobmatch.game.model import Coordinate, GameModel
from jobmatch.game.synthetic import known_mixed_model

pytestmark = [
    pytest.mark.spark,
    # PySpark 4.3 warns on the driver that it "does not yet fully support pandas >= 3" whenever it checks the pandas
    # version; the engine passes Arrow tables, not pandas frames, so the warning does not concern it
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

RELATIVE = 1e-6


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        if os.environ.get("CI"):
            pytest.fail("Java is not installed (.ci/run installs openjdk-17-jre-headless)")
        pytest.skip("Java is not installed")
    engine = open_engine("spark", "local[2]", shuffle_partitions=2, driver_memory="1g")
    yield engine
    engine.close()


def _close(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference relative to the largest magnitude."""
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)) if a.size else 0.0


def _same_models(local: GameModel, distributed: GameModel) -> None:
    assert list(local.coordinates_) == list(distributed.coordinates_)
    for name, a in local.coordinates_.items():
        b = distributed.coordinates_[name]
        assert a.entity_ids.dtype.kind == b.entity_ids.dtype.kind and np.array_equal(a.entity_ids, b.entity_ids), name
        assert a.l2 == b.l2, name
        assert _close(a.coef, b.coef) <= RELATIVE, (name, _close(a.coef, b.coef))
        assert _close(a.var, b.var) <= RELATIVE, (name, _close(a.var, b.var))


def _mixed(rows: int, seed: int) -> dict[str, np.ndarray]:
    cols, _ = known_mixed_model(n_members=80, n_jobs=50, rows=rows, seed=seed)
    # string ids on one coordinate, integers on the other
    cols["job_id"] = np.array([f"job-{j}" for j in cols["job_id"]])
    return cols


def _coordinates(member_l2=1.0) -> list[Coordinate]:
    return [Coordinate("global", "fixed", ("g1", "g2", "g3")),
            Coordinate("per_member", "random", ("j1", "j2"), entity="member_id", min_samples=3, l2=member_l2),
            Coordinate("per_job", "random", ("m1", "m2"), entity="job_id")]


GAME_TOML = """
[data]
train = "train.parquet"
validation = "validation.parquet"
response = "response"

[training]
passes = 1
dtype = "float64"

[[coordinates]]
name = "global"
type = "fixed"
features = ["g1", "g2", "g3"]
l2 = 1.0

[[coordinates]]
name = "per_member"
type = "random"
entity = "member_id"
features = ["j1", "j2"]
min_samples = 3
l2 = [1.0, 10.0]

[[coordinates]]
name = "per_job"
type = "random"
entity = "job_id"
features = ["m1", "m2"]
l2 = 1.0
"""


def test_game_train_on_spark_matches_the_local_engine(spark, tmp_path):
    cols = _mixed(4000, seed=1)
    pq.write_table(pa.table({k: v[:3200] for k, v in cols.items()}), tmp_path / "train.parquet")
    pq.write_table(pa.table({k: v[3200:] for k, v in cols.items()}), tmp_path / "validation.parquet")
    (tmp_path / "game.toml").write_text(GAME_TOML)
    runner = CliRunner()
    for engine in ("local", "spark"):
        r = runner.invoke(app, ["game", "train", "--config", str(tmp_path / "game.toml"), "--out",
                                str(tmp_path / engine), "--engine", engine, "--master", "local[2]"]
                          if engine == "spark" else ["game", "train", "--config", str(tmp_path / "game.toml"),
                                                     "--out", str(tmp_path / engine)])
        assert r.exit_code == 0, (engine, r.output, r.exception)
    local, distributed = GameModel.load(tmp_path / "local"), GameModel.load(tmp_path / "spark")
    _same_models(local, distributed)
    assert local.l2_grid_.keys() == distributed.l2_grid_.keys() == {"per_member"}
    assert [s.objective for s in distributed.steps_] == pytest.approx([s.objective for s in local.steps_], rel=1e-9)
    assert distributed.best_auc_ == pytest.approx(local.best_auc_, abs=1e-9)
    assert "spark" in (tmp_path / "spark" / "metrics.json").read_text()


def test_a_prior_and_the_warm_start_and_scoring_match_the_local_engine(spark, tmp_path):
    from jobmatch.game.spark import SparkGame

    before, after = _mixed(3000, seed=2), _mixed(2500, seed=3)
    # members 0..9 have no rows now: both engines drop them from the refit model; member 10 keeps one row, fewer
    # than min_samples, and is refit all the same because the prior models it
    keep = (after["member_id"] > 10) | (np.cumsum(after["member_id"] == 10) == 1) & (after["member_id"] == 10)
    after = {k: v[keep] for k, v in after.items()}
    pq.write_table(pa.table(after), tmp_path / "after.parquet")
    prior = GameModel(_coordinates(), passes=1, dtype="float64").fit(before)
    local = GameModel(_coordinates(), passes=1, dtype="float64").fit(after, prior=prior, max_prior_precision=50.0)
    trainer = SparkGame(GameModel(_coordinates(), passes=1, dtype="float64"), spark)
    distributed = trainer.fit(tmp_path / "after.parquet", prior=prior, max_prior_precision=50.0)
    _same_models(local, distributed)
    members = distributed.coordinates_["per_member"].entity_ids
    assert not np.isin(np.arange(10), members).any() and 10 in members
    # scoring: the fixed effect broadcast, random effects joined on entity
    t = trainer.scored(tmp_path / "after.parquet").select("member_id", "job_id", "g1", "_margin").toArrow()
    t = t.sort_by([("member_id", "ascending"), ("job_id", "ascending"), ("g1", "ascending")])
    order = np.lexsort((after["g1"], after["job_id"], after["member_id"]))
    assert _close(local.decision_function(after)[order], t["_margin"].to_numpy()) <= 1e-9


def _counts(store: Path) -> tuple[list, list]:
    """The hirer counters as the SQLite store file holds them: every (project, counter, value) and dedupe key."""
    with sqlite3.connect(store) as con:
        return (sorted(con.execute("SELECT project, code, value FROM project_counts").fetchall()),
                sorted(con.execute("SELECT project, dedupe FROM project_seen").fetchall()))


def test_run_daily_on_spark_matches_the_local_engine(spark, tiny_log, tmp_path):
    from conftest import writable_copy

    from jobmatch.events import EventLog
    from jobmatch.flows.daily import DailyConfig, run_daily
    from jobmatch.flows.state import FlowContext, last_complete_day
    from jobmatch.store import open_store

    homes = {engine: tmp_path / engine for engine in ("local", "spark")}
    for home in homes.values():
        home.mkdir()
        writable_copy(tiny_log, home)
    # the local engine, in process; one epoch: the models are trained once, then given to the Spark run, whose
    # inference is what is compared
    flows = ("hiring", "activity")
    with EventLog(homes["local"] / "events.duckdb") as log, \
            open_store(f"sqlite:{homes['local'] / 'store.sqlite'}", create=True) as store:
        day = last_complete_day(log)
        ctx = FlowContext.create(log, store, f"sqlite:{homes['local'] / 'store.sqlite'}", homes["local"] / "flows",
                                 day)
        local = run_daily(ctx, DailyConfig(flows=flows, activity_epochs=1))
    assert {v["status"] for v in local.values()} == {"ok"}, local
    shutil.copytree(homes["local"] / "flows" / "activity" / "models", homes["spark"] / "flows" / "activity" / "models")
    r = CliRunner().invoke(app, ["--home", str(homes["spark"]), "run", "daily", "--only", ",".join(flows),
                                 "--engine", "spark", "--master", "local[2]"], env={"JOBMATCH_STORE": ""})
    assert r.exit_code == 0, (r.output, r.exception)
    distributed = json.loads(r.stdout)
    assert distributed["hiring"] == local["hiring"]
    assert {k: v for k, v in distributed["activity"].items() if k != "trained"} == \
        {k: v for k, v in local["activity"].items() if k != "trained"}
    counts = _counts(homes["local"] / "store.sqlite")
    assert counts[0] and counts == _counts(homes["spark"] / "store.sqlite")
    # the inference went through Spark: its versioned Parquet output is there, one row per member embedded
    written = pq.read_table(homes["spark"] / "flows" / "activity" / "runs" / day.isoformat() / "embeddings")
    assert written.num_rows == local["activity"]["members"] > 0
    members = [str(m) for m in written["member_id"].to_pylist()]
    with open_store(f"sqlite:{homes['local'] / 'store.sqlite'}") as a, \
            open_store(f"sqlite:{homes['spark'] / 'store.sqlite'}") as b:
        names = [d for d in a.datasets() if d.startswith("activity")]
        assert sorted(names) == sorted(d for d in b.datasets() if d.startswith("activity")) and len(names) > 1
        for name in names:
            keys = members if name.startswith("activity_embedding/") else [str(k) for k in range(1000)]
            va, vb = a.get(name, keys), b.get(name, keys)
            assert [v is None for v in va] == [v is None for v in vb], name
            assert all(np.array_equal(x, y) for x, y in zip(va, vb) if x is not None), name


def test_export_writes_every_stream_and_table_of_the_log(tiny_log, tmp_path):
    from jobmatch.events import EventLog
    from jobmatch.flows.export import EXPORT_KINDS

    r = CliRunner().invoke(app, ["export", "--db", str(tiny_log), "--out", str(tmp_path / "export")])
    assert r.exit_code == 0, (r.output, r.exception)
    with EventLog(tiny_log, read_only=True) as log:
        for kind in EXPORT_KINDS:
            table = pq.read_table(tmp_path / "export" / f"{kind}.parquet")
            assert table.num_rows == log.count(kind), kind
        assert pq.read_table(tmp_path / "export" / "events.parquet").schema == log.snapshot().events().schema


def test_both_engines_derive_the_hiring_streams_the_flow_counts(spark, tiny_log, tmp_path):
    """The hiring flow's SQL over the export, on DuckDB and on Spark, gives the distinct rows of what the local path
    (`candidate_impressions`, the feedback read) feeds the counters; `map_batches` maps the same rows."""
    from jobmatch.events import EventLog
    from jobmatch.flows.export import export_snapshot
    from jobmatch.flows.hiring import RATED_SQL, SHOWN_SQL
    from jobmatch.hiring.dataset import candidate_impressions

    with EventLog(tiny_log, read_only=True) as log:
        snap = log.snapshot()
        paths = export_snapshot(snap, tmp_path, ("events", "feedback", "hirer_impressions", "projects"))
        shown = candidate_impressions(snap.events(), snap.entities("projects"), snap.hirer_impressions())
        rated = snap.feedback()
    tables = {kind: str(path) for kind, (path, _) in paths.items()}

    def rows(t: pa.Table, columns: list[str]) -> list[tuple]:
        return sorted(set(zip(*(t[c].to_pylist() for c in columns))))

    expected = (rows(shown, ["project_id", "member_id", "channel"]),
                rows(rated, ["project_id", "member_id", "channel", "feedback"]))
    assert expected[0] and expected[1]
    schema = pa.schema([("project_id", pa.int64()), ("twice", pa.int64())])

    def twice(t: pa.Table) -> pa.Table:
        return pa.table({"project_id": t["project_id"], "twice": pa.compute.multiply(t["project_id"], 2)})

    for engine in (open_engine("local"), spark):
        got = engine.sql(SHOWN_SQL, tables), engine.sql(RATED_SQL, tables)
        assert got[0].num_rows == len(expected[0]) and got[1].num_rows == len(expected[1]), engine.name
        assert (rows(got[0], ["project_id", "member_id", "channel"]),
                rows(got[1], ["project_id", "member_id", "channel", "feedback"])) == expected, engine.name
        mapped = engine.map_batches(tables["projects"], twice, schema, out=tmp_path / f"mapped-{engine.name}")
        assert sorted(mapped["twice"].to_pylist()) == sorted(2 * p for p in mapped["project_id"].to_pylist())
        assert mapped.num_rows == paths["projects"][1] > 0, engine.name


def test_a_missing_pyspark_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)  # what `import pyspark` sees where it is not installed
    with pytest.raises(EngineError, match=r"pip install 'jobmatch\[spark\]'"):
        open_engine("spark")
    with pytest.raises(EngineError, match="--master: only for --engine spark"):
        open_engine("local", master="local[2]")
