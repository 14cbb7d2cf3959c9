"""Personalized clause sets for candidate selection (002 §4.4, §5.5) and their learned weights.

Three sources of clauses per member:
  * the profile (the baseline): its occupation, its title as a phrase, each listed skill, its city;
  * predicted entities (the member's Slice suggestions: queries and applied titles): an entity naming a skill is a
    skill clause, anything else a title phrase; a leading "remote" becomes a remote condition of the same clause
    (002 rewrites "tmt analyst" as titleId AND skillId the same way);
  * SANNS: the titles and occupations of jobs that seekers similar to the member applied to (`ann.sanns`).
Each clause has a kind (`profile_title`, `predicted_skill`, `sanns_occupation`, ...). `ClauseWeights` is the light
model of P(apply | clauses matched): a logistic regression on how many clauses of each kind a job matches, whose
coefficients become the clauses' weights (a kind whose coefficient is not positive is dropped).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from jobmatch.persist import read_meta, write_meta
from jobmatch.retrieval.index import Clause, title_words

PROFILE_KINDS = ("profile_occupation", "profile_title", "profile_skill", "profile_location")
FORMAT_VERSION = 1


def profile_clauses(occupation: str, title: str, skills: Iterable[str], location: str) -> list[Clause]:
    out = [Clause("profile_occupation", (("occupation", occupation),))]
    if title_words(title):
        out.append(Clause("profile_title", (("title", title),)))
    out += [Clause("profile_skill", (("skills", s),)) for s in dict.fromkeys(s.lower() for s in skills)]
    out.append(Clause("profile_location", (("location", location),)))
    return out


def entity_clauses(entities: Iterable[str], source: str, skills: Collection[str]) -> list[Clause]:
    """Clauses of kind `<source>_skill` / `<source>_title` from entity strings (see the module docstring)."""
    out, seen = [], set()
    for entity in entities:
        words = title_words(entity)
        remote = bool(words) and words[0] == "remote"
        text = " ".join(words[1:] if remote else words)
        if not text or (text, remote) in seen:
            continue
        seen.add((text, remote))
        cond = (("skills", text),) if text in skills else (("title", text),)
        kind = f"{source}_{'skill' if cond[0][0] == 'skills' else 'title'}"
        out.append(Clause(kind, cond + ((("remote", "true"),) if remote else ())))
    return out


def occupation_clauses(occupations: Iterable[str], source: str) -> list[Clause]:
    return [Clause(f"{source}_occupation", (("occupation", o),)) for o in dict.fromkeys(occupations)]


def kinds_of(sources: Sequence[str]) -> tuple[str, ...]:
    """The clause kinds a variant made of these sources (`profile`, `predicted`, `sanns`) can produce."""
    table = {"profile": PROFILE_KINDS, "predicted": ("predicted_skill", "predicted_title"),
             "sanns": ("sanns_occupation", "sanns_skill", "sanns_title")}
    unknown = [s for s in sources if s not in table]
    if unknown:
        raise ValueError(f"sources: expected some of {', '.join(table)}, got {unknown}")
    return tuple(k for s in sources for k in table[s])


class ClauseWeights:
    """P(apply | clauses matched) = sigmoid(b + sum over kinds of w_kind x matched clauses of that kind)."""

    def __init__(self, C: float = 1.0, seed: int = 0):
        self.C, self.seed = C, seed

    def fit(self, counts: np.ndarray, applied: np.ndarray, kinds: Sequence[str]) -> ClauseWeights:
        counts = np.asarray(counts, float)
        y = np.asarray(applied).astype(int)
        if counts.ndim != 2 or counts.shape != (y.size, len(kinds)):
            raise ValueError(f"counts: expected ({y.size}, {len(kinds)}) (candidates x clause kinds), got "
                             f"{counts.shape}")
        if y.min(initial=1) == y.max(initial=0):
            raise ValueError("applied: the candidates need both applied and not-applied jobs to learn weights")
        model = LogisticRegression(C=self.C, max_iter=1000, random_state=self.seed).fit(counts, y)
        self.kinds_ = list(kinds)
        self.coef_ = model.coef_[0].astype(float)
        self.intercept_ = float(model.intercept_[0])
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Per kind, the weight its clauses get in the retrieval query (0: the kind is dropped)."""
        return {k: max(float(c), 0.0) for k, c in zip(self.kinds_, self.coef_)}

    def score(self, counts: np.ndarray) -> np.ndarray:
        """The retrieval score of candidates from their counts per kind (the same as the index's)."""
        return np.asarray(counts, float) @ np.array([self.weights[k] for k in self.kinds_])

    def save(self, path: str | Path) -> Path:
        """One JSON file (class and format version checked on load)."""
        path = Path(path)
        write_meta(path, type(self), FORMAT_VERSION, C=self.C, seed=self.seed, kinds=self.kinds_,
                   coef=self.coef_.tolist(), intercept=self.intercept_)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ClauseWeights:
        meta = read_meta(Path(path), cls, FORMAT_VERSION)
        model = cls(meta["C"], meta["seed"])
        model.kinds_, model.coef_, model.intercept_ = meta["kinds"], np.array(meta["coef"]), meta["intercept"]
        return model


__all__ = ["ClauseWeights", "PROFILE_KINDS", "entity_clauses", "kinds_of", "occupation_clauses", "profile_clauses"]
