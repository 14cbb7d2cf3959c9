"""Member activity aggregators (000) behind one interface: fit / transform / save / load, with a versioned key.

* `mean`: unweighted mean of the job embeddings of each action type (APPLY, SAVE, DISMISS): three embeddings;
* `decay`: per action type, weights r^age (age = how many later actions of that type), normalized to sum to 1;
* `learned-cnn` / `learned-transformer`: one embedding from the interleaved sequence of job embedding ⊕ one-hot
  action, trained on 000's proxy task (Hadamard product with the held-out job's embedding -> linear -> softmax).
Padded slots never influence an output: they are masked out of every sum, convolution input and attention.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jobmatch.embed.sequences import APPLY, DISMISS, N_ACTION_CODES, PAD, SAVE, SEQ_LEN, ProxyExamples, Sequences
from jobmatch.persist import read_meta, write_meta

ACTION_TYPES = (APPLY, SAVE, DISMISS)


def gather(seqs: Sequences, job_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, SEQ_LEN, dim) job embeddings (zero at PAD) and the (n, SEQ_LEN) mask of real actions."""
    mask = seqs.action != PAD
    emb = job_emb[np.maximum(seqs.job, 0)] * mask[..., None]
    return emb.astype(np.float32), mask


class Aggregator(ABC):
    name: str
    version: int = 1

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}"

    def fit(self, examples: ProxyExamples | None, job_emb: np.ndarray) -> Aggregator:
        return self

    @abstractmethod
    def transform(self, seqs: Sequences, job_emb: np.ndarray) -> np.ndarray:
        """(n_members, output dim) float32."""

    @abstractmethod
    def params(self) -> dict: ...

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "aggregator.json", type(self), self.version, params=self.params())
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Aggregator:
        return cls(**read_meta(Path(directory) / "aggregator.json", cls, cls.version)["params"])


class MeanAggregator(Aggregator):
    name = "mean"

    def weights(self, seqs: Sequences) -> np.ndarray:
        """(n, 3, SEQ_LEN) weights of each slot in each action type's embedding."""
        w = np.stack([(seqs.action == a) for a in ACTION_TYPES], axis=1).astype(np.float64)
        return w / np.maximum(w.sum(axis=2, keepdims=True), 1.0)

    def transform(self, seqs: Sequences, job_emb: np.ndarray, batch: int = 8192) -> np.ndarray:
        out = np.empty((len(seqs), len(ACTION_TYPES) * job_emb.shape[1]), np.float32)
        for lo in range(0, len(seqs), batch):  # chunks keep the (n, SEQ_LEN, dim) gather small
            part = seqs.take(np.arange(lo, min(lo + batch, len(seqs))))
            emb, _ = gather(part, job_emb)
            w = self.weights(part).astype(np.float32)
            out[lo:lo + len(part)] = np.matmul(w, emb).reshape(len(part), -1)
        return out

    def params(self) -> dict:
        return {}


class DecayAggregator(MeanAggregator):
    name = "decay"

    def __init__(self, r: float = 0.8):
        if not 0 < r <= 1:
            raise ValueError(f"r: the decay rate must be in (0, 1], got {r}")
        self.r = r

    def weights(self, seqs: Sequences) -> np.ndarray:
        is_type = np.stack([(seqs.action == a) for a in ACTION_TYPES], axis=1)  # (n, 3, L)
        # age = number of later actions of the same type (the most recent has age 0)
        age = np.flip(np.cumsum(np.flip(is_type, axis=2), axis=2), axis=2) - 1
        w = np.where(is_type, self.r ** np.maximum(age, 0), 0.0)
        return w / np.maximum(w.sum(axis=2, keepdims=True), 1e-300)

    def params(self) -> dict:
        return {"r": self.r}


