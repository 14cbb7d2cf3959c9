"""Slice against PECOS XR-Linear and exact one-vs-all on the same features and split, in one run: training time,
prediction time, P@1/3/5, and Slice's ratios to PECOS.

    python benchmarks/xmc_bench.py [--threads 1] [--data SIM_DIR] [--exact-budget 3e8]

Problems: sparse bag-of-words synthetic problems with known label structure (`jobmatch.xmc.synthetic`, binary
TF-IDF, thousands of features, hundreds of labels, a few thousand points) and, with --data, the fastText user
vectors and D2 labels of a simulated marketplace, as in `jobmatch evaluate intent`. Each problem is split 80/20
once; Slice chooses its hyperparameters on a validation share of the 80%, never on the 20%. Exact one-vs-all is the
model Slice approximates (the same per-label SVM at Slice's chosen C, every point a pair of every label); it is
skipped where its design matrix would pass --exact-budget nonzeros. Every method runs on --threads threads.

libpecos pins numpy < 2 and scipy < 1.14, so it gets its own virtual environment (created on first use under
benchmarks/.pecos-venv, from the package registry); `pecos_xrlinear.py` runs there, and the two sides exchange
plain arrays through .npz files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jobmatch.evaluate import fmt
from jobmatch.xmc.metrics import precision_at_k
from jobmatch.xmc.slice import Slice, check_labels, exact_one_vs_all, unit_features
from jobmatch.xmc.synthetic import sparse_bow_xml

HERE = Path(__file__).resolve().parent
PECOS_REQUIREMENTS = ["numpy<2", "scipy<1.14", "scikit-learn"]
PECOS = "libpecos==1.2.8"  # --no-deps: its torch/transformers/datasets requirements serve XR-Transformer only
K = 5
BOW = {  # name: sparse_bow_xml arguments
    "bow 3k pts, 2k words, 200 labels": {"n_points": 3000, "n_features": 2000, "n_labels": 200, "seed": 0},
    "bow 5k pts, 5k words, 500 labels": {"n_points": 5000, "n_features": 5000, "n_labels": 500, "seed": 1},
    "bow 4k pts, 8k words, 1k labels (sparse labels)": {"n_points": 4000, "n_features": 8000, "n_labels": 1000, "seed": 2},
}


def pecos_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for libpecos ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PECOS_REQUIREMENTS], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", PECOS], check=True)
    return python


def simulated_features(data: Path, seed: int = 0) -> tuple[np.ndarray, sp.csr_matrix]:
    from jobmatch.config import Settings
    from jobmatch.events import EventLog
    from jobmatch.events.loading import ingest_folder
    from jobmatch.intent.datasets import fasttext_model, fasttext_user_vectors, xml_datasets

    with tempfile.TemporaryDirectory() as tmp, EventLog(Path(tmp) / "events.duckdb") as log:
        ingest_folder(log, data, Settings().time_bounds())
        docs = log.snapshot().documents()
    xml = xml_datasets(docs, top_k=1000)
    ft = fasttext_model([s for ctx in xml.context for s in ctx], dim=100, epochs=5, seed=seed)
    keep = [i for i, ls in enumerate(xml.labels_d2) if ls]
    X = fasttext_user_vectors(ft, [xml.context[i] for i in keep])
    return X, check_labels([xml.labels_d2[i] for i in keep], len(keep), len(xml.label_names))


def bow_features(kwargs: dict) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    problem = sparse_bow_xml(**kwargs)
    return problem.X, problem.Y


def _arrays(name: str, X: np.ndarray | sp.csr_matrix) -> dict:
    if not sp.issparse(X):
        return {name: X}
    X = sp.csr_matrix(X)
    return {f"{name}_data": X.data, f"{name}_indices": X.indices, f"{name}_indptr": X.indptr,
            f"{name}_shape": np.array(X.shape)}


def run_pecos(python: Path, X_train, Y_train: sp.csr_matrix, X_test, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **_arrays("x_train", X_train), **_arrays("x_test", X_test), y_indptr=Y_train.indptr,
                 y_indices=Y_train.indices, n_labels=Y_train.shape[1], k=K, threads=threads)
        subprocess.run([str(python), str(HERE / "pecos_xrlinear.py"), str(src), str(dst)], check=True)
        with np.load(dst) as z:
            return {"train_s": float(z["train_s"]), "predict_s": float(z["predict_s"]), "top": z["top_k"]}


def run_slice(X_train, Y_train, X_test, threads: int) -> tuple[dict, Slice]:
    start = time.perf_counter()
    model = Slice(n_jobs=threads).fit(X_train, Y_train)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    top = model.predict_topk(X_test, K)[0]
    return {"train_s": train_s, "predict_s": time.perf_counter() - start, "top": top}, model


def classifier_only(model: Slice, X_test) -> dict:
    """The same fitted Slice ranking its whole training shortlist by the classifiers alone (classifier weight 1):
    what the SVMs contribute without the label-vector similarity."""
    chosen = model.selection_
    model.selection_ = {**chosen, "classifier_weight": 1.0, "predict_shortlist": model.params.shortlist}
    start = time.perf_counter()
    top = model.predict_topk(X_test, K)[0]
    predict_s = time.perf_counter() - start
    model.selection_ = chosen
    return {"train_s": None, "predict_s": predict_s, "top": top}


def run_exact(X_train, Y_train, X_test, C: float, threads: int) -> dict:
    start = time.perf_counter()
    W, b = exact_one_vs_all(X_train, Y_train, C=C, n_jobs=threads)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = unit_features(X_test) @ W.T + b
    top = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :K]
    return {"train_s": train_s, "predict_s": time.perf_counter() - start, "top": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="threads for PECOS, processes for Slice and exact")
    ap.add_argument("--data", type=Path, help="a simulation directory: add its fastText user vectors (D2)")
    ap.add_argument("--only-data", action="store_true", help="skip the synthetic problems")
    ap.add_argument("--exact-budget", type=float, default=3e8, help="largest exact one-vs-all design (nonzeros)")
    ap.add_argument("--venv", type=Path, default=HERE / ".pecos-venv")
    args = ap.parse_args()
    python = pecos_python(args.venv)
    problems = [] if args.only_data else [(name, lambda kw=kw: bow_features(kw)) for name, kw in BOW.items()]
    if args.data:
        problems.append((f"fastText user vectors of {args.data.name} (D2)", lambda: simulated_features(args.data)))

    print(f"threads: {args.threads}; split 80/20; Slice hyperparameters chosen on a validation share of the 80%\n")
    print("| problem | method | train s | predict ms/query | P@1 | P@3 | P@5 | train / PECOS | P@1 − PECOS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, make in problems:
        X, Y = make()
        cut = int(0.8 * X.shape[0])
        X_train, Y_train, X_test, Y_test = X[:cut], Y[:cut], X[cut:], Y[cut:]
        truth = [set(Y_test.indices[Y_test.indptr[i]:Y_test.indptr[i + 1]].tolist()) for i in range(Y_test.shape[0])]
        shape = f"{name}: {cut:,} / {X.shape[0] - cut:,}, {X.shape[1]:,} features, {Y.shape[1]:,} labels"
        rows = {"PECOS XR-Linear": run_pecos(python, X_train, Y_train, X_test, args.threads)}
        rows["Slice (jobmatch)"], model = run_slice(X_train, Y_train, X_test, args.threads)
        rows["  same Slice, classifier only"] = classifier_only(model, X_test)
        row_nnz = X_train.nnz / cut if sp.issparse(X_train) else X.shape[1]
        sel = model.selection_
        if cut * Y.shape[1] * (row_nnz + 1) <= args.exact_budget:
            rows[f"exact one-vs-all, C={sel['C']:g}"] = run_exact(X_train, Y_train, X_test, sel["C"], args.threads)
        pecos = rows["PECOS XR-Linear"]
        p1_pecos = precision_at_k(pecos["top"], truth, 1)
        for i, (method, r) in enumerate(rows.items()):
            p = [precision_at_k(r["top"], truth, k) for k in (1, 3, 5)]
            ratio = f"{r['train_s'] / pecos['train_s']:.2f}x" if r["train_s"] is not None else "–"
            print(f"| {shape if i == 0 else ''} | {method} | {fmt(r['train_s'], 2)} | "
                  f"{r['predict_s'] / len(truth) * 1e3:.4f} | {fmt(p[0])} | {fmt(p[1])} | {fmt(p[2])} | "
                  f"{ratio} | {p[0] - p1_pecos:+.3f} |", flush=True)
        print(f"|  | Slice chose C={sel['C']:g}, classifier weight {sel['classifier_weight']:g}, prediction shortlist "
              f"{sel['predict_shortlist']} (validation P@1 {sel['validation_p@1']:.3f}) |  |  |  |  |  |  |  |")


if __name__ == "__main__":
    main()
