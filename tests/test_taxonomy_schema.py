from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from jobmatch.schema import ActivityEvent, HirerFeedback
from jobmatch.taxonomy import builtin_taxonomy, load_onet, resolve_taxonomy


def test_builtin_taxonomy_is_complete():
    tax = builtin_taxonomy()
    assert len(tax) >= 30 and len(tax.families) >= 6
    for occ in tax.occupations:
        assert occ.alt_titles and occ.skills and occ.related, occ.code
        assert 1 <= occ.job_zone <= 5
        assert all(0 < w <= 1 for _, w in occ.skills)
        assert all(code in tax and tier in (1, 2) for code, tier in occ.related)
        # skills are listed most important first
        assert [w for _, w in occ.skills] == sorted((w for _, w in occ.skills), reverse=True)


def test_onet_loader_reads_the_tables(onet_path):
    tax = load_onet(onet_path)
    assert len(tax) > 800 and len(tax.families) >= 20
    analyst = tax["15-2051.00"]  # Data Scientists
    assert analyst.alt_titles and analyst.skills and analyst.related
    assert any(t == 1 for _, t in analyst.related)
    assert 1 <= analyst.job_zone <= 5
    assert resolve_taxonomy(f"onet:{onet_path}").name == "onet"


def test_onet_loader_names_missing_tables(tmp_path):
    with pytest.raises(FileNotFoundError, match="occupation_data.tsv.gz"):
        load_onet(tmp_path)


def test_unknown_taxonomy_spec():
    with pytest.raises(ValueError, match="taxonomy"):
        resolve_taxonomy("esco")


def test_event_model_rules():
    ts = datetime(2026, 1, 5, 9, tzinfo=timezone.utc)
    ActivityEvent(event_id="e1", member_id=1, ts=ts, action="SEARCH", channel="search", query="nurse")
    with pytest.raises(ValidationError, match="query"):
        ActivityEvent(event_id="e1", member_id=1, ts=ts, action="SEARCH", channel="search")
    with pytest.raises(ValidationError, match="job_id"):
        ActivityEvent(event_id="e1", member_id=1, ts=ts, action="APPLY", channel="search")
    with pytest.raises(ValidationError, match="action"):
        ActivityEvent(event_id="e1", member_id=1, ts=ts, action="CLICK", channel="search", job_id=3)
    with pytest.raises(ValidationError, match="ts"):  # a naive time is ambiguous
        ActivityEvent(event_id="e1", member_id=1, ts=datetime(2026, 1, 5), action="VIEW", channel="search", job_id=3)
    with pytest.raises(ValidationError, match="feedback"):
        HirerFeedback(feedback_id="f", project_id=1, member_id=2, ts=ts, channel="applicants", feedback="like")
    ev = ActivityEvent(event_id="e1", member_id=1, ts="2026-01-05T10:00:00+01:00", action="VIEW", channel="alerts",
                       job_id=3)
    assert ev.ts == ts
