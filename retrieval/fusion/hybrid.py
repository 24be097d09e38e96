"""Hybrid fusion: groups of item modalities fused early, the groups fused late.

By default image and audio are one early group and text is its own: media similarity is computed in one
concatenated index, text relevance separately, and the two are fused with late fusion's normalisation and
RRF. One group of everything is early fusion; one group per channel is late fusion.

Inside a group the query's vectors are put on their fields' scales (`standardised`) and, with adaptive
weighting, weighted by the same label-free predictors late fusion uses (`channel_weights`); a group's weight
among the units is the sum of its channels' (each times its share, `channel_shares`). Summed raw, the
encoder with the wider range of cosines decided a group: on unseen speakers an image+audio+text query lost
0.16 P@10 to its best single modality (docs/benchmarks/fusion_cross_speaker.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrieval.fusion.adaptive import channel_judgements, channel_weights, reweighted, standardised
from retrieval.fusion.base import channel_shares
from retrieval.fusion.late import LateParams, UnitFusion, UnitList, query_weight, unit_candidates, unweighted
from retrieval.fusion.weighing import Weighing, by_vector
from retrieval.space import Channel, EncodedQuery, HeldRows, VectorSpace


@dataclass
class HybridParams(LateParams):
    groups: list[list[str]] = field(default_factory=lambda: [["image", "audio"], ["text"]])
    standardise: bool = True  # a group's query vectors on their fields' scales (False: summed raw)


class HybridFusion(UnitFusion):
    name = "hybrid"
    Params = HybridParams

    def mixed_query(self, space: VectorSpace, query: EncodedQuery, unit: list[Channel], k: int) -> EncodedQuery:
        """A group's query vectors on their fields' scales; with adaptive weighting, each also weighted by
        late's label-free predictors, measured over the group's candidates for the scaled query."""
        if not self.params.standardise:
            return query
        scaled = standardised(space, query)
        if self.params.weighting != "adaptive":
            return scaled
        found = unit_candidates(space, scaled, unit, max(k, self.params.candidates))
        return reweighted(scaled, channel_weights(space, query, found.ids))

    def searched(
        self, space: VectorSpace, query: EncodedQuery, units: list[list[Channel]], k: int
    ) -> tuple[list[EncodedQuery], list[UnitList], np.ndarray, HeldRows]:
        """With standardised, adaptive groups, a group is searched once, with its scaled query: its inputs are
        weighed over that list (`mixed_query`'s weights, from the union's rows) and the weighted query scores
        every candidate of the union exactly (it was searched a second time with the weighted query)."""
        if not (self.params.standardise and self.params.weighting == "adaptive"):
            return super().searched(space, query, units, k)
        mixed = [len({c.query_modality for c in unit}) > 1 for unit in units]
        scaled = standardised(space, query)
        lists, ids = self._lists(space, [scaled if m else unweighted(query) for m in mixed], units, k)
        held = space.held_rows(ids)
        for key in dict.fromkeys(c.field.key for unit in units for c in unit):
            held.rows(key)  # the union's rows, gathered once: each group's list reads its share of them
        queries = []
        for is_mixed, listed in zip(mixed, lists):
            if not is_mixed:
                queries.append(unweighted(query))
                continue
            listed.exact = False  # its scores are the scaled query's: re-scored with the weighted one
            queries.append(reweighted(scaled, channel_weights(space, query, listed.ids, held, listed.rows)))
        return queries, lists, ids, held

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        channels = space.channels(query)
        grouped = [[c for c in channels if c.field.modality in group] for group in self.params.groups]
        ungrouped = [[c] for c in channels if not any(c.field.modality in g for g in self.params.groups)]
        return [unit for unit in grouped if unit] + ungrouped

    def unit_weights(
        self,
        space: VectorSpace,
        query: EncodedQuery,
        queries: list[EncodedQuery],
        units: list[list[Channel]],
        raws: list[tuple[np.ndarray, np.ndarray]],
        ids: np.ndarray,
        held: HeldRows | None = None,
    ) -> np.ndarray:
        """With standardised, adaptive groups: a unit's weight is the sum of its channels' adaptive weights
        times their shares (`channel_shares`), each channel judged on its own over the candidates, as late
        judges and shares its single-channel units: a text group reached through three encoders weighs as
        one channel, not three. On the speaker rotation that tunes defaults (rotation 3,
        image+audio+text), fused minus best single: -0.018 with the sum, -0.050 with the mean, which lets a
        weak recording dilute its image's weight."""
        if self.params.weighting != "adaptive" or not self.params.standardise or len(units) < 2:
            return super().unit_weights(space, query, queries, units, raws, ids, held)
        fixed = np.array([query_weight(query, unit) for unit in units], np.float64)
        per_channel = channel_weights(space, query, ids, held)
        summed = np.array(
            [sum(s * per_channel.get(c.vector_key, 1.0) for c, s in zip(unit, channel_shares(unit))) for unit in units],
            np.float64,
        )
        return fixed * summed * len(summed) / summed.sum() if summed.sum() > 0 else fixed

    def input_weights(
        self,
        weighing: Weighing,
        space: VectorSpace,
        query: EncodedQuery,
        queries: list[EncodedQuery],
        units: list[list[Channel]],
        raws: list[tuple[np.ndarray, np.ndarray]],
        ids: np.ndarray,
        held: HeldRows | None = None,
    ) -> None:
        """With standardised groups: each input's factor over all the candidates (`channel_judgements`, what
        `unit_weights` sums per group; inside a group the same predictors weigh it over the group's own
        candidates)."""
        if not self.params.standardise:
            return super().input_weights(weighing, space, query, queries, units, raws, ids, held)
        judged = by_vector(
            query, channel_judgements(space, query, ids, held), {i.modality for i in weighing.inputs if i.screened}
        )
        weighing.inputs = [
            next(j for j in judged.inputs if j.modality == one.modality) if not one.screened else one
            for one in weighing.inputs
        ]
