"""The study runner (`jobmatch study`) and the hiring and QA studies' --quick grids (issue 15)."""

import json
import os

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from jobmatch.simulate import SimConfig
from jobmatch.studies.base import Study, simulated_log
from jobmatch.studies.commands import register
from jobmatch.studies.runner import load_study, point_key, run_study


def _tiny_point(value, seed, work, quick, say):
    """A real (small) point: simulate, ingest, measure. `value` "boom" fails, to test failure handling."""
    if value == "boom" and not os.environ.get("TINY_STUDY_FIXED"):
        raise RuntimeError("boom: this point fails until TINY_STUDY_FIXED is set")
    members = 60 if value == "boom" else int(value)
    with simulated_log(SimConfig(members=members, days=3, seed=seed), work, say) as (log, _truth):
        events = log.snapshot().events(["member_id"])
    return {"events_per_member": events.num_rows / members, "members": float(members)}


STUDY = Study(name="tiny", knob="members", grid=(60, 120, "boom"), quick_grid=(60,), seeds=(1, 2),
              quick_seeds=(1,), run_point=_tiny_point, metrics=("events_per_member", "members"),
              conclude=lambda rows: f"{len(rows)} rows concluded.", title="tiny")


@pytest.mark.slow
def test_runner_writes_tables_plot_conclusion_and_resumes(tmp_path, monkeypatch):
    monkeypatch.delenv("TINY_STUDY_FIXED", raising=False)
    said = []
    with pytest.raises(RuntimeError, match="2 point"):  # "boom" fails for both seeds; the others are kept
        run_study(STUDY, tmp_path, say=said.append)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["value"] for r in m["rows"]] == [60, 60, 120, 120] and [r["seed"] for r in m["rows"]] == [1, 2, 1, 2]
    assert len(m["failed"]) == 2 and "boom" in m["failed"][0]
    p60 = m["points"][0]
    assert p60["value"] == 60 and p60["seeds"] == 2
    e = p60["events_per_member"]
    assert e["ci_low"] <= e["mean"] <= e["ci_high"]
    assert e["mean"] == pytest.approx(np.mean([r["events_per_member"] for r in m["rows"][:2]]))
    assert p60["members"]["mean"] == 60
    report = (tmp_path / "report.md").read_text()
    assert "![" in report and "tiny.png" in report and "## Conclusion" in report and "4 rows concluded." in report
    assert (tmp_path / "tiny.png").stat().st_size > 5_000
    done = {r: (tmp_path / "points" / point_key(r, s) / "result.json").stat().st_mtime_ns
            for r in (60, 120) for s in (1, 2)}
    assert not (tmp_path / "points" / point_key(60, 1) / "work").exists()  # a finished point's data is dropped

    # re-run: finished points are skipped (their results untouched), the failed ones retried in 2 processes
    monkeypatch.setenv("TINY_STUDY_FIXED", "1")
    said.clear()
    m2 = run_study(STUDY, tmp_path, jobs=2, say=said.append)
    assert any("4 of 6 points x seeds already done; running 2" in s for s in said)
    assert {r: (tmp_path / "points" / point_key(r, s) / "result.json").stat().st_mtime_ns
            for r in (60, 120) for s in (1, 2)} == done
    assert len(m2["rows"]) == 6 and "failed" not in m2 and m2["rows"][:4] == m["rows"]
    assert "## Failed" not in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="tiny"):  # a --quick run may not resume into a full run's folder
        run_study(STUDY, tmp_path, quick=True)


def test_study_command_answers_mistakes_in_one_line(tmp_path):
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # typer runs a lone command without its name; a second one keeps "study" a subcommand
        pass

    runner = CliRunner()
    for args, needle in ((["study", "nosuch", "--out", str(tmp_path)], "no study named 'nosuch'"),
                         (["study", "hiring", "--out", str(tmp_path), "--jobs", "0"], "--jobs")):
        got = runner.invoke(app, args)
        assert got.exit_code == 2 and needle in got.output, got.output
    assert load_study("hiring").name == "hiring" and load_study("qa").name == "qa"


@pytest.mark.slow
def test_hiring_quick(tmp_path):
    m = run_study(load_study("hiring"), tmp_path, quick=True)
    pts = {tuple(p["value"]): p for p in m["points"]}
    assert set(pts) == {("preference", 1.0), ("preference", 3.0)}
    # stronger tastes against the same rating noise make hirers more predictable: every ranker's NDCG@1 rises
    rows = {tuple(r["value"]): r for r in m["rows"]}
    assert rows[("preference", 3.0)]["ndcg1_without"] > rows[("preference", 1.0)]["ndcg1_without"]
    assert rows[("preference", 3.0)]["preference_snr"] > 2.5 * rows[("preference", 1.0)]["preference_snr"]
    assert all(np.isfinite(r["lift_ndcg1_pct"]) for r in m["rows"])
    report = (tmp_path / "report.md").read_text()
    assert "hiring.png" in report and "oracle" in m["conclusion"] and "49.6" in m["conclusion"]


