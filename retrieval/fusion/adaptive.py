"""Per-query channel weights without labels, from query-performance predictors (weighted CombSUM).

A useless query input (a white-noise clip, a quiet room, an off-topic caption, a blank image) still has a
best match in every channel, and z-score or min-max normalisation stretches its near-flat scores to the
same range as a real input's. Three predictors, after the IR literature on query performance prediction,
tell them apart; the first two are computed on the unit's scores over a fixed random sample of the collection:

- *spread* (after NQC, Shtok et al. 2012): the standard deviation of the query's scores over the sample,
  relative to that of a typical in-collection query of the same field. Measured on the cross-speaker
  benchmark's corpus: real images, recordings and phrasings 0.77-1.04; noise clips 0.22-0.39, a quiet
  room 0.24, off-topic text 0.27, a blank image 0.
- *clarity* (after WIG, Zhou & Croft 2007): how many sample standard deviations the unit's best 10
  scores stand above the sample mean. Unseen speakers' recordings 1.7, images 2.4, phrasings 2.6: the
  channel whose best matches barely stand out is the one to trust less.

- *coherence* (the cluster hypothesis, across modalities): how alike the unit's best items are in the
  fields it did not search. An image channel's best ten share a digit, so their recordings are alike;
  an unseen speaker's recording finds a mix of digits, whose images are not. Each field's alikeness is
  measured from that of any two of its items (0) to that of an item's nearest neighbours there (1): in a
  speech network's field any two recordings are alike, and a share of 1 would rate every set coherent.

and one property of the field the unit searched, not of the query:

- *agreement*: the coherence of the field's own nearest-neighbour sets. Where a field's neighbours are
  alike in the other fields too (a recording's nearest recordings say the same digit, so their images
  agree), its matches can be trusted; templated captions whose nearest captions name other digits cannot.

weight = min(1, spread)^a × clarity^b × coherence^c × agreement^d, scaled so the unit weights average 1;
since recordings are read by a speech network the evidence gives a = 0, b = 1, c = 2, d = 1 (see
`SPREAD_POWER`). A query input
whose spread is under half a typical one is left out altogether (`screened`, which the learned and
early strategies use too). Everything comes from the collection and the query; nothing is labelled.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np

from retrieval.fusion.base import channel_parts, one_thread
from retrieval.space import Channel, EncodedQuery, HeldRows, VectorSpace

SAMPLE = 256  # items whose scores describe a query's distribution (exact: 256 dot products per channel)
REFERENCE_QUERIES = 64  # in-collection queries that set a field's typical spread
TOP = 10
# Chosen on the speaker rotation the benchmarks do not report (corpus jackson, queries lucas) from a grid of
# 140, keeping every noisy kind's cost <= 0.02 there with the voice detector, without it, and unscreened
# (docs/benchmarks/adaptive_powers.md). On the other three rotations the worst fused-minus-best-single is
# +0.015 where (4, 2, 1), chosen when recordings were MFCC, gave -0.051 (audio+text). The price: without the
# screen a noise clip costs 0.059 (was 0.033), so the screen, not the weights, keeps flat inputs out.
SPREAD_POWER = 0.0
CLARITY_POWER = 1.0
COHERENCE_POWER = 2.0
# Not tuned: 1, as a factor of its own. On the tuning rotation 0.5-2 move the worst fused-minus-best-single by
# less than 0.01, the noise of 50 queries a kind (docs/benchmarks/adaptive_powers.md).
AGREEMENT_POWER = 1.0
NEIGHBOUR_ITEMS = 64  # sample items whose nearest neighbours set a field's yardsticks (`yardstick`)
# items among which they are found: the whole field up to this size; in a larger one the neighbours are the
# nearest among this many, a coarser yardstick at a bounded cost (64 x 4,096 products a field, once)
NEIGHBOUR_POOL = 4096
# a field of fewer items has no neighbours distinct from any items (10 of 12 are most of the field): its
# coherence stays a share of 1, as before 0.20.0, and its agreement neutral
NEIGHBOURED = 5 * TOP

_references: weakref.WeakKeyDictionary[VectorSpace, dict[str, tuple[np.ndarray, float]]] = weakref.WeakKeyDictionary()
_yardsticks: weakref.WeakKeyDictionary[VectorSpace, dict[str, tuple[float, float]]] = weakref.WeakKeyDictionary()
_neighbours: weakref.WeakKeyDictionary[VectorSpace, dict[str, list[np.ndarray]]] = weakref.WeakKeyDictionary()
_agreements: weakref.WeakKeyDictionary[VectorSpace, dict[str, float]] = weakref.WeakKeyDictionary()
_samples: weakref.WeakKeyDictionary[VectorSpace, dict[tuple[str, ...], HeldRows]] = weakref.WeakKeyDictionary()


def field_reference(space: VectorSpace, key: str) -> tuple[np.ndarray, float]:
    """A seeded sample of the field's item ids, and the median spread of in-collection queries over it."""
    cache = _references.setdefault(space, {})
    if key not in cache:
        table = space.tables[key]
        rng = np.random.default_rng(0)
        ids = np.sort(rng.choice(table.ids, size=min(SAMPLE, len(table)), replace=False))
        held = _samples.setdefault(space, {}).setdefault((key,), space.held_rows(ids))  # `unit_sample`'s, read once
        vectors = held.rows(key)[0]
        queries = vectors[rng.choice(len(ids), size=min(REFERENCE_QUERIES, len(ids)), replace=False)]
        sims = queries @ vectors.T
        sims[np.isclose(sims, 1.0, atol=1e-3)] = np.nan  # the query item itself (and exact duplicates)
        others = (~np.isnan(sims)).sum(axis=1)
        measured = sims[others > 1]  # a query with fewer than two other items has no spread to measure
        spreads = np.nanstd(measured, axis=1) if len(measured) else np.zeros(0)
        # 0 where no query has one (a field of duplicates): `predictors` then calls the field flat
        cache[key] = (ids, float(np.median(spreads)) if len(spreads) else 0.0)
    return cache[key]


