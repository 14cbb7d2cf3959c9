"""Slice against PECOS XR-Linear on the same features, in one run: training time, prediction time, P@1/3/5.

    python benchmarks/slice_vs_pecos.py [--points 20000 --labels 2000 --dim 64] [--data SIM_DIR]

By default the features are a synthetic XML problem with known structure (`jobmatch.xmc.synthetic`); with --data
they are the fastText user vectors and D2 labels of a simulated marketplace, as in `jobmatch evaluate intent`.
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

from jobmatch.xmc.metrics import precision_at_k
from jobmatch.xmc.slice import Slice, SliceParams
from jobmatch.xmc.synthetic import synthetic_xml

HERE = Path(__file__).resolve().parent
PECOS_REQUIREMENTS = ["numpy<2", "scipy<1.14", "scikit-learn"]
PECOS = "libpecos==1.2.8"  # --no-deps: its torch/transformers/datasets requirements serve XR-Transformer only


def pecos_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for libpecos ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PECOS_REQUIREMENTS], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", PECOS], check=True)
    return python


def simulated_features(data: Path, seed: int = 0) -> tuple[np.ndarray, list[list[int]], int]:
    import pyarrow.parquet as pq

    from jobmatch.intent.datasets import fasttext_model, fasttext_user_vectors, member_documents, xml_datasets

    t = {n: pq.read_table(data / f"{n}.parquet") for n in ("events", "jobs", "companies")}
    xml = xml_datasets(member_documents(t["events"], t["jobs"], t["companies"]), top_k=1000)
    ft = fasttext_model([s for ctx in xml.context for s in ctx], dim=100, epochs=5, seed=seed)
    keep = [i for i, ls in enumerate(xml.labels_d2) if ls]
    return fasttext_user_vectors(ft, [xml.context[i] for i in keep]), [xml.labels_d2[i] for i in keep], \
        len(xml.label_names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--labels", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--data", type=Path, help="a simulation directory: use its fastText user vectors instead")
    ap.add_argument("--venv", type=Path, default=HERE / ".pecos-venv")
    args = ap.parse_args()
    python = pecos_python(args.venv)
    if args.data:
        X, Y, n_labels = simulated_features(args.data)
        source = f"fastText user vectors of {args.data} (D2)"
    else:
        X, Y = synthetic_xml(args.points, args.labels, args.dim, noise=1.5, seed=0)
        n_labels, source = args.labels, "synthetic"
    cut = int(0.8 * len(Y))
    truth = [set(y) for y in Y[cut:]]
    print(f"{source}: {cut:,} training and {len(Y) - cut:,} test points, {n_labels:,} labels, {X.shape[1]} dims")

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, x_train=X[:cut], y_indptr=np.cumsum([0] + [len(y) for y in Y[:cut]]),
                 y_indices=np.fromiter((label for y in Y[:cut] for label in y), np.int64), n_labels=n_labels,
                 x_test=X[cut:], k=5)
        subprocess.run([str(python), str(HERE / "pecos_xrlinear.py"), str(src), str(dst)], check=True)
        with np.load(dst) as z:
            pecos = {"train_s": float(z["train_s"]), "predict_s": float(z["predict_s"]), "top": z["top_k"]}

    start = time.perf_counter()
    model = Slice(SliceParams(shortlist=100, ef_search=300)).fit(X[:cut], Y[:cut], n_labels)
    slice_train = time.perf_counter() - start
    start = time.perf_counter()
    top = model.predict(X[cut:], 5)[0]
    slice_predict = time.perf_counter() - start

    n_test = len(truth)
    print(f"{'method':<18} {'train s':>8} {'predict ms/query':>17} {'P@1':>6} {'P@3':>6} {'P@5':>6}")
    rows = [("PECOS XR-Linear", pecos["train_s"], pecos["predict_s"], pecos["top"]),
            ("Slice (jobmatch)", slice_train, slice_predict, top)]
    for name, train_s, predict_s, pred in rows:
        print(f"{name:<18} {train_s:>8.2f} {predict_s / n_test * 1e3:>17.4f} "
              + " ".join(f"{precision_at_k(pred, truth, k):>6.3f}" for k in (1, 3, 5)))
    gap = precision_at_k(top, truth, 1) - precision_at_k(pecos["top"], truth, 1)
    print(f"Slice / PECOS: training time {slice_train / pecos['train_s']:.1f}x, "
          f"prediction time {slice_predict / pecos['predict_s']:.1f}x, P@1 {gap:+.3f}")


if __name__ == "__main__":
    main()
