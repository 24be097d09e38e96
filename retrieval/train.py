"""Fit a learned fusion strategy on an indexed collection, from its stored vectors (no re-encoding).

Self-supervised by default: InfoNCE between two random subsets of one item's modalities (modality
dropout), so an item's audio alone lands near its image alone. With a label field (e.g. `digit`), a
supervised contrastive loss makes every item of the same label a positive. Seeded and deterministic.
Learned strategies align different encoders' spaces from items that carry several modalities; with
`centre`, each field's mean vector is subtracted first (the modality gap of contrastive encoders).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.errors import InvalidInputError
from retrieval.fusion.checkpoint import FusionCheckpoint
from retrieval.fusion.modules import MODULES, build_module
from retrieval.fusion.registry import learned_strategies, strategy_class
from retrieval.space import VectorSpace


@dataclass
class TrainConfig:
    strategy: str
    label_field: str | None = None
    where: dict[str, str] = field(default_factory=dict)  # metadata filter, e.g. {"split": "train"}
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    out_dim: int = 128
    hidden: int = 256
    width: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    keep_probability: float = 0.5  # each present field is kept in a view with this probability
    # a view of two or more fields has one of them swapped for another item's with this probability (the
    # target unchanged), so the module can learn that one field may mislead. Off by default: on the
    # cross-speaker benchmark's tuning rotation (3 seeds) worst fused-minus-best-single went, for 0 / 0.25 /
    # 0.5 / 0.75, early -0.047 / -0.051 / -0.037 / -0.041, gated -0.095 / -0.094 / -0.082 / -0.074,
    # cross-attention -0.061 / -0.109 / -0.115 / -0.063: no setting better for all three beyond seed spread
    corrupt_probability: float = 0.0
    centre: bool = True
    seed: int = 0


@dataclass
class TrainResult:
    path: Path
    losses: list[float]
    items: int
    seconds: float


def _module_config(config: TrainConfig, dims: list[int]) -> dict[str, Any]:
    learned = learned_strategies()
    if config.strategy not in learned:
        raise InvalidInputError(f"strategy {config.strategy!r} does not learn; these do: {', '.join(learned)}")
    kind = str(strategy_class(config.strategy).module_kind)
    base: dict[str, Any] = {"kind": kind, "dims": dims, "out_dim": config.out_dim, "dropout": config.dropout}
    return {**base, **{key: getattr(config, key) for key in MODULES[kind].config_keys}}


def random_views(mask: torch.Tensor, keep: float, generator: torch.Generator) -> torch.Tensor:
    """A random non-empty subset of each row's present fields (modality dropout)."""
    view = (torch.rand(mask.shape, generator=generator) < keep) & mask
    empty = ~view.any(dim=1)
    if empty.any():  # keep one present field at random where dropout removed them all
        scores = torch.rand(mask[empty].shape, generator=generator) * mask[empty]
        view[empty] = F.one_hot(scores.argmax(dim=1), mask.shape[1]).bool()
    return view


