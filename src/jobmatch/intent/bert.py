"""BERT pre-training on activity documents (MLM only) and the user-activity vector (002 §3.3, §5.1).

The model is built from a `BertConfig` (nothing is downloaded). The MLM head runs only at masked positions.
Checkpoints are `save_pretrained` directories (config.json + model.safetensors) plus the optimizer state and
step, so a run resumes where it stopped; training uses a GPU when one is present.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertForMaskedLM

from jobmatch.intent.masking import IGNORE, Instance, mask_instance
from jobmatch.intent.tokenizer import ActivityTokenizer

RECENT_CHUNKS = 5  # 002: the user vector averages the most recent 5 chunks of the activity document


@dataclass(frozen=True)
class BertSize:
    layers: int = 4
    hidden: int = 64
    heads: int = 2
    max_len: int = 128

    @classmethod
    def paper(cls) -> BertSize:
        """002's chosen configuration: 12 layers x 128 hidden x 2 heads, 512 tokens."""
        return cls(layers=12, hidden=128, heads=2, max_len=512)


def build_model(vocab_size: int, size: BertSize, seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=size.hidden, num_hidden_layers=size.layers,
                        num_attention_heads=size.heads, intermediate_size=4 * size.hidden,
                        max_position_embeddings=max(size.max_len, 512), pad_token_id=0)
    return BertForMaskedLM(config)


def collate(batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(b[0]) for b in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    types = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y, t) in enumerate(batch):
        ids[i, :len(x)], labels[i, :len(y)], types[i, :len(t)] = torch.from_numpy(x), torch.from_numpy(y), \
            torch.from_numpy(t)
    return {"input_ids": ids, "labels": labels, "token_type_ids": types, "attention_mask": (ids != pad_id).long()}


