"""Writes the small bring-your-own-data marketplace in this folder (JSONL, one file per kind).

It is not produced by the simulator: a plain script with its own little story (four employers hiring nurses,
data analysts, line cooks and electricians in three cities over three weeks), kept so you can see how each file
is shaped and regenerate it. Run: python examples/byod/make_data.py
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).parent
START = datetime(2026, 3, 2, tzinfo=timezone.utc)
DAYS = 21
OCCUPATIONS = {
    "29-1141.00": ("registered nurse", ["patient care", "triage", "medication administration", "charting"]),
    "15-2051.01": ("data analyst", ["sql", "python", "dashboards", "statistics"]),
    "35-2014.00": ("line cook", ["grill", "food safety", "prep", "inventory"]),
    "47-2111.00": ("electrician", ["wiring", "blueprints", "conduit", "safety codes"]),
}
CITIES = ("portland", "denver", "columbus")
COMPANIES = [(1, "Riverside Health", "healthcare", "portland"), (2, "Numbers & Co", "technology", "denver"),
             (3, "Blue Plate Diners", "hospitality", "columbus"), (4, "Bright Spark Electric", "construction",
                                                                   "denver")]
COMPANY_OF = {"29-1141.00": 1, "15-2051.01": 2, "35-2014.00": 3, "47-2111.00": 4}


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def main(seed: int = 2026) -> None:
    rng = random.Random(seed)
    occupations = list(OCCUPATIONS)
    jobs, projects = [], []
    for job_id in range(100, 132):
        occ = occupations[job_id % 4]
        title, skills = OCCUPATIONS[occ]
        seniority = rng.choice([2, 3, 3, 4])
        posted = START - timedelta(days=rng.randint(0, 10)) + timedelta(days=rng.randint(0, 8))
        jobs.append({"job_id": job_id, "company_id": COMPANY_OF[occ], "title": ("senior " if seniority == 4 else "")
                     + title, "occupation": occ, "skills": rng.sample(skills, 3), "location": rng.choice(CITIES),
                     "remote": occ == "15-2051.01" and rng.random() < 0.5, "seniority": seniority,
                     "posted_at": iso(posted), "expires_at": iso(posted + timedelta(days=45))})
        projects.append({"project_id": 9000 + job_id, "job_id": job_id, "company_id": COMPANY_OF[occ],
                         "created_at": iso(posted)})
    members = []
    for member_id in range(1, 121):
        occ = occupations[member_id % 4]
        title, skills = OCCUPATIONS[occ]
        members.append({"member_id": member_id, "title": title, "occupation": occ,
                        "skills": rng.sample(skills, rng.randint(2, 4)), "seniority": rng.choice([2, 3, 4]),
                        "location": rng.choice(CITIES), "open_to_work": rng.random() < 0.5})
    posted_at = {j["job_id"]: datetime.fromisoformat(j["posted_at"]) for j in jobs}
    by_occ = {o: [j for j in jobs if j["occupation"] == o] for o in occupations}
    events, impressions, feedback, hirer_impressions = [], [], [], []
    quality = {m["member_id"]: rng.gauss(0, 1) for m in members}
    applied: set[tuple[int, int]] = set()
    for m in members:
        occ, mid = m["occupation"], m["member_id"]
        for s in range(rng.randint(5, 12)):
            t = START + timedelta(days=rng.uniform(0, DAYS - 0.2), hours=0)
            channel = rng.choice(["search", "search", "recommendations"])
            request = f"m{mid}s{s}"
            if channel == "search":
                query = rng.choice([OCCUPATIONS[occ][0], OCCUPATIONS[occ][1][0]])
                events.append({"event_id": f"{request}q", "member_id": mid, "ts": iso(t), "action": "SEARCH",
                               "channel": "search", "query": query})
            else:
                query = None
            open_jobs = [j for j in by_occ[occ] if posted_at[j["job_id"]] <= t] or by_occ[occ]
            shown = rng.sample(open_jobs, min(5, len(open_jobs)))
            for pos, job in enumerate(shown):
                ts = t + timedelta(seconds=5 + 30 * pos)
                impressions.append({"impression_id": f"{request}i{pos}", "request_id": request, "member_id": mid,
                                    "job_id": job["job_id"], "ts": iso(ts), "channel": channel, "position": pos,
                                    **({"query": query} if query else {})})
                if rng.random() < 0.6 - 0.08 * pos:
                    events.append({"event_id": f"{request}v{pos}", "member_id": mid, "ts": iso(ts),
                                   "action": "VIEW", "channel": channel, "job_id": job["job_id"]})
                    r = rng.random()
                    later = iso(ts + timedelta(seconds=20))
                    if r < 0.35 and (mid, job["job_id"]) not in applied:
                        applied.add((mid, job["job_id"]))
                        events.append({"event_id": f"{request}a{pos}", "member_id": mid, "ts": later,
                                       "action": "APPLY", "channel": channel, "job_id": job["job_id"]})
                        fit = quality[mid] - abs(m["seniority"] - job["seniority"]) + rng.gauss(0, 0.7)
                        delay = timedelta(hours=rng.uniform(2, 72))
                        kind = "message" if fit > 0.3 else ("view_profile" if fit > -0.3 else "archive")
                        if t + delay < START + timedelta(days=DAYS) and rng.random() < 0.85:
                            feedback.append({"feedback_id": f"{request}f{pos}", "project_id": 9000 + job["job_id"],
                                             "member_id": mid, "ts": iso(t + delay), "channel": "applicants",
                                             "feedback": kind})
                    elif r < 0.55:
                        events.append({"event_id": f"{request}s{pos}", "member_id": mid, "ts": later,
                                       "action": "SAVE", "channel": channel, "job_id": job["job_id"]})
                    elif r < 0.7 and channel == "recommendations":
                        events.append({"event_id": f"{request}d{pos}", "member_id": mid, "ts": later,
                                       "action": "DISMISS", "channel": channel, "job_id": job["job_id"]})
    for job in jobs:  # each project's recruiter looks at a few recommended candidates twice
        pool = [m for m in members if m["occupation"] == job["occupation"]]
        for r in range(2):
            t = max(posted_at[job["job_id"]], START) + timedelta(days=rng.uniform(0.5, 12))
            request = f"p{job['job_id']}r{r}"
            for pos, m in enumerate(rng.sample(pool, 6)):
                hirer_impressions.append({"impression_id": f"{request}c{pos}", "request_id": request,
                                          "project_id": 9000 + job["job_id"], "member_id": m["member_id"],
                                          "ts": iso(t), "channel": "recommended_matches", "position": pos})
                liked = set(m["skills"]) & set(job["skills"])
                kind = "message" if len(liked) >= 2 and rng.random() < 0.7 else rng.choice(["skip", "archive"])
                feedback.append({"feedback_id": f"{request}f{pos}", "project_id": 9000 + job["job_id"],
                                 "member_id": m["member_id"], "ts": iso(t + timedelta(minutes=15)),
                                 "channel": "recommended_matches", "feedback": kind})
    companies = [{"company_id": c, "name": n, "industry": i, "location": loc} for c, n, i, loc in COMPANIES]
    for name, rows in (("companies", companies), ("jobs", jobs), ("members", members), ("projects", projects),
                       ("events", events), ("feedback", feedback), ("impressions", impressions),
                       ("hirer_impressions", hirer_impressions)):
        (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
