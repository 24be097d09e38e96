"""Score normalisation and rank fusion. Normalisation can reorder fused results, so it is always named."""

from __future__ import annotations

from typing import Literal

import numpy as np

from retrieval.errors import InvalidInputError

Normalisation = Literal["none", "minmax", "zscore", "arctan"]
NORMALISATIONS: tuple[str, ...] = ("none", "minmax", "zscore", "arctan")


def normalise(scores: np.ndarray, present: np.ndarray, method: Normalisation) -> np.ndarray:
    """Normalise the present scores of one channel over the candidate set; absent ones become 0."""
    out = np.zeros_like(scores, dtype=np.float32)
    values = scores[present].astype(np.float64)
    if values.size == 0:
        return out
    if method == "none":
        result = values
    elif method == "minmax":
        span = values.max() - values.min()
        result = (values - values.min()) / span if span > 0 else np.ones_like(values)
    elif method == "zscore":
        std = values.std()
        result = (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    elif method == "arctan":
        result = np.arctan(values) * (2 / np.pi)
    else:
        raise InvalidInputError(f"unknown normalisation {method!r}; choose from {', '.join(NORMALISATIONS)}")
    out[present] = result
    return out


def ranks(scores: np.ndarray, present: np.ndarray) -> np.ndarray:
    """1-based rank of each present score (best = 1); absent items get rank 0."""
    order = np.argsort(-np.where(present, scores, -np.inf), kind="stable")
    out = np.zeros(len(scores), np.int64)
    out[order] = np.arange(1, len(scores) + 1)
    return np.where(present, out, 0)


def rrf(rank: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Reciprocal rank fusion term 1 / (k + rank); 0 where the item was not ranked."""
    return np.where(rank > 0, 1.0 / (k + np.maximum(rank, 1)), 0.0).astype(np.float32)