def masked_lm_loss(model: BertForMaskedLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy at the masked positions only: the vocabulary projection never sees the other positions."""
    hidden = model.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        token_type_ids=batch["token_type_ids"]).last_hidden_state
    where = batch["labels"] != IGNORE
    logits = model.cls(hidden[where])
    return torch.nn.functional.cross_entropy(logits, batch["labels"][where])


@dataclass(frozen=True)
class PretrainParams:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-4
    warmup_share: float = 0.2  # 002: warm-up over 20% of the steps
    dupe_factor: int = 3
    mask_prob: float = 0.15
    selective: bool = True
    seed: int = 0


def pretrain(model: BertForMaskedLM, tok: ActivityTokenizer, instances: list[Instance], params: PretrainParams,
             checkpoint: Path | None = None, progress: Callable[[int, int, float], None] | None = None) -> list[float]:
    """MLM training; with `checkpoint`, resumes from it if present and saves to it at the end of every epoch."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    rng = np.random.default_rng(params.seed)
    masked = [(*mask_instance(inst, tok, rng, params.mask_prob, params.selective), inst.token_type)
              for _ in range(params.dupe_factor) for inst in instances]
    steps_per_epoch = (len(masked) + params.batch_size - 1) // params.batch_size
    total = steps_per_epoch * params.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=0.01)
    warmup = max(1, int(params.warmup_share * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    start_epoch, losses = 0, []
    if checkpoint is not None and (checkpoint / "state.json").exists():
        state = json.loads((checkpoint / "state.json").read_text())
        model.load_state_dict(BertForMaskedLM.from_pretrained(checkpoint).state_dict())
        opt.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        sched.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))
        start_epoch, losses = state["epoch"], state["losses"]
    model.train()
    for epoch in range(start_epoch, params.epochs):
        order = np.random.default_rng(params.seed + epoch).permutation(len(masked))
        for s in range(steps_per_epoch):
            batch = collate([masked[i] for i in order[s * params.batch_size:(s + 1) * params.batch_size]], tok.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            if not (batch["labels"] != IGNORE).any():
                continue
            loss = masked_lm_loss(model, batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if progress:
                progress(epoch * steps_per_epoch + s + 1, total, losses[-1])
        if checkpoint is not None:
            model.save_pretrained(checkpoint, safe_serialization=True)
            torch.save(opt.state_dict(), checkpoint / "optimizer.pt")
            torch.save(sched.state_dict(), checkpoint / "scheduler.pt")
            (checkpoint / "state.json").write_text(json.dumps({"epoch": epoch + 1, "losses": losses,
                                                               "params": asdict(params)}))
    model.eval()
    return losses


def chunks(tok: ActivityTokenizer, sessions: list[str], chunk_len: int, n_chunks: int = RECENT_CHUNKS
           ) -> list[list[int]]:
    """The most recent `n_chunks` chunks of the user's document, `[CLS] ... [SEP]`, each at most `chunk_len`."""
    ids = [i for s in sessions for i in tok.encode(s).ids]
    body = chunk_len - 2
    out = []
    end = len(ids)
    while end > 0 and len(out) < n_chunks:
        out.append([tok.cls_id, *ids[max(0, end - body):end], tok.sep_id])
        end -= body
    return out[::-1] or [[tok.cls_id, tok.sep_id]]


def pool_chunks(model: BertForMaskedLM, chunk_ids: list[list[int]], pad_id: int) -> torch.Tensor:
    """Per chunk, the mean token embedding (padding excluded) of each of the last 4 layers, concatenated."""
    if model.config.num_hidden_layers < 4:
        raise ValueError(f"model: the user vector pools the last 4 layers; this model has "
                         f"{model.config.num_hidden_layers}")
    device = next(model.parameters()).device
    width = max(len(c) for c in chunk_ids)
    ids = torch.full((len(chunk_ids), width), pad_id, dtype=torch.long)
    for i, c in enumerate(chunk_ids):
        ids[i, :len(c)] = torch.tensor(c)
    mask = (ids != pad_id).long().to(device)
    states = model.bert(input_ids=ids.to(device), attention_mask=mask, output_hidden_states=True).hidden_states
    m = mask.unsqueeze(-1).float()
    return torch.cat([(h * m).sum(1) / m.sum(1) for h in states[-4:]], dim=1)


@torch.no_grad()
def user_vectors(model: BertForMaskedLM, tok: ActivityTokenizer, documents: list[list[str]], chunk_len: int,
                 n_chunks: int = RECENT_CHUNKS, batch_size: int = 64) -> np.ndarray:
    """Per user: the pooled vector (4 x hidden) of each of the recent `n_chunks` chunks, averaged."""
    model.eval()
    all_chunks, owner = [], []
    for u, doc in enumerate(documents):
        for c in chunks(tok, doc, chunk_len, n_chunks):
            all_chunks.append(c)
            owner.append(u)
    out = np.zeros((len(documents), 4 * model.config.hidden_size))
    for s in range(0, len(all_chunks), batch_size):
        pooled = pool_chunks(model, all_chunks[s:s + batch_size], tok.pad_id).cpu().numpy()
        np.add.at(out, np.array(owner[s:s + batch_size]), pooled)
    return (out / np.bincount(owner, minlength=len(documents))[:, None]).astype(np.float32)


def multi_hot(labels: list[list[int]], n_labels: int) -> torch.Tensor:
    y = torch.zeros((len(labels), n_labels))
    for i, ls in enumerate(labels):
        y[i, ls] = 1.0
    return y


@dataclass(frozen=True)
class FineTuneParams:
    epochs: int = 1
    n_chunks: int = 1  # 002 fine-tunes on the most recent chunk; with short CPU chunks, more of them
    batch_size: int = 32
    lr: float = 3e-4  # BERT's parameters
    head_lr: float = 1e-2  # the new sigmoid layer, which starts from scratch
    seed: int = 0


def _user_pool(model: BertForMaskedLM, user_chunks: list[list[list[int]]], pad_id: int) -> torch.Tensor:
    """The user vector as `user_vectors` defines it (pooled chunks averaged per user), with gradients."""
    flat = [c for cs in user_chunks for c in cs]
    owner = torch.repeat_interleave(torch.arange(len(user_chunks)), torch.tensor([len(cs) for cs in user_chunks]))
    pooled = pool_chunks(model, flat, pad_id)
    total = torch.zeros((len(user_chunks), pooled.shape[1]), device=pooled.device).index_add(0, owner.to(pooled.device),
                                                                                            pooled)
    return total / torch.bincount(owner, minlength=len(user_chunks)).to(pooled.device).unsqueeze(1)


def fine_tune(model: BertForMaskedLM, tok: ActivityTokenizer, contexts: list[list[str]], labels: list[list[int]],
              n_labels: int, chunk_len: int, params: FineTuneParams = FineTuneParams(),
              progress: Callable[[int, int, float], None] | None = None) -> tuple[BertForMaskedLM, torch.nn.Linear]:
    """BERT+e2e (002 §3.4): a sigmoid layer over the user vector of the recent `n_chunks` chunks, BCE, BERT updated
    end to end. The layer's biases start at the labels' log-odds, so training begins from the base rates instead
    of spending its first steps learning that nearly every label is absent."""
    torch.manual_seed(params.seed)
    device = next(model.parameters()).device
    model = copy.deepcopy(model)
    head = torch.nn.Linear(4 * model.config.hidden_size, n_labels).to(device)
    y = multi_hot(labels, n_labels)
    prior = y.mean(0).clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        head.bias.copy_(torch.log(prior / (1 - prior)))
    opt = torch.optim.AdamW([{"params": model.parameters(), "lr": params.lr},
                             {"params": head.parameters(), "lr": params.head_lr}], weight_decay=0.01)
    user_chunks = [chunks(tok, c, chunk_len, params.n_chunks) for c in contexts]
    per_epoch = (len(user_chunks) + params.batch_size - 1) // params.batch_size
    model.train()
    for epoch in range(params.epochs):
        for s, idx in enumerate(torch.randperm(len(user_chunks)).split(params.batch_size)):
            pooled = _user_pool(model, [user_chunks[i] for i in idx.tolist()], tok.pad_id)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(head(pooled), y[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress:
                progress(epoch * per_epoch + s + 1, params.epochs * per_epoch, loss.item())
    model.eval()
    return model, head
