"""Job encoder (000's "Pensieve" role): dense job embeddings from content alone.

A job is a bag of content tokens (title words, skills, industry, seniority, remote, location). Each token has a
learned vector, and each title word also has fastText-style subword vectors: its character 3- to 5-grams, hashed
into a fixed number of buckets. The job embedding is the normalized weighted sum of these vectors, so a brand-new
job gets an embedding from its content, and a title word never seen in training still lands near the words it
shares character n-grams with ("physiotherapist" near "therapist", "welders" near "welder").

Training has two in-batch softmax terms:
* co-interaction: two jobs the same member applied to or saved close in time should be nearer than the other jobs
  in the batch;
* title -> content: the embedding of a job's title alone should be nearer to the embedding of the rest of its
  content (skills, industry, seniority, place) than to that of the other jobs in the batch. This is the title-side
  signal: it teaches title words and their n-grams what the jobs they name are about, so a title alone (a cold
  start) is placed among the jobs it names even when no member has interacted with them.

A title the encoder never saw in training (its words, seniority aside, are no training job's) also borrows from
the known titles nearest to it by character n-gram TF-IDF (scikit-learn, char_wb 3-5): its embedding is mixed
half and half with the similarity-weighted mean title embedding of its `neighbours` nearest known titles. Trained
n-grams alone place a withheld title less reliably than plain character overlap does; the mix keeps the learned
part (a new job's skills and place still count) and takes overlap's precision on the title.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from jobmatch.persist import read_meta, write_meta

# v2: hashed character n-grams for title words, the title -> content training term, and normalized titles with
# seniority words as their own tokens. v3: the known titles and their embeddings, for new titles' neighbours.
# An older model cannot be read as v3: retrain it.
FORMAT_VERSION = 3

# Seniority words say how senior a job is, not what it is: job boards (and the simulator) put them in front of any
# occupation's title. As title words they would pull "senior nurse" toward "senior engineer"; so a leading run of
# them, and a trailing level ("engineer ii"), become `tsen:` tokens, which the model can tie to the seniority
# column instead of to an occupation.
LEADING_SENIORITY = frozenset({"junior", "jr", "senior", "sr", "lead", "principal", "entry", "level", "trainee"})
TRAILING_LEVEL = frozenset({"i", "ii", "iii", "iv", "v", "1", "2", "3", "4"})
# Words: runs of letters and digits, keeping inner &, +, # and . (r&d, fp&a, c++, c#, asp.net); everything else
# (spaces, slashes, hyphens, commas, parentheses) separates words. A possessive 's is dropped first.
_WORD = re.compile(r"[a-z0-9]+(?:[&+#.][a-z0-9]+)*[+#]*")
_POSSESSIVE = re.compile(r"['’]s\b")
NGRAM_MIN, NGRAM_MAX = 3, 5


def title_tokens(title: str | None) -> list[str]:
    """`t:word` tokens of a title, with seniority words as `tsen:word` (see LEADING_SENIORITY)."""
    words = _WORD.findall(_POSSESSIVE.sub("", (title or "").lower()))
    lead = 0
    while lead < len(words) - 1 and words[lead] in LEADING_SENIORITY:
        lead += 1
    tail = len(words)
    if tail - lead > 1 and words[-1] in TRAILING_LEVEL:
        tail -= 1
    return ([f"tsen:{w}" for w in words[:lead]] + [f"t:{w}" for w in words[lead:tail]]
            + [f"tsen:{w}" for w in words[tail:]])


def job_tokens(jobs: pa.Table, industry_of_company: dict[int, str]) -> list[list[str]]:
    titles = jobs["title"].to_pylist()
    skills = jobs["skills"].to_pylist()
    comp = jobs["company_id"].to_pylist()
    sen, remote, loc = jobs["seniority"].to_pylist(), jobs["remote"].to_pylist(), jobs["location"].to_pylist()
    return [title_tokens(titles[i])
            + [f"s:{s}" for s in (skills[i] or [])]
            + [f"i:{industry_of_company.get(comp[i], '?')}", f"sen:{sen[i]}", f"loc:{loc[i]}",
               "remote" if remote[i] else "onsite"] for i in range(jobs.num_rows)]


def is_title_token(token: str) -> bool:
    return token.startswith(("t:", "tsen:"))


def occupation_words(toks: list[str]) -> tuple[str, ...]:
    """The title words of a job's tokens without seniority: what says which occupation it is."""
    return tuple(t[2:] for t in toks if t.startswith("t:"))


