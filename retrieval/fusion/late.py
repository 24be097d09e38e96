"""Late fusion, and the machinery it shares with hybrid fusion: search units, then fuse their scores.

A *unit* is a set of channels searched together: late fusion makes one unit per channel (a query modality
and an item field that share an encoder), hybrid fusion one unit per group of item modalities. Each unit
finds candidates in its own index; every candidate is then scored *exactly* in every unit from the stored
vectors, so an item found by one unit is not penalised for having been just outside another's list.
Unit scores are normalised (none, min-max, z-score, arctan), weighted, and fused (weighted sum, CombMNZ,
or RRF). A query modality's weight multiplies its unit's *normalised* score (weighted CombSUM / weighted
RRF): applied to the raw cosines, z-score, min-max and ranks cancelled it. With `weighting="adaptive"`
each unit's weight is also scaled per query by label-free performance predictors (`adaptive.py`), so a
noise clip or a blank image hardly moves the ranking.
An item missing a modality simply has no score in the units that need it. With `rescore=False` each unit
keeps only the scores of its own list (classic CombSUM/RRF over top lists, as Milvus's rankers do): no
vector lookups, so it costs little more than the unit searches, but an item just outside a list gets
nothing from that unit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from itertools import combinations
from typing import Any, Literal

import numpy as np

from retrieval.fusion.adaptive import adaptive_weights, judge_units, judged_weights, mean_judgement, screened
from retrieval.fusion.base import FusionStrategy, Scored, channel_parts, channel_shares, one_thread
from retrieval.fusion.concat import concat_index, present_fields, search_concat
from retrieval.fusion.scoring import Normalisation, normalise, rank_order, ranks, rrf
from retrieval.fusion.weighing import Weighing, as_set, flat_out
from retrieval.profiles import Field
from retrieval.space import Channel, EncodedQuery, HeldRows, VectorSpace


@dataclass
class LateParams:
    # Defaults by evidence (docs/benchmarks/fusion_cross_speaker.md): on unseen speakers raw cosines let
    # the weaker encoder's wider score range decide (worst fused minus best single -0.152), and z-score
    # with fixed weights let a noise clip cost 0.39 P@10; z-score with adaptive weights keeps every noise
    # cost under 0.002 at a worst fused minus best single of -0.051 (fixed z-score: -0.043).
    normalisation: Normalisation = "zscore"
    fusion: Literal["sum", "mnz", "rrf"] = "sum"
    rrf_k: float = 60.0
    candidates: int = 100  # a unit's list, at least: a floor, longer in a large collection (ITEMS_PER_CANDIDATE)
    centre: bool = False  # subtract each field's mean first (the modality gap of contrastive encoders)
    rescore: bool = True  # score every candidate exactly in every unit (False: each unit's own list only)
    # "adaptive": per-query unit weights from top-score clarity and coherence (no labels; adaptive.py)
    weighting: Literal["fixed", "adaptive"] = "adaptive"
    screen: bool = True  # leave out query inputs that score every item about alike, as every strategy does


@dataclass
class UnitList:
    """One unit's own search result, and where each of its ids sits in the union of all units' lists."""

    ids: np.ndarray
    scores: np.ndarray  # Σ share × weight × cosine over the unit's channels, as its index scored them
    exact: bool  # the index keeps whole vectors, so these scores equal an exact re-scoring
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Candidates:
    """One query's units and their candidates: the query as searched (screened, centred), each unit's query,
    the union of the units' lists, its rows (`held`) and each unit's raw scores over it."""

    space: VectorSpace
    query: EncodedQuery
    units: list[list[Channel]]
    queries: list[EncodedQuery]
    ids: np.ndarray
    held: HeldRows
    raws: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class UnitScores:
    """`UnitFusion.scored`: per unit its weight × share (`weight`) and (normalised value, fused value) over the
    candidates (`values`), and the fused `total` (negative terms and CombMNZ's multiplier included) with how
    many item modalities reached each candidate (`hits`)."""

    candidates: Candidates
    weight: np.ndarray
    values: list[tuple[np.ndarray, np.ndarray]]
    total: np.ndarray
    hits: np.ndarray
    negatives: dict[str, np.ndarray]


# A unit's list is at least `candidates` long and one for every ITEMS_PER_CANDIDATE items its fields hold: an
# item best on the fused score ranks deeper in each unit's own list the more items there are (its rank grows
# with their number). Agreeing fields, 100 a unit: the exact fused top 10 at 1M (recall@10 1.0), 0.794 of it
# at 10M, where 320 found 0.982 (docs/benchmarks/notes/scale_10m.md, tenth session). 100 stays up to 2.5M a field.
ITEMS_PER_CANDIDATE = 25_000


def unit_candidates(
    space: VectorSpace, query: EncodedQuery, unit: list[Channel], n: int, fields: list[Field] | None = None
) -> UnitList:
    """The unit's own best `n` (more in a large collection: ITEMS_PER_CANDIDATE), from the index of its
    fields in the space's order (the order `prepare` builds it in: in the query's order, a hybrid group's
    first search built a second index, 6 min at 10M); `fields`: `unit_fields`, where known."""
    if fields is None:
        fields = unit_fields(space, unit)
    modalities = {c.query_modality for c in unit}
    sub = EncodedQuery({k: v for k, v in query.vectors.items() if k[0] in modalities}, query.weights)
    n = max([n] + [len(space.tables[f.key]) // ITEMS_PER_CANDIDATE for f in fields])
    ids, scores = search_concat(space, fields, sub, n)
    return UnitList(ids, scores, True)  # search_concat re-scores a compressed index's candidates exactly


@cache
def search_pool() -> ThreadPoolExecutor:
    """One pool a process for remote searches: its threads wait on the network, not on the cores."""
    return ThreadPoolExecutor(8, thread_name_prefix="unit-search")


def units_candidates(
    space: VectorSpace, queries: list[EncodedQuery], units: list[list[Channel]], n: int
) -> list[UnitList]:
    """Each unit's `unit_candidates`. Where every unit's index answers over a network (`VectorStore.remote`:
    a Milvus server), the searches go out together, so a query waits for one round trip, not one per unit.
    Indexes are found (or built) here, one at a time, before any search is sent; units sharing an index
    search it in turn (a store's first search after its writes decides its consistency)."""
    fields = [unit_fields(space, unit) for unit in units]
    stores = [concat_index(space, found) for found in fields if found]
    apart = len({id(store) for store in stores}) == len(stores) == len(units) > 1
    if not (apart and all(store.remote for store in stores)):
        return [unit_candidates(space, q, unit, n, f) for q, unit, f in zip(queries, units, fields)]
    return list(search_pool().map(lambda q, unit, f: unit_candidates(space, q, unit, n, f), queries, units, fields))


def unit_fields(space: VectorSpace, unit: list[Channel]) -> list[Field]:
    """The fields a unit reaches that hold vectors, in the space's order: the fields of the index it searches."""
    return present_fields(space, [f for f in space.fields if any(c.field == f for c in unit)])


def union(lists: list[UnitList]) -> np.ndarray:
    """The sorted union of the lists' ids; each list learns the row of each of its ids in it."""
    if not lists:
        return np.zeros(0, np.int64)
    ids, inverse = np.unique(np.concatenate([found.ids for found in lists]), return_inverse=True)
    for found, rows in zip(lists, np.split(inverse, np.cumsum([len(found.ids) for found in lists])[:-1])):
        found.rows = rows
    return ids


def listed_totals(listed: UnitList, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A unit's scores from its own list only, over the `n` ids of the union; ids outside it are absent."""
    total, present = np.zeros(n, np.float32), np.zeros(n, bool)
    total[listed.rows], present[listed.rows] = listed.scores, True
    return total, present


def unit_totals(
    space: VectorSpace,
    query: EncodedQuery,
    unit: list[Channel],
    ids: np.ndarray,
    listed: UnitList | None = None,
    held: HeldRows | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Σ share × weight × cosine over the unit's channels for each id (`channel_parts`), and which ids the
    unit reaches.

    When the unit's index scored exactly, the ids of its own list keep their listed score and only the
    others are looked up (with three units of 100, about a third of the lookups or more are saved), from
    `held` rows of `ids` where given.
    """
    if listed is not None and listed.exact:
        total, reached = listed_totals(listed, len(ids))
    else:
        total, reached = np.zeros(len(ids), np.float32), np.zeros(len(ids), bool)
    rest = np.flatnonzero(~reached)
    if held is None:
        parts = list(channel_parts(space, query, unit, ids[rest]).values())
    else:  # a product over every held row costs less than taking the rest's rows out first
        parts = [(part[rest], present[rest]) for part, present in channel_parts(space, query, unit, ids, held).values()]
    for part, present in parts:
        total[rest] += part
        reached[rest] |= present
    return total, reached


class UnitFusion(FusionStrategy):
    """Score and rank fusion over units; subclasses say what a unit is."""

    fuses_at = "query"
    missing = "a missing modality contributes nothing; the item is ranked by the units it has"
    Params = LateParams

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        raise NotImplementedError

    def prepare(self, space: VectorSpace) -> None:
        """The index of every unit a query can form (`unit_indexes`), on the centred view when searches
        centre: a unit whose index is missing builds it on its first search, ~6 min a field at 10M items."""
        if self.params.centre:
            space = space.centred()
        for fields in self.unit_indexes(space):
            concat_index(space, fields)

    def unit_indexes(self, space: VectorSpace) -> list[list[Field]]:
        """The fields of each index a search can use: the units of a query of every combination of the
        space's modalities, each carrying a vector from every encoder of that modality's fields, as a
        query is encoded (so a query of two modalities may reach two of a group's fields, a group's
        subset: hybrid's image+audio query reaches two of the pretrained profile's three text fields)."""
        modalities = sorted({f.modality for f in space.fields})
        found: dict[tuple[str, ...], list[Field]] = {}
        for size in range(1, len(modalities) + 1):
            for chosen in combinations(modalities, size):
                keys = {(m, f.encoder) for m in chosen for f in space.fields if f.modality == m}
                for unit in self.units(space, EncodedQuery({key: np.zeros(0, np.float32) for key in keys})):
                    fields = unit_fields(space, unit)
                    found.setdefault(tuple(f.key for f in fields), fields)
        return list(found.values())

    def candidates(self, space: VectorSpace, query: EncodedQuery, k: int) -> np.ndarray:
        return self.searched(space, query, self.units(space, query), k)[2]

    def _lists(
        self, space: VectorSpace, queries: list[EncodedQuery], units: list[list[Channel]], k: int
    ) -> tuple[list[UnitList], np.ndarray]:
        """Each unit's own list (searched with its unit query), and the union of their ids."""
        found = units_candidates(space, queries, units, max(k, self.params.candidates))
        return found, union(found)

    def unit_queries(
        self, space: VectorSpace, query: EncodedQuery, units: list[list[Channel]], k: int
    ) -> list[EncodedQuery]:
        """The query each unit searches and scores with: a unit of one query modality unweighted (its weight
        applies after normalisation); a unit of several keeps the weights that mix them (`mixed_query`)."""
        return [
            unweighted(query) if len({c.query_modality for c in unit}) == 1 else self.mixed_query(space, query, unit, k)
            for unit in units
        ]

    def mixed_query(self, space: VectorSpace, query: EncodedQuery, unit: list[Channel], k: int) -> EncodedQuery:
        """The query of a unit of several query modalities (hybrid's groups); late has none."""
        return query

    def scored(self, space: VectorSpace, query: EncodedQuery, k: int) -> UnitScores:
        """The one scoring step `search` ranks and `explain` breaks down: screen and centre the query, search
        each unit's list (`k` deep at least), score every unit over the union exactly, weigh and fuse."""
        with one_thread():
            return self._scored(space, query, k)

    def _scored(self, space: VectorSpace, query: EncodedQuery, k: int) -> UnitScores:
        c = self._candidates(space, query, k)
        p = self.params
        weights = self.unit_weights(c.space, c.query, c.queries, c.units, c.raws, c.ids, c.held)
        shares, pairings = per_item_modality(c.units)
        values = self._unit_values(c.raws, weights, shares)
        total = np.zeros(len(c.ids), np.float32)
        for _, fused in values:
            total += fused
        hits = np.zeros(len(c.ids), np.int64)
        for members in pairings:
            hits += np.any([c.raws[n][1] for n in members], axis=0)
        negatives = self._negatives(c.space, c.query, c.ids)
        for value in negatives.values():
            total = total + value
        if p.fusion == "mnz":
            total = total * hits
        # a unit's weight as it multiplies the normalised value: adaptive or set, times its share (a caption
        # reached through three encoders: each of its channels a third)
        return UnitScores(c, weights * np.array(shares), values, total, hits, negatives)

    def _candidates(self, space: VectorSpace, query: EncodedQuery, k: int) -> Candidates:
        """The query as searched (screened, centred when asked), its units, each unit's own list and the
        union's raw unit scores, from rows gathered once (`held`)."""
        if self.params.screen:
            query = screened(space, query)
        if self.params.centre:
            space, query = space.centred(), space.centre_query(query)
        units = self.units(space, query)
        queries, lists, ids, held = self.searched(space, query, units, k)
        raws = [self._raw(space, q, unit, ids, listed, held) for q, unit, listed in zip(queries, units, lists)]
        return Candidates(space, query, units, queries, ids, held, raws)

    def searched(
        self, space: VectorSpace, query: EncodedQuery, units: list[list[Channel]], k: int
    ) -> tuple[list[EncodedQuery], list[UnitList], np.ndarray, HeldRows]:
        """Each unit's query and own list (`k` deep at least), their union, and its rows (`held`): re-scoring
        and the adaptive weights read each candidate's rows once."""
        queries = self.unit_queries(space, query, units, k)
        lists, ids = self._lists(space, queries, units, k)
        return queries, lists, ids, space.held_rows(ids)

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        with one_thread():  # the contributions multiply held rows too
            return self._search(space, query, k)

    def _search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        s = self._scored(space, query, k)
        c = s.candidates
        reached = np.flatnonzero(s.hits > 0)
        top = reached[rank_order(s.total[reached], c.ids[reached], k)]
        fused = [f[top] for _, f in s.values]
        parts = self._contributions(c.space, c.queries, c.units, c.ids[top], fused, c.held.subset(top))
        for name, value in s.negatives.items():
            parts[name] = parts.get(name, 0) + value[top]
        if self.params.fusion == "mnz":
            parts = {m: v * s.hits[top] for m, v in parts.items()}
        return [
            Scored(int(c.ids[i]), float(s.total[i]), {m: float(v[n]) for m, v in parts.items()})
            for n, i in enumerate(top)
        ]

    def _unit_values(
        self, raws: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray, shares: list[float]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per unit: its normalised (or RRF) value over the candidates, and what it adds to the fused score
        (that value times the unit's weight and its share of the query modality)."""
        p = self.params
        out = []
        for (raw, present), weight, share in zip(raws, weights, shares):
            value = rrf(ranks(raw, present), p.rrf_k) if p.fusion == "rrf" else normalise(raw, present, p.normalisation)
            out.append((value, (np.float32(weight * share) * value).astype(np.float32)))
        return out

    def explain(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, Any]:
        """`scored` (lists as deep as `ids`) broken down per unit (a channel, for late): each id's rank among
        the candidates (0: not reached), raw weighted cosine, normalised (or RRF) value, the unit's weight
        (adaptive included) and the `fused` value that the score adds up (before CombMNZ's multiplier and
        any negative query)."""
        s = self.scored(space, query, len(ids))
        c = s.candidates
        if not len(c.ids):
            return {"units": [], "rank": np.zeros((len(ids), 0), np.int64)}
        rows = np.searchsorted(c.ids, ids).clip(0, len(c.ids) - 1)
        found = c.ids[rows] == ids
        out: dict[str, Any] = {"units": [" + ".join(ch.label for ch in unit) for unit in c.units], "weight": s.weight}
        for name in ("rank", "raw", "normalised", "fused"):
            out[name] = np.zeros((len(ids), len(c.units)), np.int64 if name == "rank" else np.float32)
        for u, ((raw, present), (value, fused)) in enumerate(zip(c.raws, s.values)):
            for name, array in (("rank", ranks(raw, present)), ("raw", raw), ("normalised", value), ("fused", fused)):
                out[name][:, u] = np.where(found, array[rows], 0)
        return out

    def weighing(self, space: VectorSpace, query: EncodedQuery, k: int) -> Weighing:
        """Screened inputs left out; the others as set with fixed weighting, and with adaptive each one's
        weight as `search` computes it (`input_weights`), over the same candidates."""
        if self.params.weighting != "adaptive":
            return as_set(query, flat_out(query, screened(space, query)) if self.params.screen else set())
        with one_thread():
            c = self._candidates(space, query, k)
            weighing = as_set(query, flat_out(query, c.query))
            weighing.how = "adaptive"
            self.input_weights(weighing, c.space, c.query, c.queries, c.units, c.raws, c.ids, c.held)
        return weighing

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
        """Each input's weight: the share-weighted mean of its units' weights (`unit_weights`: set × adaptive),
        with the mean of their predictors. A unit mixing several inputs (hybrid's, unstandardised) weighs
        them inside it as set, so it changes none of them."""
        if len(units) < 2:  # `unit_weights`: a unit alone is not weighed
            return
        shares, _ = per_item_modality(units)
        judgements = judge_units(space, queries, units, raws, ids, held)
        adaptive = judged_weights(judgements)
        for one in weighing.inputs:
            mine = [n for n, unit in enumerate(units) if {c.query_modality for c in unit} == {one.modality}]
            if one.screened or not mine:
                continue
            weights = [shares[n] for n in mine]
            one.used = one.chosen * float(np.average(adaptive[mine], weights=weights))
            one.judgement = mean_judgement([judgements[n] for n in mine], weights)

    def _raw(
        self,
        space: VectorSpace,
        unit_query: EncodedQuery,
        unit: list[Channel],
        ids: np.ndarray,
        listed: UnitList,
        held: HeldRows | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A unit's raw scores over `ids`, scored with its unit query (the one its own list was searched with)."""
        if self.params.rescore:
            return unit_totals(space, unit_query, unit, ids, listed, held)
        return listed_totals(listed, len(ids))

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
        """Each unit's weight: its query modality's weight (1 for a unit mixing several), times the adaptive
        weight (from each unit's own query) when asked for."""
        fixed = np.array([query_weight(query, unit) for unit in units], np.float64)
        if self.params.weighting != "adaptive" or len(units) < 2:
            return fixed
        return fixed * adaptive_weights(space, queries, units, raws, ids, held)

    def _contributions(
        self,
        space: VectorSpace,
        queries: list[EncodedQuery],
        units: list[list[Channel]],
        ids: np.ndarray,
        values: list[np.ndarray],
        held: HeldRows | None = None,
    ) -> dict[str, np.ndarray]:
        """Each unit's fused value split among its query modalities in proportion to their raw scores
        (equally without re-scoring). Only the k results need it, so a unit of several modalities looks up
        k rows per channel here rather than every candidate's."""
        parts: dict[str, np.ndarray] = {}
        for unit_query, unit, value in zip(queries, units, values):
            modalities = sorted({c.query_modality for c in unit})
            if len(modalities) == 1 or not self.params.rescore:
                for modality in modalities:
                    parts[modality] = parts.get(modality, 0) + value / len(modalities)
                continue
            raw = {m: part for m, (part, _) in channel_parts(space, unit_query, unit, ids, held).items()}
            raw_sum = sum(raw.values())
            for modality, part in raw.items():
                share = np.divide(part, raw_sum, out=np.full(len(ids), 1 / len(raw)), where=raw_sum != 0)
                parts[modality] = parts.get(modality, 0) + value * share
        return parts

    def _negatives(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Negative terms lower the fused score by their weighted similarity (normalised like the rest)."""
        out: dict[str, np.ndarray] = {}
        channels = space.channels(query, negative=True)
        for channel, share in zip(channels, channel_shares(channels)):
            scores, present = space.channel_scores(query, channel, ids, negative=True)
            value = -query.negative_weight * share * normalise(scores, present, self.params.normalisation)
            out["-" + channel.query_modality] = out.get("-" + channel.query_modality, 0) + value
        return out


def per_item_modality(units: list[list[Channel]]) -> tuple[list[float], list[list[int]]]:
    """Each unit's share, and the pairings (not hybrid's `groups`): single-channel units that join one query
    modality to one item modality through different encoders (with the pretrained profile, text meets a
    caption through CLIP, CLAP and MiniLM) form one pairing whose values are averaged (`channel_shares`), so a
    captioned item is not ranked above an uncaptioned one for having three text channels to one. A unit of
    several channels (hybrid's group) is a pairing of its own, its channels shared inside it
    (`channel_parts`)."""
    single = [n for n, unit in enumerate(units) if len(unit) == 1]
    shares = [1.0] * len(units)
    for n, share in zip(single, channel_shares([units[n][0] for n in single])):
        shares[n] = share
    keyed: dict[tuple, list[int]] = {}
    for n, unit in enumerate(units):
        key = (unit[0].query_modality, unit[0].field.modality) if len(unit) == 1 else ("unit", n)
        keyed.setdefault(key, []).append(n)
    return shares, list(keyed.values())


def unweighted(query: EncodedQuery) -> EncodedQuery:
    return EncodedQuery(query.vectors, {}, query.negatives, query.negative_weight)


def query_weight(query: EncodedQuery, unit: list[Channel]) -> float:
    """The weight of a unit's query modality; 1 for a unit that mixes several (their weights act inside)."""
    modalities = {c.query_modality for c in unit}
    return query.weight(modalities.pop()) if len(modalities) == 1 else 1.0


class LateFusion(UnitFusion):
    name = "late"

    def units(self, space: VectorSpace, query: EncodedQuery) -> list[list[Channel]]:
        return [[channel] for channel in space.channels(query)]