def unit_sample(space: VectorSpace, keys: tuple[str, ...]) -> HeldRows:
    """The union of the fields' samples (`field_reference`) with their vectors in those fields, gathered once
    per space: every query scores the same items, and gathering them from the float16 tables each time was
    most of the adaptive weights' cost (docs/benchmarks/search_latency.md)."""
    cache = _samples.setdefault(space, {})
    if keys not in cache:  # a field's own sample may be held by `field_reference` meanwhile: kept, not replaced
        ids = np.unique(np.concatenate([field_reference(space, key)[0] for key in keys]))
        cache.setdefault(keys, space.held_rows(ids))
    return cache[keys]


def neighbour_sets(space: VectorSpace, key: str) -> list[np.ndarray]:
    """The item ids of the `TOP` nearest neighbours in the field (among `NEIGHBOUR_POOL` of its items, the
    item itself left out) of up to `NEIGHBOUR_ITEMS` of its sample items; zero vectors (an empty field) take
    no part. None in a field of fewer than `NEIGHBOURED` items."""
    cache = _neighbours.setdefault(space, {})
    if key not in cache:
        table = space.tables[key]
        pool = np.sort(np.random.default_rng(1).choice(table.ids, size=min(NEIGHBOUR_POOL, len(table)), replace=False))
        rows, present = table.lookup(pool)
        keep = present & rows.any(axis=1)
        pool, rows = pool[keep], rows[keep]
        if len(pool) < NEIGHBOURED:
            cache[key] = []
            return cache[key]
        items, _ = table.lookup(field_reference(space, key)[0])
        items = items[items.any(axis=1)][:NEIGHBOUR_ITEMS]
        sims = items @ rows.T
        sims[np.isclose(sims, 1.0, atol=1e-3)] = -np.inf  # the item itself (and exact duplicates)
        cache[key] = list(pool[np.argsort(-sims, axis=1, kind="stable")[:, :TOP]])
    return cache[key]


