"""Member activity embeddings: the scheduled inference flow and the real-time path (000).

Every registered aggregator (`jobmatch.embed.aggregators.registry`) is computed for every member with activity
and published under its own versioned name, `activity_embedding/<name>-v<version>`. The first run trains the job
encoder and the learned aggregators on the events before its date and pushes every member; later runs recompute
only members with events since the previous run and write them with nearline updates. `RealtimeActivity`
recomputes one member's embeddings from their last 32 actions as each event arrives.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jobmatch.embed.aggregators import Aggregator, DecayAggregator, LearnedAggregator, MeanAggregator, registry
from jobmatch.embed.jobs import JobEncoder, co_interaction_pairs, job_tokens
from jobmatch.embed.sequences import (ACTION_CODE, DAY_US, PAD, SEQ_LEN, Sequences, action_log, add_random_negatives,
                                      member_sequences, proxy_examples)
from jobmatch.flows.state import FlowState, day_end_us
from jobmatch.store import FeatureStore

LOADERS = {"mean": MeanAggregator, "decay": DecayAggregator, "learned-cnn": LearnedAggregator,
           "learned-transformer": LearnedAggregator}


def dataset_name(agg: Aggregator) -> str:
    return f"activity_embedding/{agg.key}"


class EmbeddingModels:
    """The job encoder, every job's embedding, and the registered aggregators, trained or loaded together."""

    def __init__(self, encoder: JobEncoder, job_ids: np.ndarray, job_emb: np.ndarray,
                 aggregators: Mapping[str, Aggregator]):
        self.encoder, self.job_ids, self.job_emb = encoder, job_ids, job_emb
        self.job_row = {int(j): i for i, j in enumerate(job_ids)}
        self.aggregators = dict(aggregators)

    @classmethod
    def train(cls, tables: Mapping[str, pa.Table], before_us: int, epochs: int = 3, seed: int = 0
              ) -> EmbeddingModels:
        industry = dict(zip(tables["companies"]["company_id"].to_pylist(), tables["companies"]["industry"].to_pylist()))
        tokens = job_tokens(tables["jobs"], industry)
        ev = tables["events"]
        past = ev.filter(pc.less(ev["ts"].cast(pa.int64()), before_us))
        encoder = JobEncoder(seed=seed).fit(tokens, co_interaction_pairs(past))
        job_ids = tables["jobs"]["job_id"].to_numpy()
        models = cls(encoder, job_ids, encoder.transform(tokens), registry(epochs=epochs, seed=seed))
        examples = proxy_examples(add_random_negatives(action_log(past, models.job_row),
                                                       np.random.default_rng(seed)))
        for agg in models.aggregators.values():
            agg.fit(examples, models.job_emb)
        return models

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        self.encoder.save(d / "job_encoder")
        np.savez(d / "jobs.npz", job_ids=self.job_ids, job_emb=self.job_emb)
        for name, agg in self.aggregators.items():
            agg.save(d / name)
        (d / "aggregators.json").write_text(json.dumps(list(self.aggregators)))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EmbeddingModels:
        d = Path(directory)
        with np.load(d / "jobs.npz", allow_pickle=False) as z:
            job_ids, job_emb = z["job_ids"], z["job_emb"]
        names = json.loads((d / "aggregators.json").read_text())
        return cls(JobEncoder.load(d / "job_encoder"), job_ids, job_emb,
                   {n: LOADERS[n].load(d / n) for n in names})

    def embed(self, seqs: Sequences) -> dict[str, np.ndarray]:
        return {name: agg.transform(seqs, self.job_emb) for name, agg in self.aggregators.items()}


