"""Score normalisation and rank fusion. Normalisation can reorder fused results, so it is always named."""

from __future__ import annotations

from typing import Literal

import numpy as np

from retrieval.errors import InvalidInputError

Normalisation = Literal["none", "minmax", "zscore", "arctan"]
# z-score first: the default (LateParams), so lists and the UI's selector start from it
NORMALISATIONS: tuple[str, ...] = ("zscore", "none", "minmax", "arctan")
# Scores are float32 sums (about 7 significant digits): two that agree to 5 decimals are a tie. The UI
# prints 3 decimals, so a "1.000 vs 1.000" the user sees is always a tie here too.
TIE_DECIMALS = 5


def tie_key(score: float) -> float:
    """The value two scores must share to be tied (see `rank_order`)."""
    return round(float(score), TIE_DECIMALS)


def tie_window(k: int) -> int:
    """How many results to fetch for a top `k` so that items tied at the k-th score are cut by id
    (`rank_order`), as every strategy cuts them, and not by an index's internal order."""
    return max(2 * k, k + 20)


def rank_order(scores: np.ndarray, ids: np.ndarray, k: int | None = None) -> np.ndarray:
    """Positions of `scores` best first, ties broken by item id: every strategy orders a tie the same way,
    so two methods that score items equally also rank them equally (no movement out of nothing)."""
    rounded = np.round(np.asarray(scores, np.float64), TIE_DECIMALS)
    order = np.lexsort((np.asarray(ids), -rounded))
    return order if k is None else order[:k]


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
    order = np.argsort(-np.round(np.where(present, scores, -np.inf), TIE_DECIMALS), kind="stable")
    out = np.zeros(len(scores), np.int64)
    out[order] = np.arange(1, len(scores) + 1)
    return np.where(present, out, 0)


def rrf(rank: np.ndarray, k: float = 60.0) -> np.ndarray:
    """Reciprocal rank fusion term 1 / (k + rank); 0 where the item was not ranked."""
    return np.where(rank > 0, 1.0 / (k + np.maximum(rank, 1)), 0.0).astype(np.float32)