def yardstick(space: VectorSpace, key: str) -> tuple[float, float]:
    """(random, near): the mean cosine between any two of the field's sample items, and the median over
    `neighbour_sets` of that between an item's nearest neighbours (1 where it has none). A coherence of 0 is
    a set no more alike than any items, 1 one as alike as near neighbours."""
    cache = _yardsticks.setdefault(space, {})
    if key not in cache:
        random = mean_pairwise(unit_sample(space, (key,)).rows(key)[0])
        table = space.tables[key]
        near = [mean_pairwise(table.lookup(ids)[0]) for ids in neighbour_sets(space, key)]
        cache[key] = (random, float(np.nanmedian(near)) if near else 1.0)
    return cache[key]


def field_agreement(space: VectorSpace, key: str) -> float:
    """How alike the field's nearest-neighbour sets are in the other fields: their mean `coherence`. 1
    (neutral) where no other field tells."""
    cache = _agreements.setdefault(space, {})
    if key not in cache:
        sets = neighbour_sets(space, key)
        values = coherences_in(space, [{key}] * len(sets), sets) if sets else [1.0]
        cache[key] = float(np.mean(values))
    return cache[key]


def predictors(
    space: VectorSpace,
    query: EncodedQuery,
    unit: list[Channel],
    raw: np.ndarray,
    present: np.ndarray,
    best: np.ndarray | None = None,
) -> tuple[float, float]:
    """(spread, clarity) of one unit: its sample scores' spread relative to a typical query's, and how far
    its best `TOP` scores over the candidates stand above the sample mean, in sample standard deviations.
    `best`: the positions of those `TOP` in `raw` where known (`best_positions`)."""
    keys = tuple(dict.fromkeys(c.field.key for c in unit))
    sample = unit_sample(space, keys)
    scores = sample_scores(space, query, unit, sample)
    typicals = [field_reference(space, key)[1] for key in keys]
    typical = sum(typicals) / len(typicals)  # np.mean's value for so few, without its ~10 us a call
    if len(scores) < 2 or not present.any() or typical <= 0:
        return 0.0, 0.0
    spread = float(scores.std())
    if spread <= 1e-9:
        return 0.0, 0.0
    if best is None:
        best = best_positions(raw, present)
    top = raw[best[::-1]].mean()  # ascending, as a sort would add them up
    return min(1.0, spread / typical), max(0.0, float(top - scores.mean()) / spread)


def sample_scores(space: VectorSpace, query: EncodedQuery, unit: list[Channel], sample: HeldRows) -> np.ndarray:
    """The unit's scores over the sample items it reaches. A unit of one unweighted channel is its field's
    sample scores as they are (`HeldRows.scores` keeps the last query's: screening asked for them first)."""
    if len(unit) == 1 and query.weight(unit[0].query_modality) == 1.0:
        scores, present = sample.channel_scores(query, unit[0])
        return scores[present]
    total = np.zeros(len(sample.ids), np.float32)
    reached = np.zeros(len(sample.ids), bool)
    for part, hit in channel_parts(space, query, unit, sample.ids, sample).values():
        total += part
        reached |= hit
    return total[reached]


