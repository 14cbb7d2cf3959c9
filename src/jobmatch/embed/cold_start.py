"""Job cold start (000's promise that a brand-new job gets a good embedding from its content), measured.

Real job titles the simulator never used — O*NET alternate titles of the simulated occupations that no simulated
job carries — are embedded from the title alone, and each is placed in the occupation whose simulated jobs' mean
embedding is nearest. The same placement is done with TF-IDF vectors of the titles (scikit-learn) as the
baseline: word overlap with the simulated jobs' titles is what an encoder must beat to be worth its training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
from sklearn.feature_extraction.text import TfidfVectorizer

from jobmatch.embed.jobs import (NGRAM_MAX, NGRAM_MIN, JobEncoder, co_interaction_pairs, is_title_token, job_tokens,
                                occupation_words, title_tokens)

TOP_K = 5


def _occupation_words(title: str) -> tuple[str, ...]:
    return occupation_words(title_tokens(title))


def withheld_titles(onet_path: str | Path, jobs: pa.Table) -> tuple[list[str], list[str]]:
    """(titles, occupation codes): O*NET titles of the occupations in `jobs` whose words (seniority aside) no job
    in `jobs` has as its title, and that O*NET gives to one of those occupations only (an ambiguous title has no
    right answer)."""
    from jobmatch.taxonomy.onet import _rows

    occupations = set(jobs["occupation"].to_pylist())
    used = {_occupation_words(t) for t in jobs["title"].to_pylist()}
    codes_of: dict[tuple[str, ...], set[str]] = defaultdict(set)
    text_of: dict[tuple[str, ...], str] = {}
    root = Path(onet_path)
    for table, column in (("occupation_data", "Title"), ("alternate_titles", "Alternate Title"),
                          ("sample_of_reported_titles", "Reported Job Title")):
        for r in _rows(root, table):
            words = _occupation_words(r[column])
            if words:
                codes_of[words].add(r["O*NET-SOC Code"])
                text_of.setdefault(words, r[column].strip().lower())
    picked = sorted((text_of[w], next(iter(c))) for w, c in codes_of.items()
                    if len(c) == 1 and next(iter(c)) in occupations and w not in used)
    return [t for t, _ in picked], [c for _, c in picked]


def place(query: np.ndarray, ref: np.ndarray, ref_codes: np.ndarray, rule: str = "centroid"
          ) -> tuple[np.ndarray, np.ndarray]:
    """Occupations ranked for each query row, best first: (codes (n_occupations,), (n_query, n_occupations) ranks).

    `centroid`: by cosine to the mean of each occupation's unit-length reference rows; `nearest`: by the cosine of
    the occupation's nearest reference row. Ties go to the code that sorts first (a zero query ties everywhere)."""
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    codes, group = np.unique(ref_codes, return_inverse=True)
    q, r = unit(np.asarray(query, np.float64)), unit(np.asarray(ref, np.float64))
    if rule == "centroid":
        centre = np.zeros((codes.size, r.shape[1]))
        np.add.at(centre, group, r)
        score = q @ unit(centre).T
    elif rule == "nearest":
        sim = q @ r.T
        score = np.full((q.shape[0], codes.size), -np.inf)
        for k in range(codes.size):
            score[:, k] = sim[:, group == k].max(axis=1)
    else:
        raise ValueError(f"rule: expected 'centroid' or 'nearest', got {rule!r}")
    return codes, np.argsort(-score, axis=1, kind="stable")


def accuracy(query: np.ndarray, ref: np.ndarray, ref_codes: np.ndarray, true_codes: np.ndarray,
             rule: str = "centroid", k: int = TOP_K) -> dict[str, float]:
    """Top-1 and top-k share of queries whose true occupation is ranked first / among the first k."""
    codes, ranked = place(query, ref, ref_codes, rule)
    hit = codes[ranked[:, :k]] == np.asarray(true_codes)[:, None]
    return {"top1": float(hit[:, 0].mean()), f"top{k}": float(hit.any(axis=1).mean())}


