"""Early fusion: every field's vector concatenated into one item vector, one FAISS index.

Item blocks are L2-normalised, a missing modality is a zero block, and the query side carries the weights:
the inner product equals the weighted sum of the channels' cosines, and changing a weight never rebuilds the
index. By default each query vector is also put on its field's scale (`standardised`) and weighted per query
by late fusion's label-free predictors (`channel_weights`, measured over the scaled query's best candidates,
which it then re-ranks): summed raw, the encoder with the wider range of cosines decided
(docs/benchmarks/fusion_cross_speaker.md).

A trained projection of the concatenation is a strategy of its own, `learned_early` (learned_early.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from retrieval.errors import InvalidInputError
from retrieval.fusion.adaptive import channel_judgements, channel_weights, reweighted, screened, standardised
from retrieval.fusion.base import FusionStrategy, Scored, one_thread, to_scored, weighted_channel_scores
from retrieval.fusion.concat import concat_index, present_fields, search_concat
from retrieval.fusion.scoring import tie_window
from retrieval.fusion.weighing import Weighing, as_set, by_vector, flat_out
from retrieval.space import EncodedQuery, VectorSpace


@dataclass
class EarlyParams:
    candidates: int = 100  # with adaptive weighting: the best items the weights are measured over
    centre: bool = False  # subtract each field's mean first
    screen: bool = True  # leave out query inputs that score every item about alike (see LearnedParams)
    standardise: bool = True  # query vectors on their fields' scales (False: summed raw)
    # with standardise: each channel also weighted per query by late's label-free predictors
    weighting: Literal["fixed", "adaptive"] = "adaptive"


class EarlyFusion(FusionStrategy):
    name = "early"
    fuses_at = "index"
    missing = "a missing item modality is a zero block"
    Params = EarlyParams

    def __init__(self, **params: Any) -> None:
        if "checkpoint" in params:  # learned early was `early` given a checkpoint before 0.19.0
            raise InvalidInputError(
                "early fusion is the identity concatenation and takes no checkpoint; a trained projection is the "
                "strategy 'learned_early' (strategy='learned_early', checkpoint=FILE)"
            )
        super().__init__(**params)

    def prepare(self, space: VectorSpace) -> None:
        if fields := present_fields(space):  # none while every table is empty: nothing to index yet
            concat_index(space, fields)

    def weighing(self, space: VectorSpace, query: EncodedQuery, k: int) -> Weighing:
        """Screened inputs left out; with adaptive weighting, each input's factor as `search` measures it
        (`channel_judgements` over the scaled query's best candidates)."""
        kept = screened(space, query) if self.params.screen else query
        left_out = flat_out(query, kept)
        if not (self.params.standardise and self.params.weighting == "adaptive"):
            return as_set(query, left_out)
        if self.params.centre:
            space, kept = space.centred(), space.centre_query(kept)
        if not space.channels(kept):
            return as_set(query, left_out)
        n = max(tie_window(k), self.params.candidates)
        with one_thread():
            ids, _ = search_concat(space, present_fields(space), standardised(space, kept), n)
            return by_vector(query, channel_judgements(space, kept, ids), left_out)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
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