def best_positions(raw: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Positions of the `TOP` best present scores, best first (ties in position order)."""
    at = np.flatnonzero(present)
    return at[np.argsort(-raw[at], kind="stable")[:TOP]]


def mean_pairwise(vectors: np.ndarray) -> float:
    """Mean cosine between distinct rows, zero rows left out: a zero vector is a field with nothing in it (a
    recording whose transcript has no words), not an item unlike every other."""
    vectors = vectors[vectors.any(axis=1)] if len(vectors) else vectors
    n = len(vectors)
    if n < 2:
        return float("nan")
    sims = vectors @ vectors.T
    return float((sims.sum() - sims.trace()) / (n * (n - 1)))


def coherence(space: VectorSpace, unit: list[Channel], top: np.ndarray, held: HeldRows | None = None) -> float:
    """How alike the unit's best items are in the item fields the unit did not search (the cluster
    hypothesis across modalities): mean pairwise cosine of their vectors there, above that of any two items,
    as a share of what an item's nearest neighbours there reach (`yardstick`). An image channel's best ten
    share digits, so their recordings are alike; a weak or useless channel's best ten are a mix. 1 (neutral)
    where no other field helps.
    From `held` rows of exactly `top` where given (`HeldRows.subset`), else from the tables."""
    return coherences(space, [unit], [top], held)[0]


def coherences(
    space: VectorSpace, units: list[list[Channel]], tops: list[np.ndarray], held: HeldRows | None = None
) -> list[float]:
    """`coherence` of each unit over its best items `tops`, from `held` rows of their concatenation where
    given. A field's rows of every unit's best items are read once, and a unit's sum of pairwise cosines
    is |Σv|² - Σ|v|²: no product of all the rows with each other, which OpenBLAS splits over threads that
    wait on a busy machine, and no product and lookup per unit and field."""
    return coherences_in(space, [{c.field.key for c in unit} for unit in units], tops, held)


def coherences_in(
    space: VectorSpace, owns: list[set[str]], tops: list[np.ndarray], held: HeldRows | None = None
) -> list[float]:
    """`coherences` of item sets `tops`, each judged in the fields not in its `owns`."""
    sizes = np.array([len(top) for top in tops], np.int64)
    everyone = np.concatenate(tops) if tops else np.zeros(0, np.int64)
    unit_of = np.repeat(np.arange(len(owns)), sizes)
    bounds = np.cumsum(sizes).tolist()
    sums, counts = np.zeros(len(owns)), np.zeros(len(owns))
    for key, table in space.tables.items():
        users = np.array([key not in own for own in owns], bool)
        if not len(table) or not users.any() or len(everyone) < 2:
            continue
        vectors, present = table.lookup(everyone) if held is None else held.rows(key)  # absent rows are 0
        present = present & vectors.any(axis=1)  # a zero vector is an empty field (`mean_pairwise`)
        n = np.bincount(unit_of, weights=present, minlength=len(owns))
        helps = users & (n >= 2)  # a unit with fewer than two of its best items in the field learns nothing
        if not helps.any():
            continue
        random, near = yardstick(space, key)
        if near - random < 1e-3:  # neighbours no more alike than any items: the field tells nothing
            continue
        exact = vectors.astype(np.float64)  # the difference of two sums loses float32's last digits
        summed = np.stack([exact[end - size : end].sum(axis=0) for end, size in zip(bounds, sizes.tolist())])
        own = np.bincount(unit_of, weights=np.einsum("ij,ij->i", exact, exact), minlength=len(owns))
        among = (np.einsum("ij,ij->i", summed, summed) - own) / np.maximum(n * (n - 1), 1)
        sums += np.where(helps, (among - random) / (near - random), 0.0)
        counts += helps
    return [min(1.0, max(0.0, float(t / c))) if c else 1.0 for t, c in zip(sums, counts)]


@dataclass(frozen=True)
class Judgement:
    """The label-free predictors behind one unit's adaptive weight (see the module's docstring): kept so a
    front end can say why an input counted less than its owner set it."""

    spread: float
    clarity: float
    coherence: float
    agreement: float = 1.0

    @property
    def raw(self) -> float:
        return (
            self.spread**SPREAD_POWER
            * self.clarity**CLARITY_POWER
            * self.coherence**COHERENCE_POWER
            * self.agreement**AGREEMENT_POWER
        )


def judge_units(
    space: VectorSpace,
    queries: list[EncodedQuery],
    units: list[list[Channel]],
    raws: list[tuple[np.ndarray, np.ndarray]],
    ids: np.ndarray,
    held: HeldRows | None = None,
    at: np.ndarray | None = None,
) -> list[Judgement]:
    """Each unit's predictors, each unit scored with its own query over the candidates `ids` (`held`: theirs,
    or, with `at`, the held items at positions `at` are `ids`)."""
    bests = [best_positions(raw, present) for raw, present in raws]
    # every unit's best items in one subset: a field's rows for them are gathered once, not once a unit
    best = np.concatenate(bests) if bests else np.zeros(0, np.int64)
    tops = held.subset(best if at is None else at[best]) if held is not None and bests else None
    coherent = coherences(space, units, [ids[best] for best in bests], tops)
    return [
        Judgement(*predictors(space, query, unit, raw, present, best), together, unit_agreement(space, unit))
        for query, unit, (raw, present), best, together in zip(queries, units, raws, bests, coherent)
    ]


def unit_agreement(space: VectorSpace, unit: list[Channel]) -> float:
    """The mean `field_agreement` of the fields the unit searches."""
    keys = list(dict.fromkeys(c.field.key for c in unit))
    return sum(field_agreement(space, key) for key in keys) / len(keys) if keys else 1.0


def judged_weights(judgements: list[Judgement]) -> np.ndarray:
    """One weight per judgement, averaging 1; all equal when none carries signal."""
    out = np.array([j.raw for j in judgements], np.float64)
    if not len(out) or out.sum() <= 0:
        return np.ones(len(judgements))
    return out * len(out) / out.sum()


def adaptive_weights(
    space: VectorSpace,
    queries: list[EncodedQuery],
    units: list[list[Channel]],
    raws: list[tuple[np.ndarray, np.ndarray]],
    ids: np.ndarray,
    held: HeldRows | None = None,
) -> np.ndarray:
    """One weight per unit (each scored with its own query), averaging 1; all equal when none carries signal."""
    return judged_weights(judge_units(space, queries, units, raws, ids, held))


# A query input whose scores over the collection spread less than half as much as a typical item's is
# taken for a useless one. On the benchmark's corpus (rotations 0-1): real images, recordings and
# phrasings 0.77-1.04 (mean, sd ≤ 0.33), noise clips 0.22-0.39, a quiet room 0.24, off-topic text 0.27,
# a blank image 0.
FLAT_SPREAD = 0.5


def flat_modalities(space: VectorSpace, query: EncodedQuery) -> set[str]:
    """Query modalities whose every vector scores the collection's items about alike (a noise clip, a
    quiet room, a blank image, an off-topic caption): spread over the field's sample < FLAT_SPREAD of a
    typical in-collection query's. A modality with no field of its own to judge by is kept. An input its
    encoder found nothing in (`EncodedQuery.empty`: a recording without a voice) is flat whatever it spreads."""
    judged: dict[str, list[bool]] = {}
    for (modality, encoder), vector in query.vectors.items():
        if (modality, encoder) in query.empty:
            judged.setdefault(modality, []).append(True)
            continue
        key = f"{modality}@{encoder}"
        table = space.tables.get(key)
        if table is None or len(table) < 2:
            continue
        typical = field_reference(space, key)[1]
        spread = float(unit_sample(space, (key,)).scores(key, vector).std())
        judged.setdefault(modality, []).append(typical > 0 and spread < FLAT_SPREAD * typical)
    return {m for m, flags in judged.items() if all(flags)}


def screened(space: VectorSpace, query: EncodedQuery) -> EncodedQuery:
    """The query without its flat modalities, unless that would leave nothing. Its products on one BLAS
    thread (`one_thread`): the learned strategies screen before their own search, outside late's."""
    with one_thread():
        flat = flat_modalities(space, query)
    if not flat or flat >= {m for m, _ in query.vectors}:
        return query
    return replace(query, vectors={k: v for k, v in query.vectors.items() if k[0] not in flat})


