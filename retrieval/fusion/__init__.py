"""Fusion strategies: building blocks that both indexing and search use."""

from retrieval.fusion.base import FusionStrategy, Scored
from retrieval.fusion.registry import create_strategy, learned_strategies, list_strategies, strategy_class

__all__ = [
    "FusionStrategy",
    "Scored",
    "create_strategy",
    "learned_strategies",
    "list_strategies",
    "strategy_class",
]