def title_key(toks: list[str]) -> str:
    """A job's title as the encoder knows it: its occupation words, space-separated."""
    return " ".join(occupation_words(toks))


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
    # Chosen on withheld O*NET titles (embed/cold_start.py, 3,000-member O*NET markets): batch 512 rather than 1024
    # (the title -> content term's in-batch negatives include jobs of the title's own occupation; fewer per batch
    # placed more titles right, top-1 0.437 vs 0.402, seed 1), and title_weight 3 rather than 1 (0.459 vs 0.450
    # seed 1, 0.231 vs 0.229 seed 2, title-view placement). neighbours 5 at share 0.5 placed new titles best of
    # {1, 5} x {0.5, 1.0} on all three markets (seeds 1-3, as built: 0.502, 0.268, 0.319 top-1, against 0.459,
    # 0.231, 0.246 without).
    def __init__(self, dim: int = 64, epochs: int = 2, batch_size: int = 512, lr: float = 0.02,
                 temperature: float = 0.1, min_count: int = 2, max_pairs_per_epoch: int = 100_000, seed: int = 0,
                 buckets: int = 1 << 15, title_weight: float = 3.0, title_steps_per_epoch: int = 100,
                 neighbours: int = 5, neighbour_share: float = 0.5):
        if buckets < 0:
            raise ValueError(f"buckets: the number of n-gram buckets must be >= 0, got {buckets}")
        if neighbours < 0:
            raise ValueError(f"neighbours: the number of known titles a new title borrows from must be >= 0, "
                             f"got {neighbours}")
        if not 0.0 <= neighbour_share <= 1.0:
            raise ValueError(f"neighbour_share: must be within [0, 1], got {neighbour_share}")
        self.neighbours, self.neighbour_share = neighbours, neighbour_share
        self.dim, self.epochs, self.batch_size, self.lr = dim, epochs, batch_size, lr
        self.max_pairs_per_epoch = max_pairs_per_epoch
        self.temperature, self.min_count, self.seed = temperature, min_count, seed
        self.buckets, self.title_weight, self.title_steps_per_epoch = buckets, title_weight, title_steps_per_epoch

    def _ngram_rows(self, word: str) -> list[int]:
        """Rows of the hashed character n-grams of `word` (with < > marking its ends). crc32, not hash(): Python
        salts str hashes per process, and a saved model must map an n-gram to the same row after loading."""
        if self.buckets == 0:
            return []
        cache = self.__dict__.setdefault("_gram_rows", {})  # a job board repeats its title words many times
        if word not in cache:
            w = f"<{word}>"
            grams = {w[i:i + n] for n in range(NGRAM_MIN, NGRAM_MAX + 1) for i in range(len(w) - n + 1)}
            base = len(self.vocab_)
            cache[word] = sorted(base + zlib.crc32(g.encode()) % self.buckets for g in grams)
        return cache[word]

    def _bag(self, toks: list[str]) -> list[tuple[int, float]]:
        """(row, weight) pairs of one job: weight 1 per known token; a title word's weight 1 is shared by its own
        row (if in the vocabulary) and its n-gram rows, so a long word does not outweigh a skill."""
        bag: list[tuple[int, float]] = []
        for t in toks:
            rows = [self.vocab_[t]] if t in self.vocab_ else []
            if t.startswith("t:"):
                rows += self._ngram_rows(t[2:])
            bag.extend((r, 1.0 / len(rows)) for r in rows)
        return bag or [(1, 1.0)]  # nothing known and no title characters: the unknown token

    def _bag_matrix(self, tokens: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(n_jobs, width) rows and weights, padded with row 0 at weight 0."""
        bags = [self._bag(toks) for toks in tokens]
        width = max((len(b) for b in bags), default=1)
        ids = np.zeros((len(bags), width), np.int64)
        w = np.zeros((len(bags), width), np.float32)
        for i, b in enumerate(bags):
            ids[i, :len(b)] = [r for r, _ in b]
            w[i, :len(b)] = [x for _, x in b]
        return torch.from_numpy(ids), torch.from_numpy(w)

    @staticmethod
    def _embed(bag: tuple[torch.Tensor, torch.Tensor], table: torch.Tensor, sparse: bool = False) -> torch.Tensor:
        # embedding_bag: a weighted sum without materializing (n, width, dim); with `sparse`, the gradient touches
        # only the rows in the batch (a dense one would sweep all the n-gram buckets every step)
        ids, w = bag
        return torch.nn.functional.normalize(
            torch.nn.functional.embedding_bag(ids, table, per_sample_weights=w, mode="sum", sparse=sparse), dim=1)

    def _contrast(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Symmetric in-batch softmax: row i of `a` should match row i of `b` against the other rows."""
        logits = a @ b.T / self.temperature
        target = torch.arange(len(a))
        return (torch.nn.functional.cross_entropy(logits, target)
                + torch.nn.functional.cross_entropy(logits.T, target)) / 2

    def fit(self, tokens: list[list[str]], pairs: np.ndarray) -> JobEncoder:
        counts: dict[str, int] = {}
        for toks in tokens:
            for t in set(toks):
                counts[t] = counts.get(t, 0) + 1
        self.vocab_ = {"<pad>": 0, "<unk>": 1}
        self._gram_rows: dict[str, list[int]] = {}  # n-gram rows start after the vocabulary: reset with it
        for t in sorted(counts):
            if counts[t] >= self.min_count:
                self.vocab_[t] = len(self.vocab_)
        torch.manual_seed(self.seed)
        table = torch.nn.Parameter(torch.randn(len(self.vocab_) + self.buckets, self.dim) * 0.1)
        full = self._bag_matrix(tokens)
        title = self._bag_matrix([[t for t in toks if is_title_token(t)] for toks in tokens])
        content = self._bag_matrix([[t for t in toks if not is_title_token(t)] for toks in tokens])
        opt = torch.optim.SparseAdam([table], lr=self.lr)
        rng = np.random.default_rng(self.seed)
        n_jobs = len(tokens)
        self.loss_ = []
        for _ in range(self.epochs):
            order = rng.permutation(len(pairs))[:self.max_pairs_per_epoch]
            n_pair_steps = -(-order.size // self.batch_size)
            # at least `title_steps_per_epoch` title steps, so a market with few interactions still trains titles
            for s in range(max(n_pair_steps, self.title_steps_per_epoch if self.title_weight > 0 else 0)):
                loss = torch.zeros(())
                batch = torch.from_numpy(pairs[order[s * self.batch_size:(s + 1) * self.batch_size]])
                if len(batch) >= 2:
                    a, b = batch[:, 0], batch[:, 1]
                    loss = loss + self._contrast(self._embed((full[0][a], full[1][a]), table, True),
                                                 self._embed((full[0][b], full[1][b]), table, True))
                if self.title_weight > 0 and n_jobs >= 2:
                    rows = torch.from_numpy(rng.choice(n_jobs, min(self.batch_size, n_jobs), replace=False))
                    loss = loss + self.title_weight * self._contrast(
                        self._embed((title[0][rows], title[1][rows]), table, True),
                        self._embed((content[0][rows], content[1][rows]), table, True))
                if not loss.requires_grad:
                    continue
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.loss_.append(loss.item())
        self.weight_ = table.detach().numpy().copy()
        with torch.no_grad():
            views = self._embed(title, torch.from_numpy(self.weight_)).numpy().astype(np.float32)
        self._fit_known_titles(tokens, views)
        return self

    def _fit_known_titles(self, tokens: list[list[str]], views: np.ndarray) -> None:
        """The training jobs' distinct titles (`known_titles_`) and the normalized mean of each one's title-only
        embeddings (`views`, one row per job) as `known_title_vectors_`."""
        keys = [title_key(toks) for toks in tokens]
        self.__dict__.pop("_tfidf", None)
        self.known_titles_ = sorted({k for k in keys if k})
        row = {k: i for i, k in enumerate(self.known_titles_)}
        sums = np.zeros((len(self.known_titles_), self.dim), np.float64)
        has = np.array([bool(k) for k in keys], bool)
        np.add.at(sums, [row[k] for k in np.array(keys, object)[has]], views[has])
        self.known_title_vectors_ = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
                                     ).astype(np.float32)

    def _title_index(self) -> tuple[TfidfVectorizer, object]:
        """(character n-gram TF-IDF fitted on the known titles, their matrix transposed): refitted from the list
        after loading, since fitting is a pure function of it."""
        if "_tfidf" not in self.__dict__:
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(NGRAM_MIN, NGRAM_MAX), dtype=np.float64)
            self._tfidf = (vec.fit(self.known_titles_), vec.transform(self.known_titles_).T.tocsr())
        return self._tfidf

    def transform(self, tokens: list[list[str]]) -> np.ndarray:
        """(n_jobs, dim) float32, unit length. Jobs whose title the encoder never saw are mixed with their
        known neighbours' title embeddings (see the module docstring)."""
        with torch.no_grad():
            out = self._embed(self._bag_matrix(tokens), torch.from_numpy(self.weight_)).numpy().astype(np.float32)
        if self.neighbours == 0 or self.neighbour_share == 0 or not self.known_titles_:
            return out
        known = set(self.known_titles_)
        keys = [title_key(toks) for toks in tokens]
        cold = np.array([i for i, k in enumerate(keys) if k and k not in known], np.int64)
        if cold.size == 0:  # the common case (a catalog of known titles): no index needed
            return out
        vec, known_t = self._title_index()
        sim = (vec.transform([keys[i] for i in cold]) @ known_t).toarray()
        k = min(self.neighbours, sim.shape[1])
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.take_along_axis(sim, top, 1)
        borrowed = np.einsum("nk,nkd->nd", w, self.known_title_vectors_[top].astype(np.float64))
        norm = np.linalg.norm(borrowed, axis=1, keepdims=True)
        found = norm[:, 0] > 0  # no shared n-gram with any known title: nothing to borrow
        mixed = ((1 - self.neighbour_share) * out[cold[found]]
                 + self.neighbour_share * borrowed[found] / norm[found])
        out[cold[found]] = mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
        return out

    def params(self) -> dict:
        return {k: getattr(self, k) for k in ("dim", "epochs", "batch_size", "lr", "temperature", "min_count",
                                              "max_pairs_per_epoch", "seed", "buckets", "title_weight",
                                              "title_steps_per_epoch", "neighbours", "neighbour_share")}

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_meta(d / "job_encoder.json", type(self), FORMAT_VERSION, params=self.params())
        (d / "job_vocab.json").write_text(json.dumps(self.vocab_))
        (d / "job_known_titles.json").write_text(json.dumps(self.known_titles_))
        np.savez(d / "job_encoder.npz", weight=self.weight_, known_title_vectors=self.known_title_vectors_)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> JobEncoder:
        d = Path(directory)
        meta = read_meta(d / "job_encoder.json", cls, FORMAT_VERSION)
        enc = cls(**meta["params"])
        enc.vocab_ = json.loads((d / "job_vocab.json").read_text())
        enc.known_titles_ = json.loads((d / "job_known_titles.json").read_text())
        with np.load(d / "job_encoder.npz", allow_pickle=False) as z:
            enc.weight_, enc.known_title_vectors_ = z["weight"], z["known_title_vectors"]
        if enc.known_title_vectors_.shape != (len(enc.known_titles_), enc.dim):
            raise ValueError(f"{d}: known title vectors {enc.known_title_vectors_.shape} do not match the "
                             f"{len(enc.known_titles_)} known titles x dim ({enc.dim})")
        if enc.weight_.shape != (len(enc.vocab_) + enc.buckets, enc.dim):
            raise ValueError(f"{d}: weight shape {enc.weight_.shape} does not match the vocabulary "
                             f"({len(enc.vocab_)}) + buckets ({enc.buckets}) x dim ({enc.dim})")
        return enc