def standardised(space: VectorSpace, query: EncodedQuery) -> EncodedQuery:
    """Each query vector (negative terms too) divided by the typical spread of cosines in the fields it
    reaches (`field_reference`), weights kept: a sum of channels' cosines (one concatenated index) then weighs
    each channel by how far it separates the collection's items, not by its encoder's range of cosines. A
    z-score whose centre a ranking ignores, with the field's scale rather than the query's own, so that a
    near-flat input is not stretched. A vector whose fields have no spread to measure keeps its scale."""

    def scaled(key: tuple[str, str], vector: np.ndarray) -> np.ndarray:
        spreads = [
            field_reference(space, f.key)[1]
            for f in space.fields
            if f.encoder == key[1] and f.key in space.tables and len(space.tables[f.key]) >= 2
        ]
        typical = float(np.mean(spreads)) if spreads else 0.0
        return (vector / typical).astype(np.float32) if typical > 0 else vector

    return replace(
        query,
        vectors={k: scaled(k, v) for k, v in query.vectors.items()},
        negatives={k: scaled(k, v) for k, v in query.negatives.items()},
    )


def channel_judgements(
    space: VectorSpace, query: EncodedQuery, ids: np.ndarray, held: HeldRows | None = None, at: np.ndarray | None = None
) -> dict[tuple[str, str], tuple[float, Judgement]]:
    """Late fusion's per-query weights (`adaptive_weights`, each channel a unit, scored over the candidates
    `ids`), for a sum of channels in one concatenated index: one factor per query vector (the mean over the
    channels it reaches), with the mean of those channels' predictors; none where fewer than two channels
    compete. With `at`, `ids` are the `held` items at positions `at` (a group's own list in the union): their
    scores are taken from the held items' scores, which the union's judging computes anyway."""
    channels = [c for c in space.channels(query) if query.weight(c.query_modality) != 0]  # muted: not judged
    if len(channels) < 2 or not len(ids):
        return {}
    plain = EncodedQuery(query.vectors)  # each channel scored unweighted, as late scores a unit
    units = [[c] for c in channels]
    if held is None:
        held, at = space.held_rows(ids), None
    raws = [held.channel_scores(plain, c) for c in channels]
    if at is not None:
        raws = [(scores[at], present[at]) for scores, present in raws]
    judgements = judge_units(space, [plain] * len(units), units, raws, ids, held, at)
    by_vector: dict[tuple[str, str], list[tuple[float, Judgement]]] = {}
    for channel, weight, judgement in zip(channels, judged_weights(judgements), judgements):
        by_vector.setdefault(channel.vector_key, []).append((float(weight), judgement))
    return {  # a vector reaching one channel (the usual case) takes its pair as it is: np.mean's value
        key: pairs[0]
        if len(pairs) == 1
        else (float(np.mean([w for w, _ in pairs])), mean_judgement([j for _, j in pairs]))
        for key, pairs in by_vector.items()
    }


def mean_judgement(judgements: list[Judgement], shares: list[float] | None = None) -> Judgement:
    """The (share-weighted) mean of each predictor."""
    weights = np.ones(len(judgements)) if shares is None else np.asarray(shares, np.float64)
    return Judgement(
        *(
            float(np.average([getattr(j, name) for j in judgements], weights=weights))
            for name in ("spread", "clarity", "coherence", "agreement")
        )
    )


def channel_weights(
    space: VectorSpace, query: EncodedQuery, ids: np.ndarray, held: HeldRows | None = None, at: np.ndarray | None = None
) -> dict[tuple[str, str], float]:
    """`channel_judgements`' factors alone: one per query vector, 1 where fewer than two channels compete."""
    return {key: weight for key, (weight, _) in channel_judgements(space, query, ids, held, at).items()}


def reweighted(query: EncodedQuery, factors: dict[tuple[str, str], float]) -> EncodedQuery:
    """The query with each vector scaled by its factor (1 where none is given)."""
    return replace(
        query, vectors={k: (v * np.float32(factors.get(k, 1.0))).astype(np.float32) for k, v in query.vectors.items()}
    )
