"""Early fusion: every field's vector concatenated into one item vector, one FAISS index.

With the identity projection (no checkpoint), item blocks are L2-normalised, a missing modality is a
zero block, and the query side carries the weights: the inner product equals the weighted sum of the
channels' cosines, and changing a weight never rebuilds the index. With a checkpoint, a learned linear
or MLP projection (with learned "missing" vectors) maps the concatenation into a trained space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from retrieval.fusion.adaptive import screened
from retrieval.fusion.base import FusionStrategy, Scored, to_scored, weighted_channel_scores
from retrieval.fusion.concat import concat_index, present_fields, search_concat
from retrieval.fusion.learned import LearnedFusion
from retrieval.space import EncodedQuery, VectorSpace


@dataclass
class EarlyParams:
    checkpoint: str | None = None  # a learned projection; None = identity
    mode: str = "index"
    candidates: int = 100
    blend: float = 0.0  # learned only: see LearnedParams
    centre: bool = False  # identity only: subtract each field's mean first
    screen: bool = True  # leave out query inputs that score every item about alike (see LearnedParams)


class LearnedEarly(LearnedFusion):
    name = "early"
    module_kind = "early"


class EarlyFusion(FusionStrategy):
    name = "early"
    fuses_at = "index"
    trainable = True
    module_kind = "early"
    missing = "a missing item modality is a zero block (identity) or a learned 'missing' vector (checkpoint)"
    Params = EarlyParams

    def __init__(self, **params) -> None:  # noqa: ANN003
        super().__init__(**params)
        learned = {k: v for k, v in vars(self.params).items() if k != "centre"}
        self.learned = LearnedEarly(**learned) if self.params.checkpoint else None

    def prepare(self, space: VectorSpace) -> None:
        if self.learned is not None:
            self.learned.prepare(space)
        elif space.tables:
            concat_index(space, present_fields(space))

    def explain(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, Any]:
        return self.learned.explain(space, query, ids) if self.learned is not None else {}

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if self.learned is not None:
            return self.learned.search(space, query, k)
        if self.params.screen:
            query = screened(space, query)
        if self.params.centre:
            space, query = space.centred(), space.centre_query(query)
        if not space.channels(query):
            return []
        # more than k from the index: items tied at the k-th score are then cut by id (`rank_order`), as
        # every strategy cuts them, not by the index's internal order
        ids, _ = search_concat(space, present_fields(space), query, max(2 * k, k + 20))
        total, parts, matched = weighted_channel_scores(space, query, ids)
        return to_scored(ids[matched], total[matched], {m: v[matched] for m, v in parts.items()}, k)
