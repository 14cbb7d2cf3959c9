"""Job encoder (000's "Pensieve" role): dense job embeddings from content alone.

A job is a bag of content tokens (title words, skills, industry, seniority, remote, location). Each token has a
learned vector; the job embedding is the normalized mean of its tokens' vectors, so a brand-new job gets an
embedding from its content. Training is contrastive on co-interaction: two jobs the same member applied to or
saved close in time should be nearer than the other jobs in the batch (in-batch softmax).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 1


def job_tokens(jobs: pa.Table, industry_of_company: dict[int, str]) -> list[list[str]]:
    titles = jobs["title"].to_pylist()
    skills = jobs["skills"].to_pylist()
    comp = jobs["company_id"].to_pylist()
    sen, remote, loc = jobs["seniority"].to_pylist(), jobs["remote"].to_pylist(), jobs["location"].to_pylist()
    return [[f"t:{w}" for w in (titles[i] or "").lower().replace("/", " ").split()]
            + [f"s:{s}" for s in (skills[i] or [])]
            + [f"i:{industry_of_company.get(comp[i], '?')}", f"sen:{sen[i]}", f"loc:{loc[i]}",
               "remote" if remote[i] else "onsite"] for i in range(jobs.num_rows)]


def co_interaction_pairs(events: pa.Table, job_row: dict[int, int], max_gap: int = 3) -> np.ndarray:
    """(row_a, row_b) pairs — rows of the jobs table, via `job_row` — of positive actions (APPLY/SAVE) of one member
    at most `max_gap` actions apart; actions on jobs not in `job_row` are left out."""
    pos = events.filter(pc.is_in(events["action"], pa.array(["APPLY", "SAVE"])))
    pos = pos.sort_by([("member_id", "ascending"), ("ts", "ascending")])
    m = pos["member_id"].to_numpy()
    j = np.fromiter((job_row.get(int(x), -1) for x in pos["job_id"].to_numpy()), np.int64, pos.num_rows)
    m, j = m[j >= 0], j[j >= 0]
    pairs = [np.stack([j[:-k], j[k:]], 1)[(m[:-k] == m[k:]) & (j[:-k] != j[k:])] for k in range(1, max_gap + 1)]
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


class JobEncoder:
    def __init__(self, dim: int = 64, epochs: int = 2, batch_size: int = 1024, lr: float = 0.02,
                 temperature: float = 0.1, min_count: int = 2, max_pairs_per_epoch: int = 200_000, seed: int = 0):
        self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr
        self.max_pairs_per_epoch = max_pairs_per_epoch
        self.temperature, self.min_count, self.seed = temperature, min_count, seed

    def _token_matrix(self, tokens: list[list[str]]) -> torch.Tensor:
        """(n_jobs, max_len) token ids, 0-padded; a job with no known token gets the unknown token (1)."""
        rows = [[self.vocab_[t] for t in toks if t in self.vocab_] or [1] for toks in tokens]
        width = max(len(r) for r in rows)
        out = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, :len(r)] = torch.tensor(r)
        return out

    @staticmethod
    def _embed(token_ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        mask = (token_ids > 0).unsqueeze(-1).float()
        mean = (table[token_ids] * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return torch.nn.functional.normalize(mean, dim=1)

    def fit(self, tokens: list[list[str]], pairs: np.ndarray) -> JobEncoder:
        counts: dict[str, int] = {}
        for toks in tokens:
            for t in set(toks):
                counts[t] = counts.get(t, 0) + 1
        self.vocab_ = {"<pad>": 0, "<unk>": 1}
        for t in sorted(counts):
            if counts[t] >= self.min_count:
                self.vocab_[t] = len(self.vocab_)
        torch.manual_seed(self.seed)
        table = torch.nn.Parameter(torch.randn(len(self.vocab_), self.dim) * 0.1)
        matrix = self._token_matrix(tokens)
        opt = torch.optim.Adam([table], lr=self.lr)
        rng = np.random.default_rng(self.seed)
        self.loss_ = []
        for _ in range(self.epochs):
            order = rng.permutation(len(pairs))[:self.max_pairs_per_epoch]
            for s in range(0, len(order), self.batch_size):
                batch = torch.from_numpy(pairs[order[s:s + self.batch_size]])
                if len(batch) < 2:
                    continue
                logits = self._embed(matrix[batch[:, 0]], table) @ self._embed(matrix[batch[:, 1]], table).T
                logits = logits / self.temperature
                target = torch.arange(len(batch))
                loss = (torch.nn.functional.cross_entropy(logits, target)
                        + torch.nn.functional.cross_entropy(logits.T, target)) / 2
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.loss_.append(loss.item())
        self.weight_ = table.detach().numpy().copy()
        return self

    def transform(self, tokens: list[list[str]]) -> np.ndarray:
        """(n_jobs, dim) float32, unit length."""
        with torch.no_grad():
            return self._embed(self._token_matrix(tokens), torch.from_numpy(self.weight_)).numpy().astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "job_encoder.json", type(self), FORMAT_VERSION,
                   params={k: getattr(self, k) for k in ("dim", "epochs", "batch_size", "lr", "temperature",
                                                         "min_count", "max_pairs_per_epoch", "seed")})
        (d / "job_vocab.json").write_text(json.dumps(self.vocab_))
        np.savez(d / "job_encoder.npz", weight=self.weight_)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> JobEncoder:
        d = Path(directory)
        meta = read_meta(d / "job_encoder.json", cls, FORMAT_VERSION)
        enc = cls(**meta["params"])
        enc.vocab_ = json.loads((d / "job_vocab.json").read_text())
        with np.load(d / "job_encoder.npz", allow_pickle=False) as z:
            enc.weight_ = z["weight"]
        return enc
