"""A deep-and-wide learning-to-rank model for search result pages, with an optional frozen user-vector tower
(002 §4.2, §5.3).

    score = wide(hashed ids) + linear(dense) + deep([dense, embeddings of the hashed ids, tower(user vector)])

The *wide* part is one learned weight per hashed categorical id (sparse crosses such as query x job occupation)
plus a linear term on the dense features; the *deep* part is an MLP with batch norm and ReLU over the dense
features and an embedding per categorical field. With user vectors, a separate tower of fully-connected layers
with batch norm and ReLU (002: 512, 256, 256, 128, 128) reads the vector — frozen: the vector is an input, only the
tower's weights learn — and its output joins the deep part's input, so it can interact with the job's features
(a user-only term would add the same constant to every job of a list and change no ranking).

Training is listwise: softmax cross-entropy of each result list against its gains 2^rel - 1 (lists without any
engagement carry no signal and are skipped), Adam, and the checkpoint with the best validation NDCG@25 is kept.
Saved as `ranker.json` (class, version, parameters, shapes, history) + `ranker.safetensors` (weights and input
normalization); loading checks class and version.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from jobmatch.metrics import ndcg_per_group
from jobmatch.persist import read_meta, write_meta

FORMAT_VERSION = 1
PREDICT_BATCH = 65_536


@dataclass(frozen=True)
class RankerParams:
    deep: tuple[int, ...] = (64, 32)
    tower: tuple[int, ...] = (128, 64, 64, 32, 32)  # 002: 512, 256, 256, 128, 128 — scaled to a 4 x 64 vector
    embedding_dim: int = 8
    buckets: int = 1 << 16
    epochs: int = 10
    batch_lists: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-6
    patience: int = 3  # epochs without a better validation NDCG@25 before stopping
    ndcg_k: int = 25
    threads: int = 1  # torch intra-op threads: layers this small only pay for synchronization with more
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "buckets", "epochs", "batch_lists", "patience", "ndcg_k", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)!r}")
        if not self.deep or any(h < 1 for h in self.deep + self.tower):
            raise ValueError(f"deep, tower: expected positive layer widths (deep non-empty), got {self.deep}, "
                             f"{self.tower}")


def _mlp(width_in: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Linear(width_in, w), nn.BatchNorm1d(w), nn.ReLU()]
        width_in = w
    return nn.Sequential(*layers)


class _Net(nn.Module):
    def __init__(self, n_dense: int, n_cats: int, user_dim: int, p: RankerParams):
        super().__init__()
        self.embedding = nn.Embedding(p.buckets, p.embedding_dim)
        self.wide = nn.Embedding(p.buckets, 1)
        nn.init.zeros_(self.wide.weight)
        self.linear = nn.Linear(n_dense, 1)
        features = n_dense + n_cats * p.embedding_dim
        self.tower = _mlp(user_dim, p.tower) if user_dim else None
        # the result's side of the late interaction: its features projected to the tower's output
        self.item = nn.Linear(features, p.tower[-1]) if user_dim else None
        self.deep = nn.Sequential(_mlp(features + (p.tower[-1] if user_dim else 0), p.deep), nn.Linear(p.deep[-1], 1))

    def forward(self, dense: torch.Tensor, cats: torch.Tensor, user: torch.Tensor | None) -> torch.Tensor:
        x = torch.cat([dense, self.embedding(cats).flatten(1)], 1)
        score = self.wide(cats).sum((1, 2)) + self.linear(dense).squeeze(1)
        if self.tower is None:
            return score + self.deep(x).squeeze(1)
        u = self.tower(user)
        return score + self.deep(torch.cat([x, u], 1)).squeeze(1) + (u * self.item(x)).sum(1)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch intra-op threads (restored after): small networks on a shared machine train
    many times faster on one thread than on threads that wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _lists(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ordered by list, and each list's start and size in that order."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if g.size else np.zeros(0, np.int64)
    return order, starts, np.diff(np.r_[starts, g.size])


class ListwiseRanker:
    """`fit(dense, cats, groups, relevance, user=None, validation=None)`, `predict(dense, cats, user=None)`."""

    def __init__(self, params: RankerParams | None = None, **overrides):
        self.params = replace(params or RankerParams(), **overrides)

    def _check(self, dense, cats, user) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        dense = np.asarray(dense, np.float32)
        cats = np.asarray(cats, np.int64)
        if dense.ndim != 2 or cats.ndim != 2 or dense.shape[0] != cats.shape[0]:
            raise ValueError(f"dense, cats: expected 2-D arrays with one row per result, got {dense.shape} and "
                             f"{cats.shape}")
        if not np.isfinite(dense).all():
            raise ValueError("dense: NaN or infinite entries")
        if cats.size and (cats.min() < 0 or cats.max() >= self.params.buckets):
            raise ValueError(f"cats: expected hashed ids in [0, {self.params.buckets}), got [{cats.min()}, "
                             f"{cats.max()}]")
        if user is not None:
            user = np.asarray(user, np.float32)
            if user.shape[:1] != dense.shape[:1] or user.ndim != 2 or not np.isfinite(user).all():
                raise ValueError(f"user: expected finite vectors, one row per result ({dense.shape[0]}), got "
                                 f"{user.shape}")
        return dense, cats, user

    def _tensors(self, dense, cats, user) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        d = torch.from_numpy((dense - self.dense_mean_) / self.dense_std_)
        u = None if user is None else torch.from_numpy((user - self.user_mean_) / self.user_std_)
        return d, torch.from_numpy(cats), u

    def fit(self, dense, cats, groups, relevance, user=None, validation: tuple | None = None) -> ListwiseRanker:
        """`validation` = (dense, cats, groups, relevance, user) of other lists: the epoch with the best NDCG@k
        there is kept (without it, the last epoch)."""
        with torch_threads(self.params.threads):
            return self._fit(dense, cats, groups, relevance, user, validation)

    def _fit(self, dense, cats, groups, relevance, user, validation: tuple | None) -> ListwiseRanker:
        dense, cats, user = self._check(dense, cats, user)
        groups, rel = np.asarray(groups), np.asarray(relevance, np.float32)
        if groups.shape != (dense.shape[0],) or rel.shape != groups.shape:
            raise ValueError(f"groups, relevance: expected one per row ({dense.shape[0]}), got {groups.shape} and "
                             f"{rel.shape}")
        p = self.params
        torch.manual_seed(p.seed)
        rng = np.random.default_rng(p.seed)
        self.dense_mean_, self.dense_std_ = dense.mean(0), dense.std(0) + 1e-6
        self.user_dim_ = 0 if user is None else user.shape[1]
        if user is not None:
            self.user_mean_, self.user_std_ = user.mean(0), user.std(0) + 1e-6
        self.n_dense_, self.n_cats_ = dense.shape[1], cats.shape[1]
        self.net_ = _Net(self.n_dense_, self.n_cats_, self.user_dim_, p)
        order, starts, sizes = _lists(groups)
        gains = 2.0 ** rel[order] - 1
        useful = np.add.reduceat(gains, starts) > 0 if starts.size else np.zeros(0, bool)
        starts, sizes = starts[useful], sizes[useful]
        if starts.size == 0:
            raise ValueError("relevance: no list has an engaged result; nothing to learn from")
        D, C, U = self._tensors(dense[order], cats[order], None if user is None else user[order])
        G = torch.from_numpy(gains)
        opt = torch.optim.Adam(self.net_.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        best, best_state, stale = -np.inf, None, 0
        self.history_: list[dict] = []
        for epoch in range(p.epochs):
            self.net_.train()
            losses = []
            for batch in np.array_split(rng.permutation(starts.size), max(1, starts.size // p.batch_lists)):
                rows = np.concatenate([np.arange(s, s + n) for s, n in zip(starts[batch], sizes[batch])])
                owner = torch.from_numpy(np.repeat(np.arange(batch.size), sizes[batch]))
                pos = torch.from_numpy(np.concatenate([np.arange(n) for n in sizes[batch]]))
                idx = torch.from_numpy(rows)
                s = self.net_(D[idx], C[idx], None if U is None else U[idx])
                padded = torch.full((batch.size, int(sizes[batch].max())), -torch.inf).index_put((owner, pos), s)
                log_p = s - torch.logsumexp(padded, 1)[owner]
                g = G[idx]
                target = g / torch.zeros(batch.size).index_add(0, owner, g)[owner]
                loss = -(target * log_p).sum() / batch.size
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            if validation is not None:
                vd, vc, vg, vr, vu = validation
                with torch.no_grad():
                    scores = self._predict(vd, vc, vu)
                _, values = ndcg_per_group(np.asarray(vg), np.asarray(vr), scores, p.ndcg_k)
                record[f"validation_ndcg@{p.ndcg_k}"] = float(values.mean()) if values.size else float("nan")
                if record[f"validation_ndcg@{p.ndcg_k}"] > best:
                    best, best_state, stale = record[f"validation_ndcg@{p.ndcg_k}"], \
                        copy.deepcopy(self.net_.state_dict()), 0
                else:
                    stale += 1
            self.history_.append(record)
            if validation is not None and stale >= p.patience:
                break
        if best_state is not None:
            self.net_.load_state_dict(best_state)
        self.best_epoch_ = int(np.argmax([h.get(f"validation_ndcg@{p.ndcg_k}", 0) for h in self.history_]) + 1) \
            if validation is not None else len(self.history_)
        self.net_.eval()
        return self

    @torch.no_grad()
    def predict(self, dense, cats, user=None) -> np.ndarray:
        with torch_threads(self.params.threads):
            return self._predict(dense, cats, user)

    def _predict(self, dense, cats, user) -> np.ndarray:
        dense, cats, user = self._check(dense, cats, user)
        if (user is None) != (self.user_dim_ == 0):
            raise ValueError("user: this model was fit " + ("with" if self.user_dim_ else "without") +
                             " user vectors; pass them the same way to predict")
        if user is not None and user.shape[1] != self.user_dim_:
            raise ValueError(f"user: expected {self.user_dim_}-d vectors, got {user.shape[1]}-d")
        if dense.shape[1] != self.n_dense_ or cats.shape[1] != self.n_cats_:
            raise ValueError(f"dense, cats: expected {self.n_dense_} and {self.n_cats_} columns, got "
                             f"{dense.shape[1]} and {cats.shape[1]}")
        self.net_.eval()
        out = np.empty(dense.shape[0], np.float32)
        for lo in range(0, dense.shape[0], PREDICT_BATCH):
            hi = lo + PREDICT_BATCH
            D, C, U = self._tensors(dense[lo:hi], cats[lo:hi], None if user is None else user[lo:hi])
            out[lo:hi] = self.net_(D, C, U).numpy()
        return out

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
        tensors |= {"dense_mean": torch.from_numpy(self.dense_mean_), "dense_std": torch.from_numpy(self.dense_std_)}
        if self.user_dim_:
            tensors |= {"user_mean": torch.from_numpy(self.user_mean_), "user_std": torch.from_numpy(self.user_std_)}
        save_file(tensors, str(d / "ranker.safetensors"))
        write_meta(d / "ranker.json", type(self), FORMAT_VERSION, params=asdict(self.params), n_dense=self.n_dense_,
                   n_cats=self.n_cats_, user_dim=self.user_dim_, history=self.history_, best_epoch=self.best_epoch_)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> ListwiseRanker:
        d = Path(directory)
        meta = read_meta(d / "ranker.json", cls, FORMAT_VERSION)
        p = meta["params"]
        model = cls(RankerParams(**{**p, "deep": tuple(p["deep"]), "tower": tuple(p["tower"])}))
        tensors = load_file(str(d / "ranker.safetensors"))
        model.n_dense_, model.n_cats_, model.user_dim_ = meta["n_dense"], meta["n_cats"], meta["user_dim"]
        model.history_, model.best_epoch_ = meta["history"], meta["best_epoch"]
        model.dense_mean_, model.dense_std_ = tensors["dense_mean"].numpy(), tensors["dense_std"].numpy()
        if model.user_dim_:
            model.user_mean_, model.user_std_ = tensors["user_mean"].numpy(), tensors["user_std"].numpy()
        model.net_ = _Net(model.n_dense_, model.n_cats_, model.user_dim_, model.params)
        model.net_.load_state_dict({k.removeprefix("net."): v for k, v in tensors.items() if k.startswith("net.")})
        model.net_.eval()
        return model


__all__ = ["ListwiseRanker", "RankerParams", "torch_threads"]
