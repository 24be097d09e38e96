"""Early fusion: every field's vector concatenated into one item vector, one FAISS index.

With the identity projection (no checkpoint), item blocks are L2-normalised, a missing modality is a
zero block, and the query side carries the weights: the inner product equals the weighted sum of the
channels' cosines, and changing a weight never rebuilds the index. By default each query vector is also
put on its field's scale (`standardised`) and weighted per query by late fusion's label-free predictors
(`channel_weights`, measured over the scaled query's best candidates, which it then re-ranks): summed raw,
the encoder with the wider range of cosines decided (docs/benchmarks/fusion_cross_speaker.md).

With a checkpoint, a learned linear or MLP projection (with learned "missing" vectors) maps the
concatenation into a trained space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from retrieval.fusion.adaptive import channel_judgements, channel_weights, reweighted, screened, standardised
from retrieval.fusion.base import FusionStrategy, Scored, one_thread, to_scored, weighted_channel_scores
from retrieval.fusion.concat import concat_index, present_fields, search_concat
from retrieval.fusion.learned import LearnedFusion
from retrieval.fusion.scoring import tie_window
from retrieval.fusion.weighing import Weighing, as_set, by_vector, flat_out
from retrieval.space import EncodedQuery, VectorSpace


@dataclass
class EarlyParams:
    checkpoint: str | None = None  # a learned projection; None = identity
    mode: str = "index"
    candidates: int = 100
    blend: float = 0.0  # learned only: see LearnedParams
    centre: bool = False  # identity only: subtract each field's mean first
    screen: bool = True  # leave out query inputs that score every item about alike (see LearnedParams)
    standardise: bool = True  # identity only: query vectors on their fields' scales (False: summed raw)
    # identity only, with standardise: each channel also weighted per query by late's label-free predictors
    weighting: Literal["fixed", "adaptive"] = "adaptive"


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
        identity_only = ("centre", "standardise", "weighting")
        learned = {k: v for k, v in vars(self.params).items() if k not in identity_only}
        self.learned = LearnedEarly(**learned) if self.params.checkpoint else None

    def prepare(self, space: VectorSpace) -> None:
        if self.learned is not None:
            self.learned.prepare(space)
        elif fields := present_fields(space):  # none while every table is empty: nothing to index yet
            concat_index(space, fields)

    def explain(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, Any]:
        return self.learned.explain(space, query, ids) if self.learned is not None else {}

    def weighing(self, space: VectorSpace, query: EncodedQuery, k: int) -> Weighing:
        """Screened inputs left out; with adaptive weighting, each input's factor as `search` measures it
        (`channel_judgements` over the scaled query's best candidates)."""
        if self.learned is not None:
            return self.learned.weighing(space, query, k)
        kept = screened(space, query) if self.params.screen else query
        left_out = flat_out(query, kept)
        if not (self.params.standardise and self.params.weighting == "adaptive"):
            return as_set(query, left_out)
        if self.params.centre:
            space, kept = space.centred(), space.centre_query(kept)
        if not space.channels(kept):
            return as_set(query, left_out)
        n = max(2 * k, k + 20, self.params.candidates)
        with one_thread():
            ids, _ = search_concat(space, present_fields(space), standardised(space, kept), n)
            return by_vector(query, channel_judgements(space, kept, ids), left_out)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if self.learned is not None:
            return self.learned.search(space, query, k)
        with one_thread():
            return self._search(space, query, k)

    def _search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if self.params.screen:
            query = screened(space, query)
        if self.params.centre:
            space, query = space.centred(), space.centre_query(query)
        if not space.channels(query):
            return []
        fields = present_fields(space)
        n = tie_window(k)
        scoring = standardised(space, query) if self.params.standardise else query
        if self.params.standardise and self.params.weighting == "adaptive":
            ids, _ = search_concat(space, fields, scoring, max(n, self.params.candidates))
            held = space.held_rows(ids)  # the weights and the exact scores read the same rows
            scoring = reweighted(scoring, channel_weights(space, query, ids, held))
            total, parts, matched = weighted_channel_scores(space, scoring, ids, held)
        else:
            ids, _ = search_concat(space, fields, scoring, n)
            total, parts, matched = weighted_channel_scores(space, scoring, ids)
        return to_scored(ids[matched], total[matched], {m: v[matched] for m, v in parts.items()}, k)
