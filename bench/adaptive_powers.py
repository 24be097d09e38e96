"""Late fusion's adaptive weights under leave-one-rotation-out: can any powers of the predictors keep every
fused kind at or above its best single modality on a speaker rotation they were not chosen on?

Each query of the cross-speaker benchmark (4 rotations, 50 queries a kind) is run once through late fusion at
its defaults to cache each unit's z-scored values over the candidates and its predictors (spread, clarity,
coherence, agreement); any weight formula spread^a x clarity^b x coherence^c x agreement^d is then re-fused
from the cache (the defaults reproduce the benchmark's numbers exactly; d stays at its default but in the
alternatives). Powers are chosen on three rotations (best worst
fused-minus-best-single with every noisy kind's cost <= 0.02) and scored on the fourth.

    .venv/bin/python bench/adaptive_powers.py      # ~1 minute after the benchmark's media cache exists
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import ROOT, write_report
from fusion_cross_data import (
    AUDIO,
    KINDS,
    MNIST_RANGES,
    MULTI,
    NOISY,
    Collection,
    QueryBase,
    demo_like,
    encode_media,
    image_only,
    query_bases,
)
from fusion_cross_speaker import encoded, rotation

from retrieval.fusion import adaptive
from retrieval.fusion.late import LateFusion, union, unit_candidates, unit_totals
from retrieval.fusion.scoring import normalise
from retrieval.space import VectorSpace

ROTATIONS = range(4)
BEFORE = (4.0, 2.0, 1.0)  # the powers chosen when recordings were MFCC
DEFAULTS = (adaptive.SPREAD_POWER, adaptive.CLARITY_POWER, adaptive.COHERENCE_POWER)
TUNING = 3  # corpus jackson, queries lucas: where the constants in retrieval/fusion/adaptive.py are set
GRID = list(itertools.product([0, 2, 4, 6], [0, 1, 2, 3, 4, 6, 8], [0, 0.5, 1, 2, 3]))
KIND_NAMES = ["image", "audio", "text", *MULTI, *NOISY]


def cache_queries(per_kind: int, cache: Path, detector: bool = True, screen: bool = True) -> list[dict]:
    media = encode_media(cache)
    late, out = LateFusion(), []
    with tempfile.TemporaryDirectory() as tmp:
        for r in ROTATIONS:
            roles = rotation(r)
            collections = {
                "corpus": demo_like(media, roles["corpus"], MNIST_RANGES["corpus"], r, Path(tmp) / f"c{r}"),
                "image-only": image_only(media, MNIST_RANGES["corpus"], Path(tmp) / f"i{r}"),
            }
            for kind in KIND_NAMES:
                target = collections[KINDS[kind][1]]
                for base in query_bases(media, roles["query"][0], per_kind, seed=100 + r):
                    out.append({"rotation": r, "kind": kind, **unit_cache(late, target, base, kind, detector, screen)})
    return out


def unit_cache(late: LateFusion, target: Collection, base: QueryBase, kind: str, detector: bool, screen: bool) -> dict:
    """One query's candidates, relevance, each unit's normalised values and predictors, as search makes them."""
    space = target.space
    query = encoded(base, kind, detector=detector)
    query = adaptive.screened(space, query) if screen else query
    units = late.units(space, query)
    queries = late.unit_queries(space, query, units, 10)
    # late's search at its defaults (exact re-scoring, z-score), step by step up to the unit weights
    lists = [unit_candidates(space, q, unit, max(10, late.params.candidates)) for q, unit in zip(queries, units)]
    ids = union(lists)
    raws = [unit_totals(space, q, unit, ids, listed) for q, unit, listed in zip(queries, units, lists)]
    values = [normalise(raw, present, late.params.normalisation) for raw, present in raws]
    features, before = [], []
    for unit, (raw, present) in zip(units, raws):
        alone = encoded(base, unit[0].query_modality)
        spread, clarity = adaptive.predictors(space, alone, unit, raw, present)
        best = ids[present][np.argsort(-raw[present], kind="stable")[: adaptive.TOP]]
        coherent, agreement = adaptive.coherence(space, unit, best), adaptive.unit_agreement(space, unit)
        features.append((spread, clarity, coherent, agreement))
        before.append((spread, clarity, coherence_to_one(space, unit, best), 1.0))
    modalities = [unit[0].query_modality for unit in units]
    reached = np.any([present for _, present in raws], axis=0) if raws else np.zeros(len(ids), bool)
    return {
        "ids": ids,
        "relevant": target.digits[ids] == base.digit,
        "values": np.array(values),
        "features": features,
        "before": before,
        "modalities": modalities,
        "reached": reached,
    }


def coherence_to_one(space: VectorSpace, unit: list, best: np.ndarray) -> float:
    """Coherence before 0.20: above that of any two items, as a share of what is left to 1 (not of what
    the field's nearest neighbours reach)."""
    own, values = {c.field.key for c in unit}, []
    for key, table in space.tables.items():
        if key in own or not len(table):
            continue
        vectors, present = table.lookup(best)
        among = adaptive.mean_pairwise(vectors[present])
        if np.isnan(among):
            continue
        random = adaptive.yardstick(space, key)[0]
        values.append((among - random) / max(1e-6, 1 - random))
    return min(1.0, max(0.0, sum(values) / len(values))) if values else 1.0


def weight_of(features: tuple, powers: tuple, agreement_power: float = adaptive.AGREEMENT_POWER) -> float:
    s, c, h, g = features
    return s ** powers[0] * c ** powers[1] * h ** powers[2] * g**agreement_power


def as_before(query: dict, powers: tuple) -> float:
    """Before 0.20: coherence as a share of 1, and no agreement factor."""
    return p10({**query, "features": query["before"]}, powers)


def agreement_at(power: float) -> Callable[[dict, tuple], float]:
    return lambda query, powers: p10(query, powers, power)


def p10(query: dict, powers: tuple[float, float, float], agreement_power: float = adaptive.AGREEMENT_POWER) -> float:
    weights = np.ones(len(query["features"]))
    if len(weights) > 1:
        raw = np.array([weight_of(f, powers, agreement_power) for f in query["features"]])
        weights = raw * len(raw) / raw.sum() if raw.sum() > 0 else weights
    if not len(weights):
        return 0.0
    total = (weights[:, None] * query["values"]).sum(axis=0)
    rows = np.flatnonzero(query["reached"])
    top = rows[np.lexsort((query["ids"][rows], -np.round(total[rows], 5)))][:10]
    return float(query["relevant"][top].mean())


def top_rows(query: dict, unit: int, n: int) -> set[int]:
    rows = np.flatnonzero(query["reached"])
    return set(rows[np.argsort(-query["values"][unit][rows], kind="stable")[:n]].tolist())


def anchored(query: dict, powers: tuple, n: int) -> float:
    """Alternative: only the most confident unit's best `n` can be returned, ordered by the fused score."""
    if len(query["features"]) < 2:
        return p10(query, powers)
    quality = [weight_of(f, powers) for f in query["features"]]
    keep = np.zeros(len(query["ids"]), bool)
    keep[list(top_rows(query, int(np.argmax(quality)), n))] = True
    return p10({**query, "reached": query["reached"] & keep}, powers)


def agreeing(query: dict, powers: tuple, n: int) -> float:
    """Alternative: each unit's weight also scaled by how many of its best 10 are in another unit's best `n`."""
    units = len(query["features"])
    if units < 2:
        return p10(query, powers)
    agree = [
        len(top_rows(query, u, 10) & set().union(*(top_rows(query, v, n) for v in range(units) if v != u))) / 10
        for u in range(units)
    ]
    features = [(s, c, h * (0.05 + a) ** (1 / powers[2]), g) for (s, c, h, g), a in zip(query["features"], agree)]
    return p10({**query, "features": features}, powers)


def anchor_at(n: int) -> Callable[[dict, tuple], float]:
    return lambda query, powers: anchored(query, powers, n)


def agree_at(n: int) -> Callable[[dict, tuple], float]:
    return lambda query, powers: agreeing(query, powers, n)


def outcome(
    cache: list[dict], powers: tuple, rotations: list[int], score: Callable[[dict, tuple], float] = p10
) -> dict:
    means: dict[tuple[int, str], list[float]] = {}
    for query in cache:
        if query["rotation"] in rotations:
            means.setdefault((query["rotation"], query["kind"]), []).append(score(query, powers))
    m = {key: float(np.mean(v)) for key, v in means.items()}
    gain = {k: np.mean([m[(r, k)] - max(m[(r, s)] for s in k.split("+")) for r in rotations]) for k in MULTI}
    cost = {k: np.mean([m[(r, clean)] - m[(r, k)] for r in rotations]) for k, clean in NOISY.items()}
    return {"worst_gain": float(min(gain.values())), "worst_cost": float(max(cost.values())), "gain": gain}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=50, help="queries per kind per rotation")
    parser.add_argument("--cache", type=Path, default=ROOT / "data" / "bench-cross" / f"media-{AUDIO}.npz")
    args = parser.parse_args()
    cache = cache_queries(args.per_kind, args.cache)
    scored = {(p, tuple(rs)): outcome(cache, p, list(rs)) for p in GRID for rs in itertools.combinations(ROTATIONS, 3)}
    held_out = []
    for rotations in itertools.combinations(ROTATIONS, 3):
        (left,) = set(ROTATIONS) - set(rotations)
        fitting = [p for p in GRID if scored[(p, rotations)]["worst_cost"] <= 0.02]
        chosen = max(fitting, key=lambda p: (scored[(p, rotations)]["worst_gain"], -sum(p)))
        test, default = outcome(cache, chosen, [left]), outcome(cache, DEFAULTS, [left])
        held_out.append(
            {
                "held_out": left,
                "chosen": chosen,
                "chosen_on_three": scored[(chosen, rotations)]["worst_gain"],
                "held_out_worst_gain": test["worst_gain"],
                "held_out_worst_cost": test["worst_cost"],
                "default_worst_gain": default["worst_gain"],
                "held_out_gain": test["gain"],
            }
        )
    lines = [
        "# Adaptive weights: powers chosen on three speaker rotations, scored on the fourth",
        "",
        f"Late fusion, z-score, weight = spread^a × clarity^b × coherence^c (defaults {DEFAULTS}, before 0.17 "
        f"{BEFORE}), "
        f"grid of {len(GRID)} powers; chosen for the best worst fused-minus-best-single with every noisy kind's "
        "cost ≤ 0.02. 50 queries a kind a rotation.",
        "",
        "| held-out rotation | powers chosen (a, b, c) | worst gain on the three | worst gain held out | held out, defaults | worst noise cost held out |",
        "|---|---|---|---|---|---|",
    ]
    for row in held_out:
        lines.append(
            f"| {row['held_out']} | {row['chosen']} | {row['chosen_on_three']:+.3f} | {row['held_out_worst_gain']:+.3f} | "
            f"{row['default_worst_gain']:+.3f} | {row['held_out_worst_cost']:+.3f} |"
        )
    defaults, every = DEFAULTS, list(ROTATIONS)
    # The rule the defaults follow: chosen on the tuning rotation alone, which the other benchmarks do not
    # report, keeping noise out with the voice detector, without it (an audio encoder that cannot tell), and
    # by the weights alone (no screen either): each layer of the defeat of a useless input holds on its own
    reported = [r for r in ROTATIONS if r != TUNING]
    plain = cache_queries(args.per_kind, args.cache, detector=False)
    unscreened = cache_queries(args.per_kind, args.cache, detector=False, screen=False)
    caches = (cache, plain, unscreened)
    fitting = [p for p in GRID if max(outcome(c, p, [TUNING])["worst_cost"] for c in caches) <= 0.02]
    tuned = max(fitting or GRID, key=lambda p: (outcome(cache, p, [TUNING])["worst_gain"], -sum(p)))
    lines += [
        "",
        f"Chosen on rotation {TUNING} alone (the tuning rotation), with every noisy kind's cost ≤ 0.02 there with "
        f"the voice detector, without it, and with no screen at all ({len(fitting)} of {len(GRID)} fit); "
        "scored on the other three:",
        "",
        "| powers (a, b, c) | worst gain, tuning rotation | worst gain, the other three | "
        + " | ".join(MULTI)
        + " | worst noise cost | no detector | no screen |",
        "|---|---|---|" + "---|" * len(MULTI) + "---|---|---|",
    ]
    for powers in dict.fromkeys((tuned, defaults, BEFORE)):
        on, off = outcome(cache, powers, [TUNING]), outcome(cache, powers, reported)
        gains = " | ".join(f"{off['gain'][k]:+.3f}" for k in MULTI)
        costs = " | ".join(f"{outcome(c, powers, reported)['worst_cost']:+.3f}" for c in caches)
        lines.append(
            f"| {powers}{' (defaults)' if powers == defaults else ' (before 0.17)' if powers == BEFORE else ''} | "
            f"{on['worst_gain']:+.3f} | "
            f"{off['worst_gain']:+.3f} | {gains} | {costs} |"
        )
    alternatives = {"defaults": outcome(cache, defaults, every)}
    for part, name in (([TUNING], "tuning rotation"), (reported, "other three")):
        alternatives[f"defaults, {name} only"] = outcome(cache, defaults, part)
        alternatives[f"before 0.20 (coherence as a share of 1, no agreement), {name} only"] = outcome(
            cache, defaults, part, as_before
        )
        for power in (0.0, 0.5, 2.0):
            alternatives[f"agreement^{power:g}, {name} only"] = outcome(cache, defaults, part, agreement_at(power))
    for n in (10, 30, 50):
        alternatives[f"only the most confident unit's best {n}"] = outcome(cache, defaults, every, anchor_at(n))
    for n in (30, 50):
        alternatives[f"weights x agreement with the other units' best {n}"] = outcome(
            cache, defaults, every, agree_at(n)
        )
    lines += [
        "",
        "Alternatives at the default powers, all four rotations (mean fused minus best single per kind):",
        "",
        "| method | worst | " + " | ".join(MULTI) + " | worst noise cost |",
        "|---|---|" + "---|" * len(MULTI) + "---|",
    ]
    for name, result in alternatives.items():
        gains = " | ".join(f"{result['gain'][k]:+.3f}" for k in MULTI)
        lines.append(f"| {name} | {result['worst_gain']:+.3f} | {gains} | {result['worst_cost']:+.3f} |")
    lines += [
        "",
        "Does a predictor tell a good recording from a bad one? Correlation, per query, between the audio "
        "query's own P@10 and the audio unit's predictors in its image+audio query:",
        "",
        "| rotation | audio P@10 | spread | clarity | coherence |",
        "|---|---|---|---|---|",
    ]
    for r in ROTATIONS:
        alone = [p10(q, defaults) for q in cache if q["rotation"] == r and q["kind"] == "audio"]
        pairs = [q for q in cache if q["rotation"] == r and q["kind"] == "image+audio"]  # the same bases, in order
        kept = [
            (a, q["features"][q["modalities"].index("audio")])
            for a, q in zip(alone, pairs)
            if "audio" in q["modalities"]
        ]
        corr = [np.corrcoef([a for a, _ in kept], [f[i] for _, f in kept])[0, 1] for i in range(3)]
        lines.append(f"| {r} | {np.mean(alone):.3f} | " + " | ".join(f"{c:+.2f}" for c in corr) + " |")
    report = {"held_out": held_out, "grid": len(GRID), "alternatives": alternatives}
    write_report("adaptive_powers", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
