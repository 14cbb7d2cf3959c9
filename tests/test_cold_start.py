"""Job cold start: titles normalized deliberately, subword embeddings for unseen words, and the placement measure
against TF-IDF (embed/cold_start.py)."""

import json

import numpy as np
import pytest

from jobmatch.embed.cold_start import accuracy, place, tfidf_placement
from jobmatch.embed.jobs import FORMAT_VERSION, JobEncoder, title_tokens


def test_title_tokens_split_punctuation_and_set_seniority_apart():
    assert title_tokens("Senior Software Engineer II") == ["tsen:senior", "t:software", "t:engineer", "tsen:ii"]
    assert title_tokens("Sr. Front-End/UI Developer (Remote)") == ["tsen:sr", "t:front", "t:end", "t:ui",
                                                                    "t:developer", "t:remote"]
    assert title_tokens("FP&A Analyst, C++") == ["t:fp&a", "t:analyst", "t:c++"]
    assert title_tokens("Children's Librarian") == ["t:children", "t:librarian"]
    # a seniority word that is the whole title stays a title word, and a lone level is not stripped
    assert title_tokens("Lead") == ["t:lead"] and title_tokens("v") == ["t:v"]
    assert title_tokens("") == [] and title_tokens(None) == []


def test_place_and_accuracy_on_hand_made_vectors():
    ref = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.2, 1.0]])
    codes = np.array(["B", "B", "A", "A"])
    query = np.array([[1.0, 0.05], [0.1, 1.0], [0.0, 0.0]])
    got, ranked = place(query, ref, codes)
    assert got.tolist() == ["A", "B"] and ranked.tolist() == [[1, 0], [0, 1], [0, 1]]  # the zero query: a tie
    assert accuracy(query, ref, codes, np.array(["B", "A", "B"]), k=2) == {"top1": 2 / 3, "top2": 1.0}
    assert accuracy(query, ref, codes, np.array(["B", "A", "B"]), rule="nearest", k=1)["top1"] == 2 / 3
    with pytest.raises(ValueError, match="rule"):
        place(query, ref, codes, "farthest")


OCCUPATIONS = {  # code -> (titles the market uses, skills)
    "A": (["welder", "pipe welder", "structural welder", "welder fabricator"], ["welding", "metal fabrication"]),
    "B": (["nurse", "staff nurse", "charge nurse", "icu nurse"], ["patient care", "medication"]),
    "C": (["accountant", "staff accountant", "tax accountant", "cost accountant"], ["gaap", "reconciliation"]),
}
UNSEEN = (["welders", "nurses", "accountants"], ["A", "B", "C"])  # no word of these is a known title word


def market_tokens():
    tokens, codes, titles = [], [], []
    for code, (ts, skills) in OCCUPATIONS.items():
        for t in ts * 3:
            tokens.append(title_tokens(t) + [f"s:{s}" for s in skills] + [f"i:{code}"])
            codes.append(code)
            titles.append(t)
    return tokens, np.array(codes), titles


def test_unseen_title_words_land_by_their_subwords_where_word_tfidf_cannot():
    tokens, codes, titles = market_tokens()
    queries, true = UNSEEN[0], np.array(UNSEEN[1])
    # TF-IDF of words has nothing to go on: every query is a zero vector, a three-way tie broken by code order
    assert tfidf_placement(titles, codes, queries, true)["tfidf-words/centroid"]["top1"] == pytest.approx(1 / 3)
    enc = JobEncoder(dim=32, batch_size=16, buckets=4096, epochs=3, title_steps_per_epoch=60, seed=0)
    enc.fit(tokens, np.zeros((0, 2), np.int64))  # no interactions: the title -> content term alone
    query = enc.transform([title_tokens(q) for q in queries])
    assert accuracy(query, enc.transform(tokens), codes, true, k=1)["top1"] == 1.0
    # the learned part alone does it too (no borrowing from the known titles' neighbours)
    alone = JobEncoder(dim=32, batch_size=16, buckets=4096, epochs=3, title_steps_per_epoch=60, seed=0,
                       neighbours=0).fit(tokens, np.zeros((0, 2), np.int64))
    assert accuracy(alone.transform([title_tokens(q) for q in queries]), alone.transform(tokens), codes, true,
                    k=1)["top1"] == 1.0
    # without n-gram buckets and neighbours (the v1 design) the same unseen words all fall back to one vector
    bare = JobEncoder(dim=32, batch_size=16, buckets=0, epochs=3, title_steps_per_epoch=60, seed=0,
                      neighbours=0).fit(tokens, np.zeros((0, 2), np.int64))
    q0 = bare.transform([title_tokens(q) for q in queries])
    np.testing.assert_array_equal(q0[0], q0[1])


