"""The Taxonomy interface: occupations with titles, weighted skills, career moves and seniority."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Occupation:
    code: str
    title: str
    family: str
    job_zone: int  # 1 (little preparation) .. 5 (extensive), O*NET's job zones; used as seniority
    alt_titles: tuple[str, ...]
    skills: tuple[tuple[str, float], ...]  # (skill, importance in (0, 1]), most important first
    related: tuple[tuple[str, int], ...] = field(default=())  # (occupation code, tier: 1 primary, 2 supplemental)


class Taxonomy:
    """An immutable set of occupations, addressable by code, with related links restricted to members of the set."""

    def __init__(self, name: str, occupations: Iterable[Occupation]):
        occs = list(occupations)
        codes = {o.code for o in occs}
        if len(codes) != len(occs):
            raise ValueError(f"taxonomy {name!r}: duplicate occupation codes")
        self.name = name
        self.occupations: tuple[Occupation, ...] = tuple(
            Occupation(o.code, o.title, o.family, o.job_zone, o.alt_titles, o.skills,
                       tuple((c, t) for c, t in o.related if c in codes and c != o.code))
            for o in occs
        )
        self._by_code = {o.code: o for o in self.occupations}

    def __len__(self) -> int:
        return len(self.occupations)

    def __getitem__(self, code: str) -> Occupation:
        return self._by_code[code]

    def __contains__(self, code: object) -> bool:
        return code in self._by_code

    @property
    def families(self) -> list[str]:
        return sorted({o.family for o in self.occupations})

    def subset(self, codes: Sequence[str]) -> Taxonomy:
        return Taxonomy(self.name, (self._by_code[c] for c in codes))
