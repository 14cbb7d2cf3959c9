"""O*NET loader: builds a Taxonomy from the O*NET database tables (gzipped TSV, one header row, as published).

Occupations come from occupation_data; titles from alternate_titles and sample_of_reported_titles; weighted
skills from skills and knowledge importance (IM scale, 1-5) plus technology skills (hot technologies weigh
more); career moves from related_occupations (Primary-* tiers -> 1, Supplemental -> 2); seniority from
job_zones. The family is the SOC major group. Occupations without any skill data are left out.
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from jobmatch.taxonomy.base import Occupation, Taxonomy

SOC_MAJOR_GROUPS = {
    "11": "management", "13": "business & financial operations", "15": "computer & mathematical",
    "17": "architecture & engineering", "19": "life, physical & social science", "21": "community & social service",
    "23": "legal", "25": "education & library", "27": "arts, design, entertainment & media",
    "29": "healthcare practitioners", "31": "healthcare support", "33": "protective service",
    "35": "food preparation & serving", "37": "building & grounds maintenance", "39": "personal care & service",
    "41": "sales", "43": "office & administrative support", "45": "farming, fishing & forestry",
    "47": "construction & extraction", "49": "installation, maintenance & repair", "51": "production",
    "53": "transportation & material moving", "55": "military",
}
REQUIRED_TABLES = ("occupation_data", "alternate_titles", "sample_of_reported_titles", "related_occupations",
                   "skills", "knowledge", "technology_skills", "job_zones")
MAX_ALT_TITLES = 30
TOP_RATED = 6  # most important O*NET skills and knowledge areas kept per occupation
TOP_TECH = 8
MAX_TECH_SPREAD = 0.10  # technologies listed for more than this share of occupations are left out


def _rows(root: Path, table: str) -> Iterator[dict[str, str]]:
    with gzip.open(root / f"{table}.tsv.gz", "rt", encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def load_onet(path: str | Path) -> Taxonomy:
    root = Path(path)
    missing = [t for t in REQUIRED_TABLES if not (root / f"{t}.tsv.gz").is_file()]
    if missing:
        raise FileNotFoundError(f"O*NET path {str(root)!r} lacks tables: {', '.join(t + '.tsv.gz' for t in missing)}")

    titles = {r["O*NET-SOC Code"]: r["Title"] for r in _rows(root, "occupation_data")}
    alts: dict[str, dict[str, None]] = defaultdict(dict)  # ordered sets
    for table, column in (("sample_of_reported_titles", "Reported Job Title"), ("alternate_titles", "Alternate Title")):
        for r in _rows(root, table):
            alts[r["O*NET-SOC Code"]][r[column].strip().lower()] = None

    rated: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for table in ("skills", "knowledge"):
        per_code: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for r in _rows(root, table):
            if r["Scale ID"] == "IM" and r["Recommend Suppress"] != "Y":
                per_code[r["O*NET-SOC Code"]].append((r["Element Name"].lower(), (float(r["Data Value"]) - 1) / 4))
        for code, items in per_code.items():
            rated[code].extend(sorted(items, key=lambda sw: -sw[1])[:TOP_RATED])
    tech: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in _rows(root, "technology_skills"):
        weight = 0.5 + 0.3 * (r["Hot Technology"] == "Y") + 0.2 * (r["In Demand"] == "Y")
        tech[r["O*NET-SOC Code"]].append((r["Example"].lower(), weight))
    # Office suites and the like are listed for most occupations and say nothing about which one a job is.
    spread = Counter(name for items in tech.values() for name, _ in {n: w for n, w in items}.items())
    common = {name for name, n in spread.items() if n > MAX_TECH_SPREAD * len(tech)}

    zones = {r["O*NET-SOC Code"]: int(r["Job Zone"]) for r in _rows(root, "job_zones")}
    related: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for r in _rows(root, "related_occupations"):
        tier = 2 if r["Relatedness Tier"].startswith("Supplemental") else 1
        related[r["O*NET-SOC Code"]].append((r["Related O*NET-SOC Code"], tier))

    occupations = []
    for code, title in titles.items():
        skills = dict(rated.get(code, []))
        specific = [(n, w) for n, w in tech.get(code, []) if n not in common]
        for name, w in sorted(specific, key=lambda sw: -sw[1])[:TOP_TECH]:
            skills.setdefault(name, w)
        if not skills:
            continue
        alt = tuple(t for t in alts.get(code, {}) if t != title.lower())[:MAX_ALT_TITLES]
        occupations.append(Occupation(
            code=code, title=title, family=SOC_MAJOR_GROUPS.get(code[:2], code[:2]), job_zone=zones.get(code, 3),
            alt_titles=alt or (title.lower(),), skills=tuple(sorted(skills.items(), key=lambda sw: -sw[1])),
            related=tuple(related.get(code, ())),
        ))
    return Taxonomy("onet", occupations)
