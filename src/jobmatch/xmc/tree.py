"""A label shortlist for sparse features: labels clustered by spherical k-means of their vectors (a two-level tree).

A query scores the cluster centroids, keeps the `beam` best clusters and scores every label inside them: its cost is
L / leaf_size + beam x leaf_size label comparisons instead of L. hnswlib indexes dense vectors only, and densifying
thousands of sparse TF-IDF dimensions would not scale.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.random_projection import GaussianRandomProjection

BATCH_ELEMENTS = 1 << 22  # candidate (row, label) similarities held at once while querying
PROJECTION_DIMS = 128  # label vectors are clustered in this many random dimensions


def unit_rows(M: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(M.multiply(M).sum(axis=1)).ravel())
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ M, dtype=np.float32)


class LabelTree:
    def __init__(self, leaf_size: int = 100, beam: int = 10, seed: int = 0):
        self.leaf_size, self.beam, self.seed = leaf_size, beam, seed

    def fit(self, label_vectors: sp.csr_matrix) -> LabelTree:
        """Cluster unit label vectors; labels without positives (zero vectors) are left out of every cluster. Where
        the beam would reach every cluster anyway, one cluster holds every label (an exact search)."""
        self.label_vectors_ = sp.csr_matrix(label_vectors, dtype=np.float32)
        present = np.flatnonzero(np.diff(self.label_vectors_.indptr) > 0)
        n_clusters = -(-present.size // self.leaf_size)
        assign = np.full(self.label_vectors_.shape[0], -1, np.int64)
        if n_clusters <= self.beam:
            assign[present] = 0
        else:
            # k-means on a Gaussian projection of the unit vectors (cosines kept within JL distortion): sparse
            # k-means over thousands of dimensions costs more than the rest of training; the clusters only steer
            # the search, which then scores the exact vectors
            dims = min(PROJECTION_DIMS, self.label_vectors_.shape[1])
            projected = GaussianRandomProjection(dims, random_state=self.seed).fit_transform(
                self.label_vectors_[present])
            projected /= np.maximum(np.linalg.norm(projected, axis=1, keepdims=True), 1e-12)
            assign[present] = KMeans(n_clusters, n_init=1, max_iter=20, random_state=self.seed).fit_predict(projected)
        return self._with_assignment(assign)

    def _with_assignment(self, assign: np.ndarray) -> LabelTree:
        self.assign_ = assign
        present = np.flatnonzero(assign >= 0)
        self.members_ = present[np.argsort(assign[present], kind="stable")]
        n_clusters = int(assign.max()) + 1 if present.size else 0
        self.starts_ = np.searchsorted(assign[self.members_], np.arange(n_clusters + 1))
        membership = sp.csr_matrix((np.ones(present.size, np.float32), (assign[present], present)),
                                   shape=(n_clusters, assign.size))
        self.centroids_ = unit_rows(membership @ self.label_vectors_)
        return self

    @classmethod
    def from_assignment(cls, label_vectors: sp.csr_matrix, assign: np.ndarray, leaf_size: int, beam: int,
                        seed: int) -> LabelTree:
        """The fitted tree, rebuilt from its label vectors and cluster assignment (what a saved model stores)."""
        tree = cls(leaf_size, beam, seed)
        tree.label_vectors_ = sp.csr_matrix(label_vectors, dtype=np.float32)
        return tree._with_assignment(assign)

    def query(self, Q: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(labels, cosine similarities) of each unit row's k nearest labels found in its `beam` best clusters,
        nearest first (ties: lower label id); label -1 and similarity -inf where fewer labels were found."""
        sizes = np.diff(self.starts_)
        n_clusters, widest = sizes.size, int(sizes.max(initial=0))
        beam = min(self.beam, n_clusters)
        step = max(1, BATCH_ELEMENTS // max(1, beam * widest))  # rows per batch: bounded candidate matrices
        parts = [self._query_batch(Q[lo:lo + step], k, beam, widest) for lo in range(0, Q.shape[0], step)]
        return np.concatenate([a for a, _ in parts]), np.concatenate([s for _, s in parts])

    def _query_batch(self, Q: sp.csr_matrix, k: int, beam: int, widest: int) -> tuple[np.ndarray, np.ndarray]:
        n = Q.shape[0]
        labels = np.full((n, beam * widest), -1, np.int64)
        sims = np.full((n, beam * widest), -np.inf, np.float32)
        if beam:
            cluster_sim = Q @ self.centroids_.toarray().T
            # slot j of a row holds its j-th cluster (any order): columns j * widest ... j * widest + size - 1
            best = np.argpartition(-cluster_sim, beam - 1, axis=1)[:, :beam] if beam < cluster_sim.shape[1] else \
                np.broadcast_to(np.arange(beam), (n, beam))
            for c in range(self.starts_.size - 1):
                hit, slot = np.nonzero(best == c)
                members = self.members_[self.starts_[c]:self.starts_[c + 1]]
                if hit.size == 0 or members.size == 0:
                    continue
                cols = slot[:, None] * widest + np.arange(members.size)
                labels[hit[:, None], cols] = members
                # the cluster's vectors densified: centroids of many documents are dense, and a sparse-dense product
                # is one pass where sparse-sparse takes two
                sims[hit[:, None], cols] = Q[hit] @ self.label_vectors_[members].toarray().T
        k_found = min(k, labels.shape[1])
        if k_found < labels.shape[1]:
            top = np.argpartition(-sims, k_found - 1, axis=1)[:, :k_found]
            labels, sims = np.take_along_axis(labels, top, 1), np.take_along_axis(sims, top, 1)
        order = np.lexsort((labels, -sims), axis=1)
        labels, sims = np.take_along_axis(labels, order, 1), np.take_along_axis(sims, order, 1)
        pad = ((0, 0), (0, k - k_found))
        return np.pad(labels, pad, constant_values=-1), np.pad(sims, pad, constant_values=-np.inf)
