"""Late fusion: one search per channel, then score or rank fusion over the union of candidates.

Candidates come from each channel's FAISS index; every candidate is then scored *exactly* in every
channel from the stored vectors, so an item found by one channel is not penalised for having been
just outside another channel's top list. An item missing a modality simply has no score there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from retrieval.fusion.base import FusionStrategy, Scored, to_scored
from retrieval.fusion.scoring import Normalisation, normalise, ranks, rrf
from retrieval.space import EncodedQuery, VectorSpace


@dataclass
class LateParams:
    normalisation: Normalisation = "none"
    fusion: Literal["sum", "mnz", "rrf"] = "sum"
    rrf_k: float = 60.0
    candidates: int = 100


class LateFusion(FusionStrategy):
    name = "late"
    fuses_at = "query"
    missing = "a missing modality contributes nothing; the item is ranked by the channels it has"
    Params = LateParams

    def prepare(self, space: VectorSpace) -> None:
        for f in space.fields:
            if f.key in space.tables and len(space.tables[f.key]):
                space.field_index(f)

    def candidates(self, space: VectorSpace, query: EncodedQuery, k: int) -> np.ndarray:
        found = []
        for channel in space.channels(query):
            index = space.field_index(channel.field)
            _, ids = index.search(query.vectors[(channel.query_modality, channel.field.encoder)],
                                  max(k, self.params.candidates))
            found.append(ids[0][ids[0] >= 0])
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        ids = self.candidates(space, query, k)
        total = np.zeros(len(ids), np.float32)
        hits = np.zeros(len(ids), np.int64)
        parts: dict[str, np.ndarray] = {}
        p = self.params
        for channel in space.channels(query):
            scores, present = space.channel_scores(query, channel, ids)
            if p.fusion == "rrf":
                value = rrf(ranks(scores, present), p.rrf_k)
            else:
                value = normalise(scores, present, p.normalisation)
            value = value * query.weight(channel.query_modality)
            parts[channel.query_modality] = parts.get(channel.query_modality, 0) + value
            total += value
            hits += present
        if p.fusion == "mnz":
            total = total * hits
            parts = {m: v * hits for m, v in parts.items()}
        keep = hits > 0
        return to_scored(ids[keep], total[keep], {m: v[keep] for m, v in parts.items()}, k)