class _SequenceNet(nn.Module):
    def __init__(self, arch: str, dim: int, hidden: int):
        super().__init__()
        self.arch = arch
        width = dim + N_ACTION_CODES
        if arch == "cnn":
            self.conv = nn.Sequential(nn.Conv1d(width, hidden, 3, padding=1), nn.ReLU(),
                                      nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
            self.out = nn.Linear(2 * hidden, dim)
        else:
            self.proj = nn.Linear(width, hidden)
            self.pos = nn.Parameter(torch.zeros(SEQ_LEN, hidden))
            layer = nn.TransformerEncoderLayer(hidden, nhead=4, dim_feedforward=2 * hidden, dropout=0.0,
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
            self.out = nn.Linear(hidden, dim)
        self.head = nn.Linear(dim, 2)

    def embed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).float()
        x = x * m  # whatever sits in a padded slot is gone here
        n = m.sum(1).clamp(min=1.0)
        if self.arch == "cnn":
            h = self.conv(x.transpose(1, 2)).transpose(1, 2)
            h_mean = (h * m).sum(1) / n
            h_max = torch.where(m > 0, h, torch.full_like(h, -1e9)).amax(1)
            return self.out(torch.cat([h_mean, torch.where(n > 0, h_max, 0.0)], dim=1))
        h = self.proj(x) + self.pos
        any_real = mask.any(dim=1, keepdim=True)
        key_mask = ~mask & any_real  # fully padded rows attend to everything (their output is zeroed below)
        h = self.encoder(h, src_key_padding_mask=key_mask)
        return self.out((h * m).sum(1) / n) * any_real.float()

    def forward(self, x, mask, target):
        return self.head(self.embed(x, mask) * target)


class LearnedAggregator(Aggregator):
    """A CNN or Transformer aggregator trained on the proxy task; one `dim`-d embedding per member.

    Version 2: contexts hold real actions only (random negatives are targets, never inputs), so the action
    one-hot has no RAND_NEG column."""

    version = 2

    def __init__(self, arch: str = "cnn", dim: int = 64, hidden: int = 64, epochs: int = 3, batch_size: int = 512,
                 lr: float = 2e-3, seed: int = 0):
        if arch not in ("cnn", "transformer"):
            raise ValueError(f"arch: expected 'cnn' or 'transformer', got {arch!r}")
        self.arch, self.dim, self.hidden, self.epochs = arch, dim, hidden, epochs
        self.batch_size, self.lr, self.seed = batch_size, lr, seed

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"learned-{self.arch}"

    def params(self) -> dict:
        return {k: getattr(self, k) for k in ("arch", "dim", "hidden", "epochs", "batch_size", "lr", "seed")}

    @staticmethod
    def _inputs(seqs: Sequences, job_emb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        emb, mask = gather(seqs, job_emb)
        onehot = np.eye(N_ACTION_CODES, dtype=np.float32)[seqs.action]
        return torch.from_numpy(np.concatenate([emb, onehot], axis=2)), torch.from_numpy(mask)

    def fit(self, examples: ProxyExamples | None, job_emb: np.ndarray) -> LearnedAggregator:
        if examples is None or examples.label.size == 0:
            raise ValueError("examples: the learned aggregator needs proxy-task examples")
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.net_ = _SequenceNet(self.arch, self.dim, self.hidden)
        opt = torch.optim.Adam(self.net_.parameters(), lr=self.lr)
        target = torch.from_numpy(job_emb[np.maximum(examples.target_job, 0)].astype(np.float32))
        label = torch.from_numpy(examples.label)
        weight = torch.from_numpy(examples.weight.astype(np.float32))
        self.loss_ = []
        self.net_.train()
        for _ in range(self.epochs):
            order = rng.permutation(label.numel())
            for s in range(0, order.size, self.batch_size):
                idx = order[s:s + self.batch_size]
                x, mask = self._inputs(examples.context.take(idx), job_emb)
                logits = self.net_(x, mask, target[idx])
                loss = (nn.functional.cross_entropy(logits, label[idx], reduction="none") * weight[idx]).sum() \
                    / weight[idx].sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.loss_.append(loss.item())
        self.net_.eval()
        return self

    def predict_proba(self, context: Sequences, target_job: np.ndarray, job_emb: np.ndarray) -> np.ndarray:
        """P(the target action is positive) under the proxy head."""
        x, mask = self._inputs(context, job_emb)
        with torch.no_grad():
            logits = self.net_(x, mask, torch.from_numpy(job_emb[np.maximum(target_job, 0)].astype(np.float32)))
        return torch.softmax(logits, dim=1)[:, 1].numpy()

    def transform(self, seqs: Sequences, job_emb: np.ndarray, batch: int = 4096) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(seqs), batch):
                x, mask = self._inputs(seqs.take(np.arange(s, min(s + batch, len(seqs)))), job_emb)
                out.append(self.net_.embed(x, mask).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)

    def save(self, directory: str | Path) -> Path:
        d = super().save(directory)
        np.savez(d / "weights.npz", **{k: v.detach().numpy() for k, v in self.net_.state_dict().items()})
        return d

    @classmethod
    def load(cls, directory: str | Path) -> LearnedAggregator:
        d = Path(directory)
        model = cls(**read_meta(d / "aggregator.json", cls, cls.version)["params"])
        model.net_ = _SequenceNet(model.arch, model.dim, model.hidden)
        with np.load(d / "weights.npz", allow_pickle=False) as z:
            model.net_.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files})
        model.net_.eval()
        return model


def registry(decay_r: float = 0.8, epochs: int = 3, seed: int = 0) -> dict[str, Aggregator]:
    """Every encoder the inference flow computes; a new one is one line here."""
    return {
        "mean": MeanAggregator(),
        "decay": DecayAggregator(decay_r),
        "learned-cnn": LearnedAggregator("cnn", epochs=epochs, seed=seed),
        "learned-transformer": LearnedAggregator("transformer", epochs=epochs, seed=seed),
    }


__all__ = ["ACTION_TYPES", "Aggregator", "DecayAggregator", "LearnedAggregator", "MeanAggregator", "gather",
           "registry"]
