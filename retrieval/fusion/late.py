"""Late fusion, and the machinery it shares with hybrid fusion: search units, then fuse their scores.

A *unit* is a set of channels searched together: late fusion makes one unit per channel (a query modality
and an item field that share an encoder), hybrid fusion one unit per group of item modalities. Each unit
finds candidates in its own index; every candidate is then scored *exactly* in every unit from the stored
vectors, so an item found by one unit is not penalised for having been just outside another's list.
Unit scores are normalised (none, min-max, z-score, arctan) and fused (weighted sum, CombMNZ, or RRF).
An item missing a modality simply has no score in the units that need it. With `rescore=False` each unit
keeps only the scores of its own list (classic CombSUM/RRF over top lists, as Milvus's rankers do): no
vector lookups, so it costs little more than the unit searches, but an item just outside a list gets
nothing from that unit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from retrieval.fusion.base import FusionStrategy, Scored, to_scored
from retrieval.fusion.concat import concat_index, present_fields, search_concat
from retrieval.fusion.scoring import Normalisation, normalise, ranks, rrf
from retrieval.space import Channel, EncodedQuery, VectorSpace


@dataclass
class LateParams:
    normalisation: Normalisation = "none"
    fusion: Literal["sum", "mnz", "rrf"] = "sum"
    rrf_k: float = 60.0
    candidates: int = 100
    centre: bool = False  # subtract each field's mean first (the modality gap of contrastive encoders)
    rescore: bool = True  # score every candidate exactly in every unit (False: each unit's own list only)


@dataclass
class UnitList:
    """One unit's own search result, and where each of its ids sits in the union of all units' lists."""

    ids: np.ndarray
    scores: np.ndarray  # Σ weight × cosine over the unit's channels, as its index scored them
    exact: bool  # the index keeps whole vectors, so these scores equal an exact re-scoring
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def unit_candidates(space: VectorSpace, query: EncodedQuery, unit: list[Channel], n: int) -> UnitList:
    """The unit's own best `n`."""
    fields = list(dict.fromkeys(c.field for c in unit))
    modalities = {c.query_modality for c in unit}
    sub = EncodedQuery({k: v for k, v in query.vectors.items() if k[0] in modalities}, query.weights)
    ids, scores = search_concat(space, fields, sub, n)
    return UnitList(ids, scores, concat_index(space, fields).exact_scores)


def union(lists: list[UnitList]) -> np.ndarray:
    """The sorted union of the lists' ids; each list learns the row of each of its ids in it."""
    if not lists:
        return np.zeros(0, np.int64)
    ids, inverse = np.unique(np.concatenate([found.ids for found in lists]), return_inverse=True)
    for found, rows in zip(lists, np.split(inverse, np.cumsum([len(found.ids) for found in lists])[:-1])):
        found.rows = rows
    return ids


def listed_scores(unit: list[Channel], listed: UnitList, n: int
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """`unit_scores` from the unit's own list only: ids outside it are absent; the score is shared
    equally among the unit's query modalities."""
    total, present = np.zeros(n, np.float32), np.zeros(n, bool)
    total[listed.rows], present[listed.rows] = listed.scores, True
    modalities = sorted({c.query_modality for c in unit})
    return total, {m: total / len(modalities) for m in modalities}, present


def unit_scores(space: VectorSpace, query: EncodedQuery, unit: list[Channel], ids: np.ndarray,
                listed: UnitList | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Σ weight × cosine over the unit's channels, each query modality's part, and which ids it reaches.

    `listed`: the unit's own list. When the unit is one channel and its index scored exactly, its own
    ids keep their listed score and only the others are looked up (a third of the lookups, or more,
    saved over three units).
    """
    if listed is not None and listed.exact and len(unit) == 1:
        total, _, reached = listed_scores(unit, listed, len(ids))
        rest = np.flatnonzero(~reached)
        scores, present = space.channel_scores(query, unit[0], ids[rest])
        total[rest] = scores * query.weight(unit[0].query_modality)
        reached[rest] = present
        return total, {unit[0].query_modality: total}, reached
    total = np.zeros(len(ids), np.float32)
    parts: dict[str, np.ndarray] = {}
    reached = np.zeros(len(ids), bool)
    for channel in unit:
        scores, present = space.channel_scores(query, channel, ids)
        value = np.where(present, scores, 0.0) * query.weight(channel.query_modality)
        parts[channel.query_modality] = parts.get(channel.query_modality, 0) + value
        total += value
        reached |= present
    return total, parts, reached


class UnitFusion(FusionStrategy):
    """Score and rank fusion over units; subclasses say what a unit is."""

    fuses_at = "query"
    missing = "a missing modality contributes nothing; the item is ranked by the units it has"
    Params = LateParams

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        raise NotImplementedError

    def candidates(self, space: VectorSpace, query: EncodedQuery, k: int) -> np.ndarray:
        return self._lists(space, query, k)[1]

    def _lists(self, space: VectorSpace, query: EncodedQuery, k: int) -> tuple[list[UnitList], np.ndarray]:
        """Each unit's own list, and the union of their ids."""
        found = [unit_candidates(space, query, unit, max(k, self.params.candidates))
                 for unit in self.units(space, query)]
        return found, union(found)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if self.params.centre:
            space, query = space.centred(), space.centre_query(query)
        lists, ids = self._lists(space, query, k)
        total = np.zeros(len(ids), np.float32)
        hits = np.zeros(len(ids), np.int64)
        parts: dict[str, np.ndarray] = {}
        p = self.params
        for unit, listed in zip(self.units(space, query), lists):
            if p.rescore:
                raw, raw_parts, present = unit_scores(space, query, unit, ids, listed)
            else:
                raw, raw_parts, present = listed_scores(unit, listed, len(ids))
            value = rrf(ranks(raw, present), p.rrf_k) if p.fusion == "rrf" else normalise(raw, present, p.normalisation)
            raw_sum = sum(raw_parts.values())
            for modality, part in raw_parts.items():  # split the unit's value in proportion to its raw parts
                share = np.divide(part, raw_sum, out=np.full(len(ids), 1 / len(raw_parts)), where=raw_sum != 0)
                parts[modality] = parts.get(modality, 0) + value * share
            total += value
            hits += present
        total, parts = self._subtract_negatives(space, query, ids, total, parts)
        if p.fusion == "mnz":
            total, parts = total * hits, {m: v * hits for m, v in parts.items()}
        keep = hits > 0
        return to_scored(ids[keep], total[keep], {m: v[keep] for m, v in parts.items()}, k)

    def _subtract_negatives(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray, total: np.ndarray,
                            parts: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Negative terms lower the fused score by their weighted similarity (normalised like the rest)."""
        for channel in space.channels(query, negative=True):
            scores, present = space.channel_scores(query, channel, ids, negative=True)
            value = -query.negative_weight * normalise(scores, present, self.params.normalisation)
            parts["-" + channel.query_modality] = parts.get("-" + channel.query_modality, 0) + value
            total = total + value
        return total, parts


class LateFusion(UnitFusion):
    name = "late"

    def prepare(self, space: VectorSpace) -> None:
        for f in present_fields(space):
            space.field_index(f)

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        return [[channel] for channel in space.channels(query)]
