"""What the Search page says of tied scores beyond their ranks: how many items share the last score shown,
and, for a learned method, why its items tie: mostly items whose stored inputs are alike (the same text and
nothing else) and so share one fused vector; else scores that agree to 5 decimals because the fused vectors are
stored in float16 (measured in docs/ui.md, "Why learned methods tie").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from retrieval.fusion.scoring import tie_key
from retrieval.results import QueryInput, SearchResult
from ui.compare_view import tie_groups
from ui.results_cache import cached_search
from ui.state import Settings

TIE_DEPTH = 1000  # deepest list read to count a tie that runs past the shown results
SAME_VECTOR = "one fused vector for all: their stored inputs are alike, such as the same text alone"
CLOSE_SCORES = "scores alike to 5 decimals, the fused vectors being stored at float16's precision"


def tied_beyond(engine: Any, settings: Settings, query: QueryInput, results: dict[str, SearchResult]) -> dict:
    """For each method whose list is full: (how many items share its last score, whether the count is only a
    floor), from deeper lists of the same search (doubled until the tie ends, up to `TIE_DEPTH`). A last item
    tied only with items past the list is counted too: the note named only ties it could see (walkthrough #4)."""
    out = {}
    size = len(engine.catalogue.item_keys())
    for method in settings.methods:
        hits = results[method.label].hits if method.label in results else []
        if not hits or len(hits) < settings.k:  # a shorter list holds every item that could be tied
            continue
        depth, deeper, score = len(hits), hits, tie_key(hits[-1].score)
        while depth < min(size, TIE_DEPTH):
            depth = min(2 * depth, size, TIE_DEPTH)
            deeper = cached_search(engine, settings.collection, query, [method], depth)[method.label].hits
            # the last shown item's score in the deeper list: late's z-scores move with the candidates' depth
            score = next((tie_key(h.score) for h in deeper if h.item_id == hits[-1].item_id), score)
            if tie_key(deeper[-1].score) != score or len(deeper) < depth:
                break
        tied = sum(tie_key(h.score) == score for h in deeper)
        out[method.label] = (tied, tie_key(deeper[-1].score) == score and len(deeper) < size)
    return out


def tie_reasons(
    engine: Any,
    settings: Settings,
    results: dict[str, SearchResult],
    query: QueryInput | None = None,
    beyond: dict[str, tuple[int, bool]] | None = None,
) -> dict[str, dict[int, str]]:
    """For each learned method's tie groups (by first rank): why its items tie, from their fused vectors. A last
    item tied only past the list (`beyond`, from `tied_beyond`) is compared with those items, read from the
    deeper list `tied_beyond` searched first (kept in the results cache)."""
    out: dict[str, dict[int, str]] = {}
    for method in settings.methods:
        result = results.get(method.label)
        if result is None or not result.hits:
            continue
        groups = {
            first: [h.item_id for h in result.hits[first - 1 : last]] for first, last, _ in tie_groups(result.hits)
        }
        hits = result.hits
        if (
            query is not None
            and (beyond or {}).get(method.label, (0, False))[0] > 1
            and len(hits) not in {last for _, last, _ in tie_groups(hits)}
        ):
            deeper = cached_search(engine, settings.collection, query, [method], 2 * len(hits))[method.label].hits
            score = next((tie_key(h.score) for h in deeper if h.item_id == hits[-1].item_id), None)
            groups[len(hits)] = [h.item_id for h in deeper if tie_key(h.score) == score]
        if not groups:
            continue
        strategy = engine.strategy(method.strategy, **method.params)
        if not getattr(strategy, "learns", False):
            continue
        for first, ids in groups.items():
            vectors = strategy.item_vectors(engine.space, np.array(ids, np.int64))
            same = bool((vectors == vectors[0]).all())
            out.setdefault(method.label, {})[first] = SAME_VECTOR if same else CLOSE_SCORES
    return out
