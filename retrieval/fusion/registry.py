"""One place that turns a strategy name into a strategy: a new one is a file plus one line in `STRATEGIES`.

Classes are imported when first built, so listing or validating names loads no torch. A strategy that learns
says so with `module_kind` (the torch module it trains, `retrieval/fusion/modules.py`); `learned_strategies()`
is the one list of them that training, the CLI and the UI use.

Learned early was `early` given a checkpoint before 0.19.0; `current_method` reads what databases saved then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from retrieval.fusion.base import FusionStrategy
from storage.registry import Registry

STRATEGIES: Registry[type[FusionStrategy]] = Registry("fusion strategy")
STRATEGIES.register("early", "retrieval.fusion.early:EarlyFusion", "one index of concatenated fields")
STRATEGIES.register(
    "late", "retrieval.fusion.late:LateFusion", "one index per field; scores normalised and fused per query"
)
STRATEGIES.register("hybrid", "retrieval.fusion.hybrid:HybridFusion", "early groups of fields, fused late")
STRATEGIES.register("gated", "retrieval.fusion.gated:GatedFusion", "learned gates weigh each present field")
STRATEGIES.register(
    "cross_attention", "retrieval.fusion.cross_attention:CrossAttentionFusion", "learned attention across fields"
)
STRATEGIES.register(
    "learned_early",
    "retrieval.fusion.learned_early:LearnedEarlyFusion",
    "a learned projection of the concatenated fields, one index",
)
# A former name of a strategy: checkpoints registered, and presets with a checkpoint saved, under it before
# 0.19.0 are read as the strategy's (never rewritten)
RENAMED_WITH_CHECKPOINT = {"early": "learned_early"}


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


def checkpoint_strategy(recorded: str) -> str:
    """The strategy a checkpoint registered for `recorded` answers for today (`RENAMED_WITH_CHECKPOINT`)."""
    return RENAMED_WITH_CHECKPOINT.get(recorded, recorded)


def recorded_names(strategy: str) -> list[str]:
    """The names `strategy`'s checkpoints are registered under: its own and former ones (none for `early`,
    whose records are learned early's)."""
    own = [] if strategy in RENAMED_WITH_CHECKPOINT else [strategy]
    return own + [old for old, new in RENAMED_WITH_CHECKPOINT.items() if new == strategy]


def current_method(strategy: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A saved strategy and its parameters, as today's: `early` with a checkpoint is `learned_early`, without
    the identity's parameters, which it ignored then; with `checkpoint=None` it was, and is, the identity."""
    if strategy not in RENAMED_WITH_CHECKPOINT or "checkpoint" not in params:
        return strategy, dict(params)
    if not params["checkpoint"]:
        return strategy, {k: v for k, v in params.items() if k != "checkpoint"}
    name = RENAMED_WITH_CHECKPOINT[strategy]
    takes = {f.name for f in fields(strategy_class(name).Params)}
    return name, {k: v for k, v in params.items() if k in takes}
