"""Member activity embeddings: the scheduled inference flow and the real-time path (000).

Every registered aggregator (`jobmatch.embed.aggregators.registry`) is computed for every member with activity in
the 28 days before the run's cutoff, read from the event log, and published under its own versioned name,
`activity_embedding/<name>-v<version>`, together with the job embeddings (`activity/job_embedding`, from content:
a job posted today is embedded today) as one manifest of the store's group `activity`. The first run trains the
job encoder and the learned aggregators on the events before its cutoff and publishes every member; later runs
recompute the members whose window changed — those with new events, and those whose oldest events aged out of
the 28 days — with nearline updates (a member left with no action in the window is removed).
`RealtimeActivity` recomputes one member's embeddings from their last 32 actions as each event arrives.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jobmatch.embed.aggregators import Aggregator, DecayAggregator, LearnedAggregator, MeanAggregator, registry
from jobmatch.embed.jobs import JobEncoder, co_interaction_pairs, job_tokens
from jobmatch.embed.sequences import (ACTION_CODE, DAY_US, PAD, SEQ_LEN, Sequences, action_log, member_sequences,
                                      proxy_examples)
from jobmatch.engine import Engine, list_column, list_matrix
from jobmatch.events import Snapshot
from jobmatch.flows.state import FlowContext, NotEnoughData
from jobmatch.store import FeatureStore

LOADERS = {"mean": MeanAggregator, "decay": DecayAggregator, "learned-cnn": LearnedAggregator,
           "learned-transformer": LearnedAggregator}
GROUP = "activity"
JOB_EMBEDDINGS = "activity/job_embedding"
WINDOW_DAYS = 28
MIN_PROXY_EXAMPLES = 50
EVENT_COLUMNS = ["event_id", "member_id", "ts", "action", "job_id"]


def dataset_name(agg: Aggregator) -> str:
    return f"activity_embedding/{agg.key}"


def industries(companies: pa.Table) -> dict[int, str]:
    return dict(zip(companies["company_id"].to_pylist(), companies["industry"].to_pylist()))


class EmbeddingModels:
    """The job encoder, the embeddings of the jobs known, and the registered aggregators, trained or loaded
    together. Jobs are embedded from content, so `with_jobs` extends the models to jobs posted since training."""

    def __init__(self, encoder: JobEncoder | None, job_ids: np.ndarray, job_emb: np.ndarray,
                 aggregators: Mapping[str, Aggregator]):
        self.encoder, self.job_ids, self.job_emb = encoder, job_ids, job_emb
        self.job_row = {int(j): i for i, j in enumerate(job_ids.tolist())}
        self.aggregators = dict(aggregators)

    @classmethod
    def train(cls, jobs: pa.Table, companies: pa.Table, events: pa.Table, epochs: int = 3, seed: int = 0
              ) -> EmbeddingModels:
        """`events` are the ones the models may learn from (those before the cutoff)."""
        tokens = job_tokens(jobs, industries(companies))
        job_row = {int(j): i for i, j in enumerate(jobs["job_id"].to_pylist())}
        encoder = JobEncoder(seed=seed).fit(tokens, co_interaction_pairs(events, job_row))
        models = cls(encoder, jobs["job_id"].to_numpy(), encoder.transform(tokens), registry(epochs=epochs, seed=seed))
        examples = proxy_examples(action_log(events, models.job_row), np.random.default_rng(seed))
        if examples.label.size < MIN_PROXY_EXAMPLES:
            raise NotEnoughData(f"activity: {examples.label.size} proxy-task examples (members with at least 4 "
                                f"apply/save/dismiss actions); the learned aggregators need {MIN_PROXY_EXAMPLES}")
        for agg in models.aggregators.values():
            agg.fit(examples, models.job_emb)
        return models

    def with_jobs(self, jobs: pa.Table, companies: pa.Table) -> EmbeddingModels:
        """The same models over `jobs` (every job embedded from its content)."""
        emb = self.encoder.transform(job_tokens(jobs, industries(companies)))
        return EmbeddingModels(self.encoder, jobs["job_id"].to_numpy(), emb, self.aggregators)

    def save(self, directory: str | Path) -> Path:
        d = self.save_inference(directory)
        self.encoder.save(d / "job_encoder")
        return d

    def save_inference(self, directory: str | Path) -> Path:
        """What embedding members needs — the jobs' embeddings and the aggregators, not the job encoder: the copy
        a distributed engine's executors load."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "jobs.npz", job_ids=self.job_ids, job_emb=self.job_emb)
        for name, agg in self.aggregators.items():
            agg.save(d / name)
        (d / "aggregators.json").write_text(json.dumps(list(self.aggregators)))
        return d

    @classmethod
    def load(cls, directory: str | Path, encoder: bool = True) -> EmbeddingModels:
        """The models saved in `directory`; without the job encoder (`encoder=False`, for `save_inference`'s
        folders) they embed members only."""
        d = Path(directory)
        with np.load(d / "jobs.npz", allow_pickle=False) as z:
            job_ids, job_emb = z["job_ids"], z["job_emb"]
        names = json.loads((d / "aggregators.json").read_text())
        return cls(JobEncoder.load(d / "job_encoder") if encoder else None, job_ids, job_emb,
                   {n: LOADERS[n].load(d / n) for n in names})

    def embed(self, seqs: Sequences) -> dict[str, np.ndarray]:
        return {name: agg.transform(seqs, self.job_emb) for name, agg in self.aggregators.items()}


