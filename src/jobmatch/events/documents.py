"""Activity documents as in 002's Figure 2: a member's sessions as text, one line per session.

    JOB_SEARCH hedge fund analyst VIEW c_voya_financial analyst/associate APPLY c_onewire_holdings analyst *

Queries and titles are lower-cased; companies become single `c_<name>` tokens; an applied job ends with `*`.
How much of a job a document carries is its `content` (DOCUMENT_CONTENT): `titles` (actions, queries and
titles), `titles+companies` (002's Figure 2, the default) or `titles+companies+skills` (each job's skills follow
its title, in brackets).
Each session also lists its entities (002's labels: the search queries and the titles of applied jobs).
Control characters never reach a document (ingest refuses them; rendering turns any into spaces), so one
session is always exactly one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from jobmatch.events.sessions import session_starts

DOCUMENT_CONTENT = ("titles", "titles+companies", "titles+companies+skills")
DEFAULT_CONTENT = "titles+companies"
_NON_TOKEN = re.compile(r"[^a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def company_token(name: str | None) -> str:
    return "c_" + (_NON_TOKEN.sub("_", name.lower()).strip("_") if name else "unknown")


def _clean(text: str | None) -> str:
    return _CONTROL.sub(" ", (text or "").lower()).strip()


def check_content(content: str) -> str:
    if content not in DOCUMENT_CONTENT:
        raise ValueError(f"document content: expected one of {', '.join(DOCUMENT_CONTENT)}, got {content!r}")
    return content


def render_event(action: str, query: str | None, company: str | None, title: str | None, job_id: int | None,
                 skills: list[str] | None = None, content: str = DEFAULT_CONTENT) -> str:
    if action == "SEARCH":
        return f"JOB_SEARCH {_clean(query)}"
    parts = [action]
    if content != "titles":
        parts.append(company_token(company))
    parts.append(_clean(title) if title else f"job {job_id}")
    if content == "titles+companies+skills" and skills:
        parts.append("[ " + " , ".join(_clean(s) for s in skills) + " ]")
    text = " ".join(parts)
    return text + " *" if action == "APPLY" else text


@dataclass
class MemberDocs:
    member_id: int
    sessions: list[str] = field(default_factory=list)
    entities: list[list[str]] = field(default_factory=list)  # per session: queries and applied titles
    session_start_us: list[int] = field(default_factory=list)
    searched: bool = False


def build_documents(ev: pa.Table, gap_us: int, content: str = DEFAULT_CONTENT) -> list[MemberDocs]:
    """`ev` has member_id, ts (epoch µs), action, query, job_id, company, title (and skills, for content with
    skills), sorted by (member_id, ts)."""
    check_content(content)
    member = ev["member_id"].to_numpy()
    ts = ev["ts"].to_numpy()
    starts = session_starts(member, ts, gap_us)
    actions, queries, companies, titles, jobs = (ev[c].to_pylist() for c in ("action", "query", "company", "title",
                                                                            "job_id"))
    skills = ev["skills"].to_pylist() if "skills" in ev.column_names else [None] * len(actions)
    docs: list[MemberDocs] = []
    bounds = np.r_[np.flatnonzero(starts), member.size]
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        m = int(member[lo])
        if not docs or docs[-1].member_id != m:
            docs.append(MemberDocs(m))
        d = docs[-1]
        texts, entities = [], []
        for i in range(lo, hi):
            a = actions[i]
            texts.append(render_event(a, queries[i], companies[i], titles[i], jobs[i], skills[i], content))
            if a == "SEARCH":
                entities.append(_clean(queries[i]))
                d.searched = True
            elif a == "APPLY" and titles[i] is not None:
                entities.append(_clean(titles[i]))
        d.sessions.append(" ".join(texts))
        d.entities.append(entities)
        d.session_start_us.append(int(ts[lo]))
    return docs


def render_documents(ev: pa.Table, gap_us: int) -> dict[int, list[str]]:
    return {d.member_id: d.sessions for d in build_documents(ev, gap_us)}
