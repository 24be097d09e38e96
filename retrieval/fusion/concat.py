"""Concatenated fields in one FAISS index: early fusion's index, and hybrid fusion's early groups.

Item blocks are L2-normalised vectors (zero where absent); the query block of a field is the weighted
sum of the query vectors that share its encoder, so the inner product is Σ share × weight × cosine over
channels (`channel_shares`: several encoders joining one query modality to one item modality count as one).
"""

from __future__ import annotations

import numpy as np

from retrieval.fusion.base import channel_shares
from retrieval.profiles import Field
from retrieval.space import Channel, EncodedQuery, FieldRows, VectorSpace
from storage import VectorStore


def present_fields(space: VectorSpace, fields: list[Field] | None = None) -> list[Field]:
    """The fields (all by default) that hold vectors: an empty table reaches no item, and counted among a
    modality's channels it would give the index another share than the exact scores (`space.channels`)."""
    return [f for f in (fields if fields is not None else space.fields) if len(space.tables.get(f.key, ()))]


def concat_index(space: VectorSpace, fields: list[Field]) -> VectorStore:
    if len(fields) == 1:
        return space.field_index(fields[0])

    def build() -> tuple[np.ndarray, FieldRows]:
        """Rows made a chunk at a time as the index takes them: a whole float32 concatenation held 6 GB
        at 1M items (1,536-d) and would hold 61 GB at 10M."""
        ids = np.unique(np.concatenate([space.tables[f.key].ids for f in fields]))
        return ids, FieldRows([space.tables[f.key] for f in fields], ids)

    key = "+".join(f.key for f in fields)
    return space.index("early", key, [f.encoder for f in fields], build)


def concat_query(fields: list[Field], dims: list[int], query: EncodedQuery) -> np.ndarray:
    """The query vector of the concatenated `fields`: each field's block sums its channels' query vectors."""
    if len(fields) == 1 and not query.negatives:  # one field reached by one unweighted vector: that vector
        keys = [key for key in query.vectors if key[1] == fields[0].encoder]
        if len(keys) == 1 and query.weight(keys[0][0]) == 1.0:
            return np.asarray(query.vectors[keys[0]], np.float32)
    blocks = {f: np.zeros(dim, np.float32) for f, dim in zip(fields, dims)}
    for vectors, sign in ((query.vectors, 1.0), (query.negatives, -1.0)):
        channels = [Channel(modality, f) for modality, encoder in vectors for f in fields if f.encoder == encoder]
        for channel, share in zip(channels, channel_shares(channels)):
            weight = query.weight(channel.query_modality) if sign > 0 else query.negative_weight
            blocks[channel.field] += np.float32(sign * share * weight) * vectors[channel.vector_key]
    return np.concatenate([blocks[f] for f in fields]) if fields else np.zeros(0, np.float32)


def search_concat(
    space: VectorSpace, fields: list[Field], query: EncodedQuery, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ids and exact scores (Σ share × weight × cosine) of the best `n` items for the query over the concatenated
    fields. A compressed index (PQ codes) only finds a longer shortlist; its candidates are re-scored from
    the stored tables, field by field, and the best `n` kept."""
    dims = [space.tables[f.key].dim for f in fields]
    index = concat_index(space, fields)
    vector = concat_query(fields, dims, query)
    scores, ids = index.search(vector, index.shortlist(n))
    keep = ids[0] >= 0
    ids, scores = ids[0][keep], scores[0][keep]
    if index.exact_scores:
        return ids, scores
    exact = np.zeros(len(ids), np.float32)
    for f, block in zip(fields, np.split(vector, np.cumsum(dims)[:-1])):
        if np.any(block):  # a field the query does not reach adds nothing: no lookups
            exact += space.tables[f.key].similarities(ids, block)[0]
    best = np.argsort(-exact, kind="stable")[:n]
    return ids[best], exact[best]
