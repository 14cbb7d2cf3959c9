"""Online scoring of the Qualified Applicant model from coefficients in the feature store.

A request scores one member against many jobs (or one job against many members): the coefficients it needs that
are not cached are fetched in one batch get, then cached (LRU with a time-to-live). Entities without a model
contribute 0, as in training.

The scorer is pinned to one published model: the group's manifest (`store.publish(group, {"<group>/coefficients":
…, "<group>/meta": …})`) names one version of the coefficients and of their feature names, and every fetch reads
exactly those versions. It re-reads the manifest at most once per cache TTL and, when a newer model was published,
re-pins and empties its cache. When the store fails (down, emptied, the pinned version removed), it serves the
coefficients it has cached, expired or not, and raises StoreError for a request that needs any other: a
coefficient it could not read is never scored as zero.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from jobmatch.features import IdIndex
from jobmatch.store import FeatureStore, Manifest, StoreError

_MISSING = object()


class TTLCache:
    """Least-recently-used cache whose entries also expire `ttl_s` seconds after they were stored; expired entries
    stay (until evicted) as a fallback for when the source fails."""

    def __init__(self, max_items: int = 100_000, ttl_s: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.max_items, self.ttl_s, self.clock = max_items, ttl_s, clock
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()

    def get(self, key: str, stale: bool = False) -> object:
        """The value, or `_MISSING` if absent or (unless `stale`) expired."""
        hit = self._items.get(key)
        if hit is None or (hit[0] < self.clock() and not stale):
            return _MISSING
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: object) -> None:
        self._items[key] = (self.clock() + self.ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class QAScorer:
    """`featurize(project_ids, member_ids) -> columns` gives the features (see `jobmatch.qa.QAFeaturizer`);
    `group` is the manifest group the model is published as. `manifest_` and `generation_` say what is loaded."""

    def __init__(self, store: FeatureStore, featurize: Callable, project_of_job: dict[int, int],
                 cache: TTLCache | None = None, group: str = "qa"):
        self.store, self.featurize, self.group = store, featurize, group
        jobs = np.fromiter(project_of_job, np.int64, len(project_of_job))
        self._job_index = IdIndex(jobs, "job_id")
        self._project_of_row = np.fromiter(project_of_job.values(), np.int64, len(project_of_job))
        self.cache = cache if cache is not None else TTLCache()
        self.coefficients, self.meta = f"{group}/coefficients", f"{group}/meta"
        self.fetches = 0  # batch gets issued, for tests and monitoring
        self.stale_serves = 0  # requests answered from expired cache entries because the store failed
        self._pin(self._published())

    def _published(self) -> Manifest:
        manifest = self.store.manifest(self.group)
        if manifest is None:
            raise LookupError(f"{self.group}: no published Qualified Applicant model in the store")
        missing = [d for d in (self.coefficients, self.meta) if d not in manifest.datasets]
        if missing:
            raise LookupError(f"{self.group}: manifest {manifest.version} has no {' or '.join(missing)}")
        return manifest

    def _pin(self, manifest: Manifest) -> None:
        record = self.store.get_one(self.meta, "meta", version=manifest.datasets[self.meta])
        if record is None:
            raise LookupError(f"{self.meta}: version {manifest.datasets[self.meta]} has no 'meta' record")
        self.global_features = tuple(record["global_features"])
        self.member_features = tuple(record["member_features"])
        self.job_features = tuple(record["job_features"])
        self.manifest_, self.generation_ = manifest, self.store.generation()
        self.cache.clear()
        self._checked_at = self.cache.clock()

    def _follow(self) -> None:
        """Re-pin to a newer manifest, checked at most once per TTL; while the store fails, stay pinned."""
        if self.cache.clock() - self._checked_at < self.cache.ttl_s:
            return
        self._checked_at = self.cache.clock()
        try:
            latest = self._published()
        except StoreError:
            return  # `_coefficients` serves the cache or raises, per request
        if latest.version != self.manifest_.version:
            self._pin(latest)

    def _coefficients(self, keys: list[str]) -> list[np.ndarray | None]:
        self._follow()
        values = [self.cache.get(k) for k in keys]
        missing = [k for k, v in zip(keys, values) if v is _MISSING]
        if missing:
            self.fetches += 1
            try:
                fetched = dict(zip(missing, self.store.get(self.coefficients, missing,
                                                           self.manifest_.datasets[self.coefficients])))
            except StoreError as e:
                fetched = {k: self.cache.get(k, stale=True) for k in missing}
                absent = sum(v is _MISSING for v in fetched.values())
                if absent:
                    raise StoreError(f"{self.group}: {absent} coefficient(s) this request needs are not cached and "
                                     f"the store failed (manifest {self.manifest_.version}, generation "
                                     f"{self.generation_}): {e}") from e
                self.stale_serves += 1
            else:
                for k, v in fetched.items():
                    self.cache.put(k, v)
            values = [fetched[k] if v is _MISSING else v for k, v in zip(keys, values)]
        return values  # type: ignore[return-value]

    def _score(self, member_ids: np.ndarray, job_ids: np.ndarray) -> dict[str, np.ndarray]:
        projects = self._project_of_row[self._job_index.rows(job_ids)]
        cols = self.featurize(projects, member_ids)
        uniq_m, uniq_j = np.unique(member_ids), np.unique(job_ids)
        keys = ["global"] + [f"m:{m}" for m in uniq_m.tolist()] + [f"j:{j}" for j in uniq_j.tolist()]
        coefs = self._coefficients(keys)
        if coefs[0] is None:
            raise LookupError(f"{self.coefficients}: version {self.manifest_.datasets[self.coefficients]} has no "
                              "global coefficients")
        n = member_ids.size

        def part(features: tuple[str, ...], ids: np.ndarray, uniq: np.ndarray, found: list) -> np.ndarray:
            X = np.column_stack([np.ones(n)] + [cols[f] for f in features])
            zero = np.zeros(X.shape[1], np.float32)
            W = np.array([zero if c is None else c for c in found], np.float64).reshape(uniq.size, X.shape[1])
            return np.einsum("nd,nd->n", X, W[np.searchsorted(uniq, ids)])

        out = {"global": np.column_stack([np.ones(n)] + [cols[f] for f in self.global_features]) @ coefs[0],
               "member": part(self.member_features, member_ids, uniq_m, coefs[1:1 + uniq_m.size]),
               "job": part(self.job_features, job_ids, uniq_j, coefs[1 + uniq_m.size:])}
        out["probability"] = 1.0 / (1.0 + np.exp(-(out["global"] + out["member"] + out["job"])))
        return out

    def score_member(self, member_id: int, job_ids: Sequence[int]) -> dict[str, np.ndarray]:
        """P(positive hirer action | member applies) for each job, with each coordinate's log-odds."""
        jobs = np.asarray(job_ids, np.int64)
        return self._score(np.full(jobs.size, member_id, np.int64), jobs)

    def score_job(self, job_id: int, member_ids: Sequence[int]) -> dict[str, np.ndarray]:
        members = np.asarray(member_ids, np.int64)
        return self._score(members, np.full(members.size, job_id, np.int64))
