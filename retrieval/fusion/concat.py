"""Concatenated fields in one FAISS index: early fusion's index, and hybrid fusion's early groups.

Item blocks are L2-normalised vectors (zero where absent); the query block of a field is the weighted
sum of the query vectors that share its encoder, so the inner product is Σ weight × cosine over channels.
"""

from __future__ import annotations

import numpy as np

from retrieval.linalg import ROWS_PER_CHUNK
from retrieval.profiles import Field
from retrieval.space import EncodedQuery, VectorSpace
from storage import VectorStore


def present_fields(space: VectorSpace, fields: list[Field] | None = None) -> list[Field]:
    return [f for f in (fields if fields is not None else space.fields) if f.key in space.tables]


def concat_index(space: VectorSpace, fields: list[Field]) -> VectorStore:
    if len(fields) == 1:
        return space.field_index(fields[0])

    def build() -> tuple[np.ndarray, np.ndarray]:
        """Filled block by block into one array: at 1M items a lookup per field plus a concatenation held
        three float32 copies at once (21 GB at 1,536-d); this holds one."""
        ids = np.unique(np.concatenate([space.tables[f.key].ids for f in fields]))
        dims = [space.tables[f.key].dim for f in fields]
        out = np.empty((len(ids), sum(dims)), np.float32)
        for f, start, dim in zip(fields, np.cumsum([0, *dims[:-1]]), dims):
            for row in range(0, len(ids), ROWS_PER_CHUNK):
                rows = ids[row : row + ROWS_PER_CHUNK]
                out[row : row + ROWS_PER_CHUNK, start : start + dim] = space.tables[f.key].lookup(rows)[0]
        return ids, out

    key = "+".join(f.key for f in fields)
    return space.index("early", key, [f.encoder for f in fields], build)


def concat_query(fields: list[Field], dims: list[int], query: EncodedQuery) -> np.ndarray:
    blocks = []
    for f, dim in zip(fields, dims):
        block = np.zeros(dim, np.float32)
        for (modality, encoder), vector in query.vectors.items():
            if encoder == f.encoder:
                block += query.weight(modality) * vector
        for (_, encoder), vector in query.negatives.items():
            if encoder == f.encoder:
                block -= query.negative_weight * vector
        blocks.append(block)
    return np.concatenate(blocks)


def search_concat(
    space: VectorSpace, fields: list[Field], query: EncodedQuery, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and scores (Σ weight × cosine) of the best `n` items for the query over the concatenated fields."""
    dims = [space.tables[f.key].dim for f in fields]
    scores, ids = concat_index(space, fields).search(concat_query(fields, dims, query), n)
    keep = ids[0] >= 0
    return ids[0][keep], scores[0][keep]