def test_encoder_save_load_exact_and_versioned(tmp_path):
    tokens, _, _ = market_tokens()
    enc = JobEncoder(dim=8, batch_size=8, buckets=512, epochs=1, title_steps_per_epoch=5).fit(
        tokens, np.array([[0, 1], [2, 3], [4, 5]] * 4))
    enc.save(tmp_path / "enc")
    new = [title_tokens("pipe welders"), title_tokens("night nurse"), ["s:gaap"]]
    again = JobEncoder.load(tmp_path / "enc")
    np.testing.assert_array_equal(again.transform(tokens + new), enc.transform(tokens + new))
    meta = json.loads((tmp_path / "enc" / "job_encoder.json").read_text())
    meta["version"] = FORMAT_VERSION - 1  # a v2 model has no known titles: refused by name, not misread
    (tmp_path / "enc" / "job_encoder.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"JobEncoder v{FORMAT_VERSION} model, found JobEncoder v{FORMAT_VERSION - 1}"):
        JobEncoder.load(tmp_path / "enc")


@pytest.mark.slow
def test_subwords_and_title_signal_place_withheld_onet_titles(onet_path):
    """O*NET titles no simulated job carries, on a 3,000-member O*NET market: the encoder places them better than
    TF-IDF of words (the baseline 000's encoder has to beat) and far better than the same encoder without n-gram
    buckets, title term and neighbours (the v1 design, where a title of unknown words gets the one <unk> vector),
    and titles with no known word land well above chance."""
    from jobmatch.embed.cold_start import evaluate_cold_start
    from jobmatch.simulate import SimConfig, simulate
    from jobmatch.taxonomy import load_onet

    market = simulate(load_onet(onet_path), SimConfig(members=3000, days=21, seed=1))
    r = evaluate_cold_start(market.jobs, market.companies, market.events, onet_path)
    bare = evaluate_cold_start(market.jobs, market.companies, market.events, onet_path,
                               JobEncoder(buckets=0, title_weight=0.0, neighbours=0))
    assert r["titles"] == bare["titles"] > 1000 and 0 < r["no_known_word"]["share"] < 0.5
    assert r["encoder/centroid"]["top1"] > bare["encoder/centroid"]["top1"] + 0.05
    assert r["no_known_word"]["top1"] > 5 / r["occupations"]
    assert r["best_tfidf"].startswith(("tfidf-words/", "tfidf-normalized/"))
    assert r["encoder_beats_tfidf"] and r["encoder/centroid"]["top1"] > r[r["best_tfidf"]]["top1"] + 0.03


def test_a_new_title_borrows_from_its_known_neighbours_and_a_known_one_does_not():
    tokens, codes, _ = market_tokens()
    kw = dict(dim=16, batch_size=8, buckets=512, epochs=1, title_steps_per_epoch=10, seed=3)
    enc = JobEncoder(**kw).fit(tokens, np.zeros((0, 2), np.int64))
    alone = JobEncoder(**kw, neighbours=0).fit(tokens, np.zeros((0, 2), np.int64))
    np.testing.assert_array_equal(enc.weight_, alone.weight_)  # borrowing is not training: same weights
    # titles seen in training (any seniority) embed as the learned part alone says
    known = [title_tokens("Senior Pipe Welder"), title_tokens("nurse") + ["s:medication"]]
    np.testing.assert_array_equal(enc.transform(known), alone.transform(known))
    new = [title_tokens("pipe welders"), title_tokens("icu nurses") + ["s:medication"], ["s:gaap"],
           title_tokens("zzzz")]  # no title; no n-gram shared with any known title: nothing to borrow
    got, own = enc.transform(new), alone.transform(new)
    np.testing.assert_array_equal(got[2:], own[2:])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    welder = enc.known_title_vectors_[enc.known_titles_.index("pipe welder")]
    assert got[0] @ welder > own[0] @ welder  # pulled toward the known title it shares most n-grams with
    # batch = single, whatever the batch mixes
    np.testing.assert_array_equal(np.vstack([enc.transform([t]) for t in known + new]), enc.transform(known + new))
    with pytest.raises(ValueError, match="neighbours"):
        JobEncoder(neighbours=-1)
    with pytest.raises(ValueError, match="neighbour_share"):
        JobEncoder(neighbour_share=1.5)