def load_models(snap: Snapshot, home: Path, epochs: int = 3, seed: int = 0) -> tuple[EmbeddingModels, bool]:
    """The flow's models (trained on the first run, on the events before its cutoff), over the jobs as of now."""
    jobs, companies = snap.entities("jobs"), snap.entities("companies")
    directory = home / "models"
    if (directory / "aggregators.json").exists():
        return EmbeddingModels.load(directory).with_jobs(jobs, companies), False
    models = EmbeddingModels.train(jobs, companies, snap.events(EVENT_COLUMNS), epochs, seed)
    models.save(directory)
    return models, True


_LOADED: dict[tuple[str, int], EmbeddingModels] = {}


def inference_models(directory: str) -> EmbeddingModels:
    """The models of a `save_inference` folder, loaded once per process: an executor's Python worker serves every
    partition (Spark reuses workers) with one load. Keyed by the folder's save time too, so a folder saved again
    (a day's run repeated after its state was removed) is read again."""
    key = (directory, (Path(directory) / "aggregators.json").stat().st_mtime_ns)
    if key not in _LOADED:
        _LOADED[key] = EmbeddingModels.load(directory, encoder=False)
    return _LOADED[key]


def embed_distributed(engine: Engine, models: EmbeddingModels, seqs: Sequences, folder: Path) -> dict[str, np.ndarray]:
    """`models.embed(seqs)` by the engine, a partition of members at a time: the models are saved to
    FOLDER/models for the executors, the sequences to FOLDER/sequences.parquet, the embeddings written to
    FOLDER/embeddings (Parquet, one column per aggregator) and returned in the order of `seqs`."""
    if len(seqs) == 0:  # nobody changed since the last run: nothing to hand out
        return models.embed(seqs)
    directory = str(models.save_inference(folder / "models"))
    source = folder / "sequences.parquet"
    pq.write_table(pa.table({"member_id": seqs.member_id, "job": list_column(seqs.job),
                             "action": list_column(seqs.action), "ts": list_column(seqs.ts)}), source)
    names = list(models.aggregators)
    schema = pa.schema([("member_id", pa.int64())] + [(n, pa.list_(pa.float32())) for n in names])

    def embed(t: pa.Table) -> pa.Table:
        part = Sequences(t["member_id"].to_numpy(), list_matrix(t["job"], SEQ_LEN).astype(np.int64),
                         list_matrix(t["action"], SEQ_LEN).astype(np.int8),
                         list_matrix(t["ts"], SEQ_LEN).astype(np.int64))
        vectors = inference_models(directory).embed(part)
        return pa.table({"member_id": part.member_id, **{n: list_column(vectors[n]) for n in names}})

    out = engine.map_batches(str(source), embed, schema, out=folder / "embeddings")
    found = out["member_id"].to_numpy()
    order = np.argsort(found)
    at = order[np.searchsorted(found, seqs.member_id, sorter=order)]  # each member's row in `out`
    return {n: out[n].combine_chunks().flatten().to_numpy().reshape(out.num_rows, -1)[at] for n in names}


def run_activity_embeddings(ctx: FlowContext, epochs: int = 3, seed: int = 0) -> dict:
    """One scheduled run as of the end of the context's day."""
    flow = ctx.state("activity")
    if (done := flow.previous_result(ctx.day)) is not None:
        return done
    state, cutoff = flow.data, ctx.cutoff_us
    snap = ctx.snapshot()
    models, trained = load_models(snap, flow.home, epochs, seed)
    window = WINDOW_DAYS * DAY_US
    since = state.get("cutoff")
    events = snap.events(EVENT_COLUMNS, since_us=cutoff - window)
    log = action_log(events, models.job_row)
    if since:
        # new actions, and actions that aged out of the window since the last run
        moved = snap.members_with_events(since_us=since - window, until_us=cutoff - window)
        changed = np.union1d(np.unique(log[0][log[3] >= since]), moved)
        seqs = member_sequences(log, cutoff, WINDOW_DAYS, members=changed)
        gone = [str(m) for m in np.setdiff1d(changed, seqs.member_id).tolist()]
    else:
        seqs, gone = member_sequences(log, cutoff, WINDOW_DAYS), []
    if ctx.engine.distributed:  # the models' inference a partition of members at a time, on the engine
        vectors = embed_distributed(ctx.engine, models, seqs, flow.home / "runs" / ctx.day)
    else:
        vectors = models.embed(seqs)
    keys = [str(m) for m in seqs.member_id.tolist()]
    jobs = {str(j): v for j, v in zip(models.job_ids.tolist(), models.job_emb)}
    datasets = {dataset_name(agg): dict(zip(keys, vectors[name])) for name, agg in models.aggregators.items()}
    if since:
        for name, items in datasets.items():
            ctx.store.update(name, items, delete=gone)
        ctx.store.update(JOB_EMBEDDINGS, jobs)
        manifest = ctx.store.manifest(GROUP)
    else:
        manifest = ctx.store.publish(GROUP, {**datasets, JOB_EMBEDDINGS: jobs},
                                     meta={"as_of": ctx.day, "dim": int(models.job_emb.shape[1]),
                                           "encoders": list(datasets)})
    state["cutoff"] = cutoff
    return flow.finish(ctx.day, {"as_of": ctx.day, "status": "ok", "trained": trained,
                                 "mode": "incremental" if since else "full", "members": len(keys),
                                 "removed": len(gone), "jobs": len(jobs),
                                 "version": manifest.version if manifest else None})


class RealtimeActivity:
    """Keeps each member's last SEQ_LEN actions and recomputes their embeddings on every APPLY/SAVE/DISMISS."""

    def __init__(self, models: EmbeddingModels, store: FeatureStore | None = None, window_days: float = 28.0):
        self.models, self.store, self.window_us = models, store, int(window_days * DAY_US)
        self._recent: dict[int, deque[tuple[int, int, int]]] = {}

    def load(self, events: pa.Table) -> RealtimeActivity:
        """Seed each member's recent actions from the log (events sorted by member and time)."""
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
