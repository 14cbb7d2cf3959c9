"""XR-Linear (PECOS) side of `xmc_bench.py`, run inside the benchmark's own virtual environment.

libpecos pins scipy < 1.14 and numpy < 2, so it cannot share jobmatch's environment; the two sides exchange
features and predictions through .npz files (plain arrays, no pickle).

    python pecos_xrlinear.py IN.npz OUT.npz
IN holds the features as x_train / x_test (dense) or x_train_{data,indices,indptr,shape} / x_test_{...} (CSR),
y_indptr, y_indices (the training labels as CSR), n_labels, k and threads; OUT receives top_k (n_test x k label ids, -1
where fewer were returned), train_s and predict_s.
"""

import sys
import time

import numpy as np
import scipy.sparse as sp
from pecos.xmc import Indexer, LabelEmbeddingFactory
from pecos.xmc.xlinear.model import XLinearModel


def features(d, name: str):
    if name in d:
        return np.ascontiguousarray(d[name], dtype=np.float32)
    return sp.csr_matrix((d[f"{name}_data"].astype(np.float32), d[f"{name}_indices"], d[f"{name}_indptr"]),
                         shape=tuple(d[f"{name}_shape"]))


def main(src: str, dst: str) -> None:
    d = np.load(src)
    x_train, x_test = features(d, "x_train"), features(d, "x_test")
    n_labels, k, threads = int(d["n_labels"]), int(d["k"]), int(d["threads"])
    y_train = sp.csr_matrix((np.ones(d["y_indices"].size, np.float32), d["y_indices"], d["y_indptr"]),
                            shape=(x_train.shape[0], n_labels)).tocsc()
    start = time.perf_counter()
    # PIFA label embeddings -> hierarchical k-means label tree -> one-vs-rest linear models at every level
    chain = Indexer.gen(LabelEmbeddingFactory.create(y_train, x_train, method="pifa", threads=threads), seed=0,
                        threads=threads)
    model = XLinearModel.train(x_train, y_train, C=chain, threads=threads)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(x_test, beam_size=10, only_topk=k, threads=threads).tocsr()
    predict_s = time.perf_counter() - start
    top = np.full((x_test.shape[0], k), -1, np.int64)
    for i in range(x_test.shape[0]):
        cols = pred.indices[pred.indptr[i]:pred.indptr[i + 1]]
        vals = pred.data[pred.indptr[i]:pred.indptr[i + 1]]
        ranked = cols[np.argsort(-vals, kind="stable")][:k]
        top[i, :ranked.size] = ranked
    np.savez(dst, top_k=top, train_s=train_s, predict_s=predict_s)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
