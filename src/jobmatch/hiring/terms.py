"""Profile terms: each member as boolean term vectors p_t, one per term type (003's "term types")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

TERM_TYPES = ("skill", "title", "occupation", "seniority", "location")


def _member_terms(members: pa.Table) -> list[list[tuple[str, str]]]:
    skills = members["skills"].to_pylist()
    cols = {c: members[c].to_pylist() for c in ("title", "occupation", "seniority", "location")}
    return [[("skill", s) for s in (skills[i] or [])]
            + [(t, str(cols[t][i]).lower()) for t in ("title", "occupation", "seniority", "location")
               if cols[t][i] is not None]
            for i in range(members.num_rows)]


@dataclass
class ProfileTerms:
    """A vocabulary of (term type, term) and a CSR matrix members x terms (row = position in `member_ids`)."""

    member_ids: np.ndarray
    term_type: np.ndarray  # index into TERM_TYPES, per term
    term_names: list[str]
    matrix: sp.csr_matrix

    @classmethod
    def from_members(cls, members: pa.Table) -> ProfileTerms:
        vocab: dict[tuple[str, str], int] = {}
        indptr, indices = [0], []
        for terms in _member_terms(members):
            row = sorted({vocab.setdefault(t, len(vocab)) for t in terms})
            indices.extend(row)
            indptr.append(len(indices))
        names = [f"{t}:{v}" for t, v in vocab]
        types = np.array([TERM_TYPES.index(t) for t, _ in vocab], np.int8)
        data = np.ones(len(indices), np.float32)
        matrix = sp.csr_matrix((data, np.array(indices, np.int64), np.array(indptr)), shape=(len(indptr) - 1, len(vocab)))
        ids = members["member_id"].to_numpy()
        return cls(ids, types, names, matrix)

    def __post_init__(self) -> None:
        self._row = {int(m): i for i, m in enumerate(self.member_ids)}

    def rows(self, member_ids: np.ndarray | list[int]) -> np.ndarray:
        """Row positions of members; raises naming the first unknown member."""
        try:
            return np.fromiter((self._row[int(m)] for m in member_ids), np.int64, len(member_ids))
        except KeyError as e:
            raise KeyError(f"member_id: unknown member {e.args[0]}") from None

    def terms_of(self, member_id: int) -> np.ndarray:
        r = self.rows([member_id])[0]
        return self.matrix.indices[self.matrix.indptr[r]:self.matrix.indptr[r + 1]]