def run_activity_embeddings(data: str | Path, home: str | Path, store: FeatureStore, as_of: datetime,
                            epochs: int = 3, seed: int = 0) -> dict:
    """One scheduled run as of the end of `as_of` (UTC)."""
    data, act_home = Path(data), Path(home) / "activity"
    flow = FlowState(act_home)
    state = flow.data
    as_of, cutoff = day_end_us(as_of)
    day = flow.check_after(as_of)
    tables = {n: pq.read_table(data / f"{n}.parquet") for n in ("events", "jobs", "companies")}
    if (act_home / "models" / "aggregators.json").exists():
        models = EmbeddingModels.load(act_home / "models")
    else:
        models = EmbeddingModels.train(tables, cutoff, epochs, seed)
        models.save(act_home / "models")
    log = action_log(tables["events"], models.job_row)
    since = state.get("cutoff")
    recent = (log[3] < cutoff) & (log[3] >= since if since else True)
    changed = np.unique(log[0][recent])
    seqs = member_sequences(log, cutoff, members=changed if since else None)
    vectors = models.embed(seqs)
    keys = [str(m) for m in seqs.member_id.tolist()]
    published = {}
    for name, agg in models.aggregators.items():
        items = dict(zip(keys, vectors[name]))
        if since:
            store.update(dataset_name(agg), items)
            published[dataset_name(agg)] = store.current_version(dataset_name(agg))
        else:
            published[dataset_name(agg)] = store.push(dataset_name(agg), items)
    run = {"as_of": day, "members": len(keys), "mode": "incremental" if since else "full"}
    state.update(cutoff=cutoff, last_as_of=day)
    state.setdefault("runs", []).append(run)
    flow.save()
    return {**run, "datasets": published}


class RealtimeActivity:
    """Keeps each member's last SEQ_LEN actions and recomputes their embeddings on every APPLY/SAVE/DISMISS."""

    def __init__(self, models: EmbeddingModels, store: FeatureStore | None = None, window_days: float = 28.0):
        self.models, self.store, self.window_us = models, store, int(window_days * DAY_US)
        self._recent: dict[int, deque[tuple[int, int, int]]] = {}

    def load(self, events: pa.Table) -> RealtimeActivity:
        member, job, code, ts = action_log(events, self.models.job_row)
        for m, j, c, t in zip(member.tolist(), job.tolist(), code.tolist(), ts.tolist()):
            self._recent.setdefault(m, deque(maxlen=SEQ_LEN)).append((j, c, t))
        return self

    def sequence(self, member_id: int, now_us: int) -> Sequences:
        items = [x for x in self._recent.get(member_id, ()) if x[2] >= now_us - self.window_us]
        job = np.full((1, SEQ_LEN), -1, np.int64)
        act = np.full((1, SEQ_LEN), PAD, np.int8)
        ts = np.zeros((1, SEQ_LEN), np.int64)
        for k, (j, c, t) in enumerate(items, start=SEQ_LEN - len(items)):
            job[0, k], act[0, k], ts[0, k] = j, c, t
        return Sequences(np.array([member_id]), job, act, ts)

    def update_member(self, member_id: int, event: Mapping) -> dict[str, np.ndarray] | None:
        """Apply one event; returns the member's new embeddings (None when the action does not change them)."""
        action = event["action"]
        if action not in ACTION_CODE:
            return None
        try:
            job = self.models.job_row[int(event["job_id"])]
        except (KeyError, TypeError):
            raise ValueError(f"job_id: unknown job {event.get('job_id')!r}") from None
        ts = event["ts"]
        ts_us = int(ts.timestamp() * 1e6) if isinstance(ts, datetime) else int(ts)
        recent = self._recent.setdefault(int(member_id), deque(maxlen=SEQ_LEN))
        recent.append((job, ACTION_CODE[action], ts_us))
        if len(recent) > 1 and recent[-2][2] > ts_us:  # a late event: keep the sequence in time order
            self._recent[int(member_id)] = deque(sorted(recent, key=lambda x: x[2]), maxlen=SEQ_LEN)
        vectors = {name: v[0] for name, v in self.models.embed(self.sequence(int(member_id), ts_us + 1)).items()}
        if self.store is not None:
            for name, agg in self.models.aggregators.items():
                self.store.update(dataset_name(agg), {str(member_id): vectors[name]})
        return vectors
