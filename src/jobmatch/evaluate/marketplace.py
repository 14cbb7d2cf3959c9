"""Marketplace statistics (what the seeds describe about their data) and the report that shows them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

LENGTH_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, 10**9))


def _bucket_label(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else (f"{lo}+" if hi >= 10**9 else f"{lo}-{hi}")


def _dist(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {"n": 0}
    q = np.percentile(x, [10, 50, 90, 99])
    return {"n": int(x.size), "mean": float(x.mean()), "p10": float(q[0]), "median": float(q[1]),
            "p90": float(q[2]), "p99": float(q[3]), "max": float(x.max())}


def marketplace_stats(events: pa.Table, sessions: pa.Table, feedback: pa.Table | None = None) -> dict:
    """`events`: member_id, action, job_id, channel; `sessions`: the event log's sessions table."""
    action = events["action"]
    counts = pc.value_counts(action).to_pylist()
    total = events.num_rows
    action_share = {c["values"]: c["counts"] / total for c in sorted(counts, key=lambda c: -c["counts"])}
    channel_share = {c["values"]: c["counts"] / total for c in pc.value_counts(events["channel"]).to_pylist()}

    members = events["member_id"].to_numpy()
    n_members = np.unique(members).size
    searchers = np.unique(members[pc.equal(action, "SEARCH").to_numpy(zero_copy_only=False)])
    apply_mask = pc.equal(action, "APPLY").to_numpy(zero_copy_only=False)
    _, applies_per_member = np.unique(members[apply_mask], return_counts=True)
    apply_pairs = np.unique(np.stack([events["job_id"].to_numpy(zero_copy_only=False)[apply_mask],
                                      members[apply_mask]]), axis=1)
    _, applicants_per_job = np.unique(apply_pairs[0], return_counts=True)

    s_member = sessions["member_id"].to_numpy()
    _, sessions_per_member = np.unique(s_member, return_counts=True)
    length = sessions["n_events"].to_numpy()
    has_search = sessions["n_search"].to_numpy() > 0
    has_apply = sessions["n_apply"].to_numpy() > 0
    after = sessions["apply_after_search"].to_numpy(zero_copy_only=False)
    by_length = []
    for lo, hi in LENGTH_BUCKETS:
        m = (length >= lo) & (length <= hi)
        n = int(m.sum())
        row = {"length": _bucket_label(lo, hi), "sessions": n}
        for code in ("0_0_0", "0_1_0", "1_0_0", "1_1_0", "1_1_1"):
            s, a, sa = (int(c) for c in code.split("_"))
            row[code] = int((m & (has_search == bool(s)) & (has_apply == bool(a)) & (after == bool(sa))).sum())
        row["share_search"] = float(has_search[m].mean()) if n else 0.0
        row["share_apply"] = float(has_apply[m].mean()) if n else 0.0
        searched = m & has_search
        row["share_apply_after_search_of_search"] = float(after[searched].mean()) if searched.any() else 0.0
        by_length.append(row)

    stats = {
        "events": total, "members": int(n_members), "sessions": int(len(length)),
        "action_share": action_share, "channel_share": channel_share,
        "never_searched_share": 1 - searchers.size / n_members if n_members else 0.0,
        "sessions_per_member": _dist(sessions_per_member),
        "session_length": _dist(length),
        "applies_per_applicant": {**_dist(applies_per_member),
                                  "share_ge_5": float((applies_per_member >= 5).mean()) if applies_per_member.size else 0.0},
        "applicants_per_job": {**_dist(applicants_per_job),
                               "share_ge_10": float((applicants_per_job >= 10).mean()) if applicants_per_job.size else 0.0},
        "events_per_member": _dist(np.unique(members, return_counts=True)[1]),
        "by_session_length": by_length,
    }
    if feedback is not None and feedback.num_rows:
        fb = {c["values"]: c["counts"] for c in pc.value_counts(feedback["feedback"]).to_pylist()}
        by_channel = {c["values"]: c["counts"] for c in pc.value_counts(feedback["channel"]).to_pylist()}
        stats["feedback"] = {"events": feedback.num_rows, "by_type": fb, "by_channel": by_channel}
    return stats