def corrupt_views(
    inputs: list[torch.Tensor], view: torch.Tensor, probability: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """With `probability`, one field of each view that holds two or more is replaced by the same field of
    another row that has it (a recording of another word beside the right image, say)."""
    if probability <= 0:
        return inputs
    rows = torch.nonzero((view.sum(dim=1) >= 2) & (torch.rand(len(view), generator=generator) < probability)).flatten()
    if not len(rows):
        return inputs
    chosen = (torch.rand(view[rows].shape, generator=generator) * view[rows]).argmax(dim=1)
    out = [x.clone() for x in inputs]
    for i, x in enumerate(out):
        targets, donors = rows[chosen == i], torch.nonzero(view[:, i]).flatten()
        if len(targets) and len(donors) > 1:  # a target is among the donors: step past it by 1..n-1
            step = torch.randint(1, len(donors), (len(targets),), generator=generator)
            x[targets] = inputs[i][donors[(torch.searchsorted(donors, targets) + step) % len(donors)]]
    return out


def contrastive_loss(a: torch.Tensor, b: torch.Tensor, temperature: float, labels: torch.Tensor | None) -> torch.Tensor:
    """Symmetric InfoNCE; with labels, supervised contrastive (every same-label pair is a positive)."""
    logits = a @ b.T / temperature
    if labels is None:
        target = torch.arange(len(a))
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    positives = (labels[:, None] == labels[None, :]).float()
    log_prob_ab = logits.log_softmax(dim=1)
    log_prob_ba = logits.T.log_softmax(dim=1)
    per_row = lambda lp: -(lp * positives).sum(1) / positives.sum(1)  # noqa: E731
    return (per_row(log_prob_ab).mean() + per_row(log_prob_ba).mean()) / 2


def train(
    space: VectorSpace,
    ids: np.ndarray,
    labels: list[Any] | None,
    config: TrainConfig,
    out: str | Path,
    progress: Callable[[int, int, float], None] | None = None,
    meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train on `ids` of `space` and save the checkpoint to `out` (plus `out`.loss.json)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    fields = [f for f in space.fields if f.key in space.tables]
    dims = [space.tables[f.key].dim for f in fields]
    blocks, mask = space.item_blocks(fields, dims, ids)
    keep = np.asarray(mask.any(axis=1), bool)
    blocks, mask, ids = [b[keep] for b in blocks], mask[keep], ids[keep]
    if len(ids) < 4:
        raise InvalidInputError(f"only {len(ids)} items to train on; index more of the collection first")
    means = (
        [
            b[mask[:, i]].mean(axis=0) if mask[:, i].any() else np.zeros(b.shape[1], np.float32)
            for i, b in enumerate(blocks)
        ]
        if config.centre
        else None
    )
    module = build_module(_module_config(config, dims))
    checkpoint = FusionCheckpoint(config.strategy, fields, dims, module, means)
    inputs = [torch.from_numpy(b) for b in checkpoint.prepare(blocks, mask)]
    present = torch.from_numpy(mask)
    label_ids = _label_tensor(labels, keep) if labels is not None else None
    optimiser = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, config.epochs))
    losses: list[float] = []
    module.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(ids), generator=generator)
        total, batches = 0.0, 0
        for start in range(0, len(ids), config.batch_size):
            rows = order[start : start + config.batch_size]
            if len(rows) < 2:
                continue
            batch = [x[rows] for x in inputs]
            view_a = random_views(present[rows], config.keep_probability, generator)
            view_b = random_views(present[rows], config.keep_probability, generator)
            batch_a = corrupt_views(batch, view_a, config.corrupt_probability, generator)
            batch_b = corrupt_views(batch, view_b, config.corrupt_probability, generator)
            fused_a = module([x * view_a[:, [i]] for i, x in enumerate(batch_a)], view_a)
            fused_b = module([x * view_b[:, [i]] for i, x in enumerate(batch_b)], view_b)
            loss = contrastive_loss(
                fused_a, fused_b, config.temperature, label_ids[rows] if label_ids is not None else None
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, batches = total + loss.item(), batches + 1
        schedule.step()
        losses.append(total / max(batches, 1))
        if progress:
            progress(epoch + 1, config.epochs, losses[-1])
    module.eval()
    checkpoint.meta = {"config": asdict(config), "losses": losses, "items": len(ids), **(meta or {})}
    path = checkpoint.save(out)
    seconds = time.perf_counter() - started
    Path(f"{path}.loss.json").write_text(json.dumps({"losses": losses, "seconds": seconds}, indent=1))
    return TrainResult(path, losses, len(ids), seconds)


def _label_tensor(labels: list[Any], keep: np.ndarray) -> torch.Tensor:
    kept = [label for label, k in zip(labels, keep) if k]
    codes = {value: n for n, value in enumerate(sorted({str(v) for v in kept}))}
    return torch.tensor([codes[str(v)] for v in kept])


def select_items(
    metadata: dict[int, dict], space: VectorSpace, config: TrainConfig
) -> tuple[np.ndarray, list[Any] | None]:
    """Items matching `where` (compared as text), and their labels when a label field is given."""
    ids, labels = [], []
    for item_id, meta in sorted(metadata.items()):
        meta = meta or {}
        if any(str(meta.get(k)) != str(v) for k, v in config.where.items()):
            continue
        if config.label_field and meta.get(config.label_field) in (None, ""):
            continue  # unlabelled items cannot take part in supervised training
        ids.append(item_id)
        labels.append(meta.get(config.label_field) if config.label_field else None)
    ids_array = np.array(ids, np.int64)
    with_vectors = np.isin(ids_array, space.item_ids())
    labels = [label for label, keep in zip(labels, with_vectors) if keep]
    return ids_array[with_vectors], (labels if config.label_field else None)
