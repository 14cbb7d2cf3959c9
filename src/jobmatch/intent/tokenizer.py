"""BPE vocabulary for activity documents (002 §3.3), trained with HF `tokenizers`.

Words are whitespace-separated, so a company token `c_<name>` is one word (split into sub-words by BPE and masked
whole); the action tokens JOB_SEARCH, VIEW, SAVE, APPLY, DISMISS are added tokens that are never split and are
flagged so selective masking can leave them alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ACTIONS = ("JOB_SEARCH", "VIEW", "SAVE", "APPLY", "DISMISS")


@dataclass
class Encoded:
    ids: list[int]
    word_ids: list[int | None]  # word index of each token (None for special tokens)


class ActivityTokenizer:
    def __init__(self, tokenizer: Tokenizer):
        self.tok = tokenizer
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (tokenizer.token_to_id(t) for t in SPECIAL)
        self.action_ids = np.array([tokenizer.token_to_id(a) for a in ACTIONS])
        self.special_ids = np.array([tokenizer.token_to_id(t) for t in SPECIAL])

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> ActivityTokenizer:
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.BPEDecoder()
        tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL])
        tok.add_tokens([AddedToken(a, single_word=True, normalized=False) for a in ACTIONS])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL) + list(ACTIONS), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> Encoded:
        enc = self.tok.encode(text, add_special_tokens=False)
        return Encoded(enc.ids, enc.word_ids)

    def save(self, path: str | Path) -> None:
        self.tok.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> ActivityTokenizer:
        return cls(Tokenizer.from_file(str(path)))
