"""Masked-language-model inputs for activity documents (002 §3.3, §5.1).

Pairs of consecutive sessions become `[CLS] session_a [SEP] session_b [SEP]` (at most `max_len` tokens); each
instance is masked `dupe_factor` times. Masking is whole-word (every sub-token of a chosen word) and selective:
action tokens, frequent and uninformative, are never chosen. Of the chosen tokens 80% become [MASK], 10% a random
token and 10% stay, as in BERT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jobmatch.intent.tokenizer import ActivityTokenizer, Encoded

IGNORE = -100


@dataclass
class Instance:
    ids: np.ndarray  # token ids with [CLS]/[SEP]
    word_ids: np.ndarray  # -1 for special tokens, else a word index unique within the instance
    token_type: np.ndarray


def session_pairs(tok: ActivityTokenizer, sessions: list[str], max_len: int) -> list[Instance]:
    """Consecutive sessions two at a time; each side is truncated from the left (keeping its most recent part)."""
    encoded = [tok.encode(s) for s in sessions]
    out = []
    for i in range(0, len(encoded), 2):
        a = encoded[i]
        b = encoded[i + 1] if i + 1 < len(encoded) else Encoded([], [])
        budget = max_len - 3
        keep_b = min(len(b.ids), budget // 2 if len(a.ids) > budget // 2 else budget - len(a.ids))
        keep_a = min(len(a.ids), budget - keep_b)
        a_ids, a_w = a.ids[len(a.ids) - keep_a:], a.word_ids[len(a.ids) - keep_a:]
        b_ids, b_w = b.ids[:keep_b], b.word_ids[:keep_b]
        offset = (max((w for w in a_w if w is not None), default=-1)) + 1
        ids = [tok.cls_id, *a_ids, tok.sep_id, *b_ids, tok.sep_id]
        words = [-1, *[w if w is not None else -1 for w in a_w], -1,
                 *[w + offset if w is not None else -1 for w in b_w], -1]
        types = [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)
        out.append(Instance(np.array(ids), np.array(words), np.array(types)))
    return out


def mask_instance(inst: Instance, tok: ActivityTokenizer, rng: np.random.Generator, prob: float = 0.15,
                  selective: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(masked input ids, labels with IGNORE outside the masked positions)."""
    ids = inst.ids.copy()
    eligible = inst.word_ids >= 0
    if selective:
        eligible &= ~np.isin(ids, tok.action_ids)
    words = np.unique(inst.word_ids[eligible])
    labels = np.full(ids.size, IGNORE)
    if words.size == 0:
        return ids, labels
    n_pick = max(1, int(round(prob * words.size)))
    chosen = rng.choice(words, size=min(n_pick, words.size), replace=False)
    positions = np.flatnonzero(np.isin(inst.word_ids, chosen) & eligible)
    labels[positions] = ids[positions]
    r = rng.random(positions.size)
    ids[positions[r < 0.8]] = tok.mask_id
    randomize = positions[(r >= 0.8) & (r < 0.9)]
    ids[randomize] = rng.integers(len(tok.special_ids) + len(tok.action_ids), tok.vocab_size, randomize.size)
    return ids, labels
