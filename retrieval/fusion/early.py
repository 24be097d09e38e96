"""Early fusion: every field's vector concatenated into one item vector, one FAISS index.

Item blocks are L2-normalised and a missing modality is a zero block; the query side carries the
weights, so the inner product equals the weighted sum of the channels' cosines and changing a weight
never rebuilds the index.
"""

from __future__ import annotations

import numpy as np

from retrieval.fusion.base import FusionStrategy, Scored, to_scored, weighted_channel_scores
from retrieval.space import EncodedQuery, VectorSpace


class EarlyFusion(FusionStrategy):
    name = "early"
    fuses_at = "index"
    missing = "a missing item modality is a zero block: it adds nothing to the score"

    def _fields(self, space: VectorSpace):
        return [f for f in space.fields if f.key in space.tables]

    def _build(self, space: VectorSpace) -> tuple[np.ndarray, np.ndarray]:
        ids = space.item_ids()
        blocks = [space.tables[f.key].lookup(ids)[0] for f in self._fields(space)]
        return ids, np.concatenate(blocks, axis=1)

    def _index(self, space: VectorSpace):
        fields = self._fields(space)
        key = "+".join(f.key for f in fields)
        return space.index(self.name, key, [f.encoder for f in fields], lambda: self._build(space))

    def prepare(self, space: VectorSpace) -> None:
        if space.tables:
            self._index(space)

    def query_vector(self, space: VectorSpace, query: EncodedQuery) -> np.ndarray:
        blocks = []
        for f in self._fields(space):
            block = np.zeros(space.tables[f.key].dim, np.float32)
            for (modality, encoder), vector in query.vectors.items():
                if encoder == f.encoder:
                    block += query.weight(modality) * vector
            blocks.append(block)
        return np.concatenate(blocks)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if not space.channels(query):
            return []
        _, ids = self._index(space).search(self.query_vector(space, query), k)
        ids = ids[0][ids[0] >= 0]
        total, parts, matched = weighted_channel_scores(space, query, ids)
        return to_scored(ids[matched], total[matched], {m: v[matched] for m, v in parts.items()}, k)
