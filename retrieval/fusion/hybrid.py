"""Hybrid fusion: groups of item modalities fused early, the groups fused late.

By default image and audio are one early group and text is its own: media similarity is computed in one
concatenated index, text relevance separately, and the two are fused with late fusion's normalisation and
RRF. One group of everything is early fusion; one group per channel is late fusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from retrieval.fusion.concat import concat_index, present_fields
from retrieval.fusion.late import LateParams, UnitFusion
from retrieval.space import Channel, EncodedQuery, VectorSpace


@dataclass
class HybridParams(LateParams):
    groups: list[list[str]] = field(default_factory=lambda: [["image", "audio"], ["text"]])


class HybridFusion(UnitFusion):
    name = "hybrid"
    Params = HybridParams

    def prepare(self, space: VectorSpace) -> None:
        for group in self.params.groups:
            fields = [f for f in present_fields(space) if f.modality in group]
            if fields:
                concat_index(space, fields)

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        channels = space.channels(query)
        grouped = [[c for c in channels if c.field.modality in group] for group in self.params.groups]
        ungrouped = [[c] for c in channels if not any(c.field.modality in g for g in self.params.groups)]
        return [unit for unit in grouped if unit] + ungrouped
