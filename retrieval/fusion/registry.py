"""One place that turns a strategy name into a strategy: a new one is a file plus one line in `STRATEGIES`.

Classes are imported when first built, so listing or validating names loads no torch. A strategy that learns
says so with `module_kind` (the torch module it trains, `retrieval/fusion/modules.py`); `learned_strategies()`
is the one list of them that training, the CLI and the UI use.
"""

from __future__ import annotations

from typing import Any

from retrieval.fusion.base import FusionStrategy
from storage.registry import Registry

STRATEGIES: Registry[type[FusionStrategy]] = Registry("fusion strategy")
STRATEGIES.register(
    "early", "retrieval.fusion.early:EarlyFusion", "one index of concatenated fields (learned with a checkpoint)"
)
STRATEGIES.register(
    "late", "retrieval.fusion.late:LateFusion", "one index per field; scores normalised and fused per query"
)
STRATEGIES.register("hybrid", "retrieval.fusion.hybrid:HybridFusion", "early groups of fields, fused late")
STRATEGIES.register("gated", "retrieval.fusion.gated:GatedFusion", "learned gates weigh each present field")
STRATEGIES.register(
    "cross_attention", "retrieval.fusion.cross_attention:CrossAttentionFusion", "learned attention across fields"
)


def list_strategies() -> dict[str, str]:
    """Strategy names and what each one is (the shape every `list_*` returns)."""
    return STRATEGIES.describe()


def strategy_class(name: str) -> type[FusionStrategy]:
    return STRATEGIES.get(name)


def learned_strategies() -> list[str]:
    """The strategies that train a torch module: what `retrieval train`, the demo and the UI offer."""
    return [name for name in STRATEGIES.names() if strategy_class(name).module_kind]


def create_strategy(name: str, **params: Any) -> FusionStrategy:
    return strategy_class(name)(**params)
