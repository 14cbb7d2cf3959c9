"""Ids are opaque int64: a marketplace whose ids sit near 2^62 gives exactly the results of the same marketplace
with small ids (no id is ever packed into another with bit shifts or multiplications)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobmatch.events import EventLog
from jobmatch.flows.daily import DailyConfig, run_daily
from jobmatch.flows.state import FlowContext
from jobmatch.store import open_store

OFFSET = 1 << 62
ID_COLUMNS = ("member_id", "job_id", "project_id", "company_id")


def _shifted_copy(data, out):
    out.mkdir()
    for path in data.glob("*.parquet"):
        table = pq.read_table(path)
        for name in ID_COLUMNS:
            if name in table.column_names:
                col = table[name]
                table = table.set_column(table.schema.get_field_index(name), table.schema.field(name),
                                         pc.add(col, pa.scalar(OFFSET, pa.int64())))
        pq.write_table(table, out / path.name)
    return out


def _run(data, tmp, day):
    from conftest import ingest_market_folder

    db = ingest_market_folder(data, tmp / "events.duckdb")
    spec = f"sqlite:{tmp / 'store.sqlite'}"
    with EventLog(db) as log, open_store(spec, create=True) as store:
        results = run_daily(FlowContext.create(log, store, spec, tmp / "flows", day),
                            DailyConfig(flows=("hiring", "qa", "activity"), activity_epochs=1))
        docs = log.snapshot().documents()
    return results, spec, docs


def test_ids_near_2_62_give_the_same_results(small_market, tmp_path):
    _, data, _ = small_market
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    small, spec_a, docs_a = _run(data, tmp_path / "a", date(2026, 1, 19))
    big, spec_b, docs_b = _run(_shifted_copy(data, tmp_path / "big"), tmp_path / "b", date(2026, 1, 19))
    assert {k: v["status"] for k, v in small.items()} == {"hiring": "ok", "qa": "ok", "activity": "ok"}, small
    strip = lambda r: {k: {kk: vv for kk, vv in v.items() if kk != "version"} for k, v in r.items()}  # noqa: E731
    assert strip(small) == strip(big)
    assert [d.sessions for d in docs_a] == [d.sessions for d in docs_b]
    assert [d.member_id + OFFSET for d in docs_a] == [d.member_id for d in docs_b]
    with open_store(spec_a) as a, open_store(spec_b) as b:
        coef_a = a.get_one("qa/coefficients", "global")
        np.testing.assert_allclose(b.get_one("qa/coefficients", "global"), coef_a, rtol=1e-6, atol=1e-7)
        member = next(int(k) for k in map(str, range(300)) if a.get_one("qa/coefficients", f"m:{k}") is not None)
        np.testing.assert_allclose(b.get_one("qa/coefficients", f"m:{member + OFFSET}"),
                                   a.get_one("qa/coefficients", f"m:{member}"), rtol=1e-5, atol=1e-6)
        for name in ("activity_embedding/mean-v1", "activity_embedding/decay-v1"):
            vec = a.get_one(name, str(member))
            if vec is not None:
                np.testing.assert_allclose(b.get_one(name, str(member + OFFSET)), vec, rtol=1e-4, atol=1e-6)
    from jobmatch.hiring.state import SQLiteProjectCounts

    small_counts = SQLiteProjectCounts(spec_a.removeprefix("sqlite:"), create=False)
    big_counts = SQLiteProjectCounts(spec_b.removeprefix("sqlite:"), create=False)
    codes = np.arange(0, 1 << 36, 1 << 33, dtype=np.int64)
    for project in (0, 5, 17):
        assert small_counts.lookup(project, codes).tolist() == big_counts.lookup(project + OFFSET, codes).tolist()
    small_counts.close()
    big_counts.close()
