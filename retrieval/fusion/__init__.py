"""Fusion strategies: building blocks that both indexing and search use."""

from retrieval.fusion.base import FusionStrategy, Scored
from retrieval.fusion.registry import create_strategy, list_strategies

__all__ = ["FusionStrategy", "Scored", "create_strategy", "list_strategies"]