def plots(stats: dict, sessions: pa.Table, events: pa.Table, out: Path, fmt: str = "png") -> list[tuple[str, str]]:
    """The report's figures written to `out` as `fmt` files (png for reports, svg for the explorer); (caption, file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    rows = stats["by_session_length"]
    labels = [r["length"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    bottom = np.zeros(len(rows))
    for code in ("0_0_0", "0_1_0", "1_0_0", "1_1_0", "1_1_1"):
        vals = np.array([r[code] for r in rows], float)
        left.bar(labels, vals, bottom=bottom, label=code)
        bottom += vals
    left.set_title("sessions by length (search_apply_applyAfterSearch)")
    left.set_xlabel("session length (events)")
    left.legend(fontsize=8)
    for key, name in (("share_search", "has search"), ("share_apply", "has apply"),
                      ("share_apply_after_search_of_search", "apply after search (of search sessions)")):
        right.plot(labels, [r[key] for r in rows], marker="o", label=name)
    right.set_ylim(0, 1)
    right.set_title("shares by session length (002 Figure 3)")
    right.set_xlabel("session length (events)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"sessions_by_length.{fmt}", dpi=110)
    plt.close(fig)
    figures.append(("Sessions by length (002 Figure 3 analog)", f"sessions_by_length.{fmt}"))

    members = events["member_id"].to_numpy()
    apply_mask = pc.equal(events["action"], "APPLY").to_numpy(zero_copy_only=False)
    _, per_member = np.unique(members[apply_mask], return_counts=True)
    jobs = events["job_id"].to_numpy(zero_copy_only=False)[apply_mask]
    _, per_job = np.unique(np.unique(np.stack([jobs, members[apply_mask]]), axis=1)[0], return_counts=True)
    _, sess_per_member = np.unique(sessions["member_id"].to_numpy(), return_counts=True)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, data, title, mark in ((axes[0], sess_per_member, "sessions per member", None),
                                  (axes[1], per_member, "applies per applicant", 5),
                                  (axes[2], per_job, "applicants per job", 10)):
        bins = np.unique(np.logspace(0, np.log10(max(2, data.max() + 1)), 40).astype(int))
        ax.hist(data, bins=bins)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title)
        if mark:
            ax.axvline(mark, color="k", ls="--", lw=1)
    fig.tight_layout()
    fig.savefig(out / f"distributions.{fmt}", dpi=110)
    plt.close(fig)
    figures.append(("Activity distributions (log-log; dashed: the seeds' 5 applies / 10 applicants)",
                    f"distributions.{fmt}"))
    return figures


def write_marketplace_report(stats: dict, sessions: pa.Table, events: pa.Table, out: str | Path,
                             title: str = "jobmatch marketplace report", preface: str = "") -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "marketplace.json").write_text(json.dumps(stats, indent=2) + "\n")
    figures = plots(stats, sessions, events, out)
    a, j = stats["applies_per_applicant"], stats["applicants_per_job"]
    lines = [f"# {title}", "", preface, "",
             "## Volume", "",
             "| events | members | sessions | never searched |", "|---|---|---|---|",
             f"| {stats['events']:,} | {stats['members']:,} | {stats['sessions']:,} | "
             f"{stats['never_searched_share']:.1%} |", "",
             "## Seeds' regime", "",
             "| statistic | median | mean | p90 | p99 | share meeting the seed |", "|---|---|---|---|---|---|",
             f"| applies per applicant | {a['median']:.0f} | {a['mean']:.1f} | {a['p90']:.0f} | {a['p99']:.0f} | "
             f"{a['share_ge_5']:.1%} apply to ≥ 5 jobs |",
             f"| applicants per job | {j['median']:.0f} | {j['mean']:.1f} | {j['p90']:.0f} | {j['p99']:.0f} | "
             f"{j['share_ge_10']:.1%} get ≥ 10 applicants |"]
    for key, name in (("sessions_per_member", "sessions per member"), ("session_length", "session length (events)"),
                      ("events_per_member", "events per member")):
        d = stats[key]
        lines.append(f"| {name} | {d['median']:.0f} | {d['mean']:.1f} | {d['p90']:.0f} | {d['p99']:.0f} | |")
    lines += ["", "## Action and channel shares", "", "| action | share |", "|---|---|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in stats["action_share"].items()]
    lines += ["", "| channel | share |", "|---|---|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in sorted(stats["channel_share"].items(), key=lambda kv: -kv[1])]
    lines += ["", "## Sessions by length", "",
              "| length | sessions | with search | with apply | apply after search (of search sessions) |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['length']} | {r['sessions']:,} | {r['share_search']:.1%} | {r['share_apply']:.1%} | "
              f"{r['share_apply_after_search_of_search']:.1%} |" for r in stats["by_session_length"]]
    if "feedback" in stats:
        fb = stats["feedback"]
        lines += ["", "## Hirer feedback", "", f"{fb['events']:,} feedback events.", "",
                  "| feedback | count |", "|---|---|"]
        lines += [f"| {k} | {v:,} |" for k, v in sorted(fb["by_type"].items(), key=lambda kv: -kv[1])]
    for caption, name in figures:
        lines += ["", f"### {caption}", "", f"![{caption}]({name})"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
