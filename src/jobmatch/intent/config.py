"""Presets for the user-intent models (002): model sizes, training lengths, label count, Slice shortlist."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobmatch.intent.bert import RECENT_CHUNKS, BertSize, FineTuneParams


@dataclass(frozen=True)
class IntentConfig:
    """Model sizes and training lengths for the user-intent models. `cpu()` (the default) lets `jobmatch evaluate
    intent` finish in 30 minutes on two cores; `paper()` is 002's BERT (12 x 128, 512 tokens, dupe factor 3), meant
    for a GPU; `quick()` is for tests."""

    name: str = "cpu"
    max_members: int | None = None  # a sample of the members to train on (the flow still serves every member)
    labels: int = 1000
    document: str = "titles+companies"  # how much of each job an activity document carries (DOCUMENT_CONTENT)
    bert: BertSize = field(default_factory=BertSize)
    vocab: int = 6000
    dupe_factor: int = 1
    pretrain_epochs: int = 1
    finetune_epochs: int = 2
    finetune_chunks: int = RECENT_CHUNKS  # 002 fine-tunes on one 512-token chunk; five of 128 cover about as much
    fasttext_dim: int = 100
    fasttext_epochs: int = 5
    e2e_epochs: int = 20
    shortlist: int = 100
    ef_search: int = 300

    @classmethod
    def quick(cls) -> IntentConfig:
        return cls(name="quick", max_members=1500, labels=200, bert=BertSize(layers=4, hidden=32, heads=2, max_len=64),
                   vocab=1500, finetune_epochs=1, fasttext_dim=32, fasttext_epochs=2, e2e_epochs=5, shortlist=50,
                   ef_search=100)

    @classmethod
    def main(cls) -> IntentConfig:
        """The size `jobmatch run main` uses: a sample of members and a small BERT, so the whole main job stays
        within its time budget on two cores; `cpu` is the full-size evaluation. Four layers: the user vector pools
        the last four."""
        return cls(name="main", max_members=3000, labels=500, bert=BertSize(layers=4, hidden=64, heads=2, max_len=128),
                   vocab=4000, finetune_epochs=1, fasttext_dim=64, fasttext_epochs=3, e2e_epochs=10)

    @classmethod
    def cpu(cls) -> IntentConfig:
        return cls()

    @classmethod
    def paper(cls) -> IntentConfig:
        return cls(name="paper", bert=BertSize.paper(), dupe_factor=3, finetune_chunks=1)

    def finetune(self, seed: int) -> FineTuneParams:
        return FineTuneParams(epochs=self.finetune_epochs, n_chunks=self.finetune_chunks, seed=seed)

    @classmethod
    def named(cls, name: str) -> IntentConfig:
        presets = {"quick": cls.quick, "main": cls.main, "cpu": cls.cpu, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"size: expected one of {', '.join(presets)}, got {name!r}")
        return presets[name]()