TFIDF_BASELINES: dict[str, dict] = {
    # scikit-learn's defaults: word overlap, the baseline 000's encoder has to beat
    "tfidf-words": {},
    # the same words after the encoder's normalization (punctuation, seniority words dropped): the fair twin
    "tfidf-normalized": {"analyzer": _occupation_words},
    # character n-grams, as the encoder's subwords, but with no training: shows what the n-grams alone give
    "tfidf-char": {"analyzer": "char_wb", "ngram_range": (NGRAM_MIN, NGRAM_MAX)},
}


def tfidf_placement(ref_titles: list[str], ref_codes: np.ndarray, titles: list[str], true_codes: np.ndarray
                    ) -> dict[str, dict[str, float]]:
    """Each TF-IDF baseline, fitted on the reference titles, under both placement rules."""
    out = {}
    for name, kwargs in TFIDF_BASELINES.items():
        vec = TfidfVectorizer(**kwargs).fit(ref_titles)
        ref, q = vec.transform(ref_titles).toarray(), vec.transform(titles).toarray()
        for rule in ("centroid", "nearest"):
            out[f"{name}/{rule}"] = accuracy(q, ref, ref_codes, true_codes, rule)
    return out


def encoder_placement(encoder: JobEncoder, tokens: list[list[str]], ref_codes: np.ndarray, titles: list[str],
                      true_codes: np.ndarray) -> dict[str, dict[str, float]]:
    """The encoder, each new title embedded from its title alone, placed among the jobs' title-view embeddings
    (`encoder/...`: title against title, as TF-IDF compares them) and among their full embeddings
    (`encoder-full/...`: title against the whole job)."""
    query = encoder.transform([title_tokens(t) for t in titles])
    views = {"encoder": encoder.transform([[t for t in toks if is_title_token(t)] for toks in tokens]),
             "encoder-full": encoder.transform(tokens)}
    out = {f"{name}/{rule}": accuracy(query, ref, ref_codes, true_codes, rule)
           for name, ref in views.items() for rule in ("centroid", "nearest")}
    unknown = np.array([not any(f"t:{w}" in encoder.vocab_ for w in _occupation_words(x)) for x in titles])
    out["no_known_word"] = {"share": float(unknown.mean()) if unknown.size else 0.0}
    if unknown.any():
        out["no_known_word"].update(accuracy(query[unknown], views["encoder"], ref_codes, true_codes[unknown]))
    return out


def evaluate_cold_start(jobs: pa.Table, companies: pa.Table, events: pa.Table, onet_path: str | Path,
                        encoder: JobEncoder | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Train `encoder` (default JobEncoder()) on the jobs and events, then place the withheld O*NET titles.

    Returns {"titles": n, "occupations": n, "<method>/<rule>": {"top1", "top5"}, "no_known_word": {...},
    "best_tfidf": name, "encoder_beats_tfidf": bool} where the comparison is top-1, centroid rule for the
    encoder against the best TF-IDF word baseline under either rule."""
    say = say or (lambda _m: None)
    titles, codes = withheld_titles(onet_path, jobs)
    if not titles:
        raise ValueError("titles: no O*NET title of the simulated occupations is left unused by the jobs")
    true = np.array(codes)
    ref_codes = np.array(jobs["occupation"].to_pylist())
    industry = dict(zip(companies["company_id"].to_pylist(), companies["industry"].to_pylist()))
    tokens = job_tokens(jobs, industry)
    job_row = {int(j): i for i, j in enumerate(jobs["job_id"].to_pylist())}
    say(f"job encoder on {jobs.num_rows:,} jobs; {len(titles):,} withheld titles")
    encoder = (encoder or JobEncoder()).fit(tokens, co_interaction_pairs(events, job_row))
    result: dict = {"titles": len(titles), "occupations": int(np.unique(true).size)}
    result.update(encoder_placement(encoder, tokens, ref_codes, titles, true))
    result.update(tfidf_placement(jobs["title"].to_pylist(), ref_codes, titles, true))
    word_baselines = [k for k in result if k.startswith(("tfidf-words/", "tfidf-normalized/"))]
    best = max(word_baselines, key=lambda k: result[k]["top1"])
    result["best_tfidf"] = best
    result["encoder_beats_tfidf"] = result["encoder/centroid"]["top1"] > result[best]["top1"]
    return result