@pytest.mark.slow
def test_qa_quick(tmp_path):
    m = run_study(load_study("qa"), tmp_path, quick=True)
    rows = {tuple(r["value"]): r for r in m["rows"]}
    # fewer jobs per member -> more applicants per job: the knob does what the study says it does
    assert rows[("applicants", 0.15)]["applicants_per_job"] > rows[("applicants", 0.6)]["applicants_per_job"]
    for policy in ("incremental", "hybrid"):
        r = rows[("retrain", policy)]
        assert 0.5 < r["auc_4weeks"] < 1 and r["days_tested"] >= 7
    assert "qa.png" in (tmp_path / "report.md").read_text() and "Retraining" in m["conclusion"]


def _counted_point(value, seed, work, quick, say):
    (work.parent.parent.parent / f"ran-{value}-{seed}").touch()  # OUT/points/<key>/work -> OUT
    return {"x": float(value) * 10 + seed}


def test_a_same_as_point_runs_once_and_is_reported_under_both_values(tmp_path):
    study = Study(name="aliased", knob="x", grid=(1, 2, 3), quick_grid=(1,), seeds=(1, 2), quick_seeds=(1,),
                  run_point=_counted_point, metrics=("x",), conclude=lambda rows: f"{len(rows)} rows",
                  same_as=((3, 1),))
    m = run_study(study, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("ran-*")) == ["ran-1-1", "ran-1-2", "ran-2-1", "ran-2-2"]
    assert [p["value"] for p in m["points"]] == [1, 2, 3]
    assert m["points"][2]["x"] == m["points"][0]["x"]
    copies = [r for r in m["rows"] if r["value"] == 3]
    assert [r["x"] for r in copies] == [11.0, 12.0] and all(r["same_as"] == 1 for r in copies)
    with pytest.raises(ValueError, match="same_as"):
        run_study(Study(**{**study.__dict__, "name": "bad", "same_as": ((3, 4),)}), tmp_path / "bad")


def test_intent_study_onet_points_name_the_setting_they_need(monkeypatch):
    from jobmatch.studies.intent import config_for

    monkeypatch.delenv("JOBMATCH_ONET_PATH", raising=False)
    with pytest.raises(ValueError, match="JOBMATCH_ONET_PATH"):
        config_for("occupations", 900, quick=True)
    cfg, taxonomy, occupations = config_for("occupations", 42, quick=True)  # the built-in taxonomy's market
    assert taxonomy == "builtin" and occupations is None
    monkeypatch.setenv("JOBMATCH_ONET_PATH", "/somewhere/onet")
    assert config_for("occupations", 900, quick=True)[1:] == ("onet:/somewhere/onet", 900)
    assert config_for("pretrain", 0, quick=False)[0].pretrain_epochs == 0
    assert config_for("document", "titles", quick=False)[0].document == "titles"
    with pytest.raises(ValueError, match="series"):
        config_for("budget", 1, quick=True)


@pytest.mark.slow
def test_intent_quick(tmp_path):
    from jobmatch.studies.intent import MODELS, VARIANT

    m = run_study(load_study("intent"), tmp_path, quick=True)
    rows = {tuple(r["value"]): r for r in m["rows"]}
    assert set(rows) == {("document", "titles"), ("document", "titles+companies"), ("pretrain", 0), ("pretrain", 1)}
    # pretrain=1 is the default point, run once (as document=titles+companies) and reported under both
    assert rows[("pretrain", 1)]["same_as"] == ["document", "titles+companies"]
    assert rows[("pretrain", 0)]["pretrain_mtokens"] == 0 < rows[("pretrain", 1)]["pretrain_mtokens"]
    # company tokens make the same sessions' documents longer: more tokens to pre-train on
    assert rows[("document", "titles")]["pretrain_mtokens"] < rows[("document", "titles+companies")]["pretrain_mtokens"]
    for r in rows.values():
        shares = [f"p1_{v}" for v in VARIANT] + [f"{c}_{v}" for c in ("cov5", "cov100") for v in MODELS]
        assert all(0 <= r[k] <= 1 for k in shares), r
        assert r["p1_gap_bert_ft_fasttext"] == pytest.approx(r["p1_bert_ft_slice"] - r["p1_fasttext_slice"])
        assert r["labels"] > 50 and r["p1_fasttext_slice"] > 0.05  # popularity gets about 0.02
    assert "intent.png" in (tmp_path / "report.md").read_text() and "002 reports" in m["conclusion"]
