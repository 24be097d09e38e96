"""What each method's score means, written once: the grid, the cards and the Item page read `score_meaning`
(issue 37: a number without a meaning; gated's and late's scores are on different scales)."""

from __future__ import annotations

from typing import Any

from retrieval.fusion import list_strategies, strategy_class
from retrieval.results import SearchResult

NORMALISED = {
    "zscore": "z-scored over the candidates (0 = their mean, 1 = one standard deviation above)",
    "minmax": "scaled to 0-1 over the candidates",
    "arctan": "squashed to -1..1 by arctan",
    "none": "as it is (a cosine, -1..1)",
}
LEARNED = (
    "cosine between the query and the item in the space {name} learned (-1..1; the inputs fused together, "
    "or with unequal weights the weighted mean of each input's)"
)
RULES = {
    "sum": "the sum over channels of weight × the channel's cosine, {normalised}",
    "mnz": "the sum over channels of weight × the channel's cosine, {normalised}, times the number of channels "
    "that found the item (CombMNZ)",
    "rrf": "the sum over channels of weight / ({rrf_k:g} + the item's rank in that channel): only ranks count (RRF)",
    "early": "the sum over modalities of weight × cosine ÷ the spread of that modality's cosines in the "
    "collection (one joined index: a z-score without its centre, with no upper bound)",
    "early raw": "the sum over modalities of weight × cosine (one joined index)",
}


def learns(strategy: str) -> bool:
    """Whether the strategy needs a trained checkpoint (False for a name no registry knows, e.g. a preset's)."""
    return strategy in list_strategies() and strategy_class(strategy).learns


def result_meaning(result: SearchResult) -> str:
    """`score_meaning` of a method's result, with the parameters it ran with."""
    return score_meaning(result.strategy, result.params)


def score_meaning(strategy: str, params: dict[str, Any]) -> str:
    """One sentence: what a score of `strategy` run with `params` (a result's own) is."""
    if learns(strategy) or params.get("checkpoint"):
        return LEARNED.format(name=strategy)
    if strategy in ("late", "hybrid"):
        fusion = params.get("fusion", "sum")
        normalised = NORMALISED.get(params.get("normalisation", "zscore"), "normalised")
        rule = RULES.get(fusion, RULES["sum"]).format(normalised=normalised, rrf_k=float(params.get("rrf_k", 60)))
        return rule + ("; an early group of fields counts as one channel" if strategy == "hybrid" else "")
    if strategy == "early":
        return RULES["early" if params.get("standardise", True) else "early raw"]
    return "the strategy's own similarity of query and item"
