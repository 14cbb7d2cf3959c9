"""Activity documents as in 002's Figure 2: a member's sessions as text, one line per session.

    JOB_SEARCH hedge fund analyst VIEW c_voya_financial analyst/associate APPLY c_onewire_holdings analyst *

Queries and titles are lower-cased; companies become single `c_<name>` tokens; an applied job ends with `*`.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from jobmatch.events.sessions import session_starts

_NON_TOKEN = re.compile(r"[^a-z0-9]+")


def company_token(name: str | None) -> str:
    return "c_" + (_NON_TOKEN.sub("_", name.lower()).strip("_") if name else "unknown")


def render_event(action: str, query: str | None, company: str | None, title: str | None, job_id: int | None) -> str:
    if action == "SEARCH":
        return f"JOB_SEARCH {(query or '').lower().strip()}"
    text = f"{action} {company_token(company)} {(title or f'job {job_id}').lower()}"
    return text + " *" if action == "APPLY" else text


def render_documents(ev: pa.Table, gap_us: int) -> dict[int, list[str]]:
    """`ev` has member_id, ts (epoch µs), action, query, job_id, company, title, sorted by (member_id, ts)."""
    member = ev["member_id"].to_numpy()
    starts = session_starts(member, ev["ts"].to_numpy(), gap_us)
    cols = [ev[c].to_pylist() for c in ("action", "query", "company", "title", "job_id")]
    texts = [render_event(a, q, c, t, j) for a, q, c, t, j in zip(*cols)]
    docs: dict[int, list[str]] = {}
    bounds = np.r_[np.flatnonzero(starts), member.size]
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        docs.setdefault(int(member[lo]), []).append(" ".join(texts[lo:hi]))
    return docs
