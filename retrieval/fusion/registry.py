"""One place that turns a strategy name into a strategy. A new one is a file plus one line here."""

from __future__ import annotations

from typing import Any

from retrieval.errors import InvalidInputError
from retrieval.fusion.base import FusionStrategy
from retrieval.fusion.cross_attention import CrossAttentionFusion
from retrieval.fusion.early import EarlyFusion
from retrieval.fusion.gated import GatedFusion
from retrieval.fusion.hybrid import HybridFusion
from retrieval.fusion.late import LateFusion

STRATEGIES: dict[str, type[FusionStrategy]] = {
    "early": EarlyFusion,
    "late": LateFusion,
    "hybrid": HybridFusion,
    "gated": GatedFusion,
    "cross_attention": CrossAttentionFusion,
}


def list_strategies() -> dict[str, type[FusionStrategy]]:
    return dict(STRATEGIES)


def create_strategy(name: str, **params: Any) -> FusionStrategy:
    if name not in STRATEGIES:
        raise InvalidInputError(f"unknown fusion strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**params)
