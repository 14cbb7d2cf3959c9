import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jobmatch.events import DOCUMENT_CONTENT, EventLog, company_token, render_event, sessionize
from jobmatch.schema import ACTION_CODES

MIN = 60_000_000
S, V, A = ACTION_CODES["SEARCH"], ACTION_CODES["VIEW"], ACTION_CODES["APPLY"]


def test_gap_boundary_is_exact_and_members_never_share_a_session():
    member = np.array([1, 1, 1, 1, 2, 2])
    ts = np.array([0, 30 * MIN, 60 * MIN + 1, 61 * MIN, 61 * MIN + 5, 200 * MIN])
    action = np.array([S, V, V, A, V, V])
    s = sessionize(member, ts, action, 30 * MIN)
    assert s.event_session.tolist() == [0, 0, 1, 1, 2, 3]  # exactly 30 idle minutes stays in the session
    assert s.n_events.tolist() == [2, 2, 1, 1]
    assert s.member_id.tolist() == [1, 1, 2, 2]
    assert (s.start_us.tolist(), s.end_us.tolist()) == ([0, 60 * MIN + 1, 61 * MIN + 5, 200 * MIN],
                                                        [30 * MIN, 61 * MIN, 61 * MIN + 5, 200 * MIN])


def test_apply_after_search_needs_the_search_first():
    member = np.zeros(5, int)
    ts = np.arange(5) * MIN
    s = sessionize(member, ts, np.array([V, A, S, V, V]), 30 * MIN)
    assert not s.apply_after_search[0] and s.n_search[0] == 1 and s.n_apply[0] == 1
    s = sessionize(member, ts, np.array([V, S, V, A, V]), 30 * MIN)
    assert s.apply_after_search[0]


def _events(rng, n_members=30, n=1500):
    member = rng.integers(n_members, size=n)
    ts = 1_767_600_000_000_000 + np.cumsum(rng.exponential(4 * MIN, n)).astype(np.int64)
    ts = ts[rng.permutation(n)]  # members interleave and arrive out of order
    actions = np.array(["SEARCH", "VIEW", "SAVE", "APPLY", "DISMISS"])[rng.integers(5, size=n)]
    return pa.table({
        "event_id": [f"e{i}" for i in range(n)], "member_id": member, "ts": pa.array(ts, pa.timestamp("us", "UTC")),
        "action": actions, "channel": ["search"] * n, "job_id": pa.array(rng.integers(50, size=n)),
        "query": ["q"] * n,
    })


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_sessions_equal_a_full_recompute(tmp_path, seed):
    rng = np.random.default_rng(seed)
    events = _events(rng)
    with EventLog(tmp_path / "inc.duckdb") as inc, EventLog(tmp_path / "full.duckdb") as full:
        # incremental: batches in time order, each followed by sessionize; then a batch of late events
        order = np.argsort(events["ts"].to_numpy())
        on_time, late = order[: 1200], order[1200:]
        late_in_past = rng.permutation(late)
        for chunk in np.array_split(on_time, 7):
            inc.append("events", events.take(chunk))
            inc.sessionize()
        late_table = events.take(late_in_past)
        # move half of the late events back in time, into already-closed sessions
        shifted = pc.subtract(late_table["ts"].cast("int64"), pa.scalar(int(3 * 60 * MIN)))
        late_table = late_table.set_column(2, "ts", shifted.cast(pa.timestamp("us", "UTC")))
        for chunk in np.array_split(np.arange(late_table.num_rows), 3):
            inc.append("events", late_table.take(chunk))
            inc.sessionize()
        full.append("events", inc.table("events"))
        assert full.sessionize() > 0
        assert inc.table("sessions").equals(full.table("sessions"))
        assert inc.sessionize() == 0  # nothing new: nothing rebuilt


def test_changing_the_gap_rebuilds(tmp_path):
    events = _events(np.random.default_rng(5))
    with EventLog(tmp_path / "log.duckdb") as log:
        log.append("events", events)
        log.sessionize(30)
        n30 = log.count("sessions")
        log.sessionize(5)
        assert log.count("sessions") > n30


def test_documents_render_like_002_figure_2(tiny_log):
    assert render_event("SEARCH", "Hedge Fund Analyst", None, None, None) == "JOB_SEARCH hedge fund analyst"
    assert render_event("APPLY", None, "OneWire Holdings, LLC", "Analyst", 3) == \
        "APPLY c_onewire_holdings_llc analyst *"
    assert render_event("VIEW", None, None, None, 42) == "VIEW c_unknown job 42"
    assert company_token("Arrow Search Partners") == "c_arrow_search_partners"
    with EventLog(tiny_log, read_only=True) as log:
        docs = log.documents()
        sessions = log.table("sessions")
        snap = log.snapshot()
        # the snapshot's sessions (from the log's gap, computed as of the cutoff) equal the stored table
        assert snap.sessions().equals(sessions)
        structured = snap.documents()
        # a cutoff cuts sessions and documents there: nothing after it is seen
        t0, t1 = snap.time_range()
        half = log.snapshot((t0 + t1) // 2)
        assert all(s < (t0 + t1) // 2 for d in half.documents() for s in d.session_start_us)
        assert half.events().num_rows < snap.events().num_rows
    member = sessions["member_id"][0].as_py()
    assert len(docs[member]) == pc.sum(pc.equal(sessions["member_id"], member)).as_py()
    text = " ".join(line for lines in docs.values() for line in lines)
    assert "JOB_SEARCH " in text and " *" in text and " c_" in text
    assert sum(len(v) for v in docs.values()) == sessions.num_rows
    entities = {e for d in structured for ses in d.entities for e in ses}
    assert entities and all(e == e.lower() for e in entities)
    assert {d.member_id: d.sessions for d in structured} == docs


def test_document_content_sets_how_much_of_a_job_a_session_carries(tiny_log):
    assert render_event("APPLY", None, "Acme", "Nurse", 3, ["patient care", "triage"], "titles") == "APPLY nurse *"
    assert render_event("VIEW", None, "Acme", "Nurse", 3, ["patient care", "triage"], "titles+companies+skills") == \
        "VIEW c_acme nurse [ patient care , triage ]"
    with EventLog(tiny_log, read_only=True) as log:
        snap = log.snapshot()
        by = {c: snap.documents(content=c) for c in DOCUMENT_CONTENT}
        default = snap.documents()
        with pytest.raises(ValueError, match="document content.*'everything'"):
            snap.documents(content="everything")
    assert by["titles+companies"] == default
    # the same sessions and entities (labels) whatever the content: only the text differs
    for c in DOCUMENT_CONTENT:
        assert [(d.member_id, d.entities, d.session_start_us) for d in by[c]] == \
            [(d.member_id, d.entities, d.session_start_us) for d in by["titles+companies"]]
    text = {c: " ".join(s for d in by[c] for s in d.sessions) for c in DOCUMENT_CONTENT}
    assert " c_" not in text["titles"] and " c_" in text["titles+companies"]
    assert " [ " in text["titles+companies+skills"] and " [ " not in text["titles+companies"]
    assert len(text["titles"]) < len(text["titles+companies"]) < len(text["titles+companies+skills"])
