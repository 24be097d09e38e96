"""Tune late fusion on labelled queries: query weights, normalisation, weighted sum versus RRF and its k.

Each tuning query is searched once; every channel's exact scores over the candidate union are cached,
so a grid of hundreds of settings costs milliseconds each. The best setting on the tuning split is then
measured against the defaults on the held-out split with ranx, and saved as a named preset.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.engine import SearchEngine, check_preset_name
from retrieval.errors import InvalidInputError
from retrieval.evaluate import EvalQuery, Evaluation, evaluate
from retrieval.fusion.scoring import NORMALISATIONS, normalise, ranks, rrf
from retrieval.results import Method

WEIGHTS = (0.25, 0.5, 1.0, 2.0)
RRF_KS = (10.0, 30.0, 60.0, 100.0)


@dataclass
class CachedQuery:
    qid: str
    keys: list[str]
    channels: list[tuple[str, np.ndarray, np.ndarray, float]]  # (query modality, raw scores, present, share)
    relevant: np.ndarray  # bool per candidate


@dataclass
class TuneResult:
    best: Method
    tuning_score: float
    grid_size: int
    held_out: Evaluation
    gain: dict[str, float] = field(default_factory=dict)


def ndcg_at(order: np.ndarray, relevant: np.ndarray, total_relevant: int, k: int) -> float:
    """Binary-relevance nDCG@k (checked against ranx in the tests)."""
    gains = relevant[order[:k]].astype(float)
    dcg = float((gains / np.log2(np.arange(2, len(gains) + 2))).sum())
    ideal = float((1 / np.log2(np.arange(2, min(total_relevant, k) + 2))).sum())
    return dcg / ideal if ideal else 0.0


def cache_queries(
    engine: SearchEngine, queries: list[EvalQuery], qrels: dict[str, dict[str, int]], candidates: int = 100
) -> list[tuple[CachedQuery, int]]:
    keys = engine.catalogue.item_keys()
    cached = []
    for q in queries:
        encoded = engine.encode_query(q.query)
        ids = np.array([i for i in engine.candidates(encoded, candidates) if keys.get(i) != q.exclude])
        channels = engine.channel_scores(encoded, ids)
        relevant = qrels.get(q.qid, {})
        cached.append(
            (
                CachedQuery(
                    q.qid, [keys[i] for i in ids], channels, np.array([relevant.get(keys[i], 0) > 0 for i in ids])
                ),
                len(relevant),
            )
        )
    return cached


def score_setting(cached: list[tuple[CachedQuery, int]], setting: dict[str, Any], k: int) -> float:
    values = []
    for query, total_relevant in cached:
        if not total_relevant or not query.keys:
            values.append(0.0)
            continue
        fused = np.zeros(len(query.keys))
        for modality, raw, present, share in query.channels:  # as late fuses its units
            part = (
                rrf(ranks(raw, present), setting["rrf_k"])
                if setting["fusion"] == "rrf"
                else normalise(raw, present, setting["normalisation"])
            )
            fused += share * setting["weights"].get(modality, 1.0) * part
        values.append(ndcg_at(np.argsort(-fused, kind="stable"), query.relevant, total_relevant, k))
    return float(np.mean(values))


def grid(modalities: list[str]) -> list[dict[str, Any]]:
    weightings = [dict(zip(modalities, combo)) for combo in itertools.product(WEIGHTS, repeat=len(modalities))]
    settings = [
        {"fusion": "sum", "normalisation": n, "rrf_k": 60.0, "weights": w} for n in NORMALISATIONS for w in weightings
    ]
    settings += [
        {"fusion": "rrf", "normalisation": "none", "rrf_k": rk, "weights": w} for rk in RRF_KS for w in weightings
    ]
    return settings


def tune(
    engine: SearchEngine,
    queries: list[EvalQuery],
    qrels: dict[str, dict[str, int]],
    name: str,
    k: int = 10,
    held_out: float = 0.5,
    seed: int = 0,
) -> TuneResult:
    """Pick the best late-fusion setting on a tuning split, report it on the held-out split, save it."""
    check_preset_name(name)  # before the search, not after it
    shuffled = list(queries)
    random.Random(seed).shuffle(shuffled)
    cut = max(1, int(len(shuffled) * (1 - held_out)))
    tuning, testing = shuffled[:cut], shuffled[cut:]
    if not testing:
        raise InvalidInputError(f"{len(queries)} queries are too few to hold some out; give more")
    cached = cache_queries(engine, tuning, qrels)
    modalities = sorted({c[0] for q, _ in cached for c in q.channels})
    settings = grid(modalities)
    scored = [(score_setting(cached, s, k), n, s) for n, s in enumerate(settings)]
    best_score, _, best = max(scored, key=lambda t: (t[0], -t[1]))
    method = Method(
        name,
        "late",
        # the grid scores fixed weights, so the preset keeps them fixed (late's default is adaptive)
        {
            "fusion": best["fusion"],
            "normalisation": best["normalisation"],
            "rrf_k": best["rrf_k"],
            "weighting": "fixed",
        },
        best["weights"],
    )
    baselines = [Method("late (default)", "late"), Method("late (RRF k=60)", "late", {"fusion": "rrf"})]
    report = evaluate(engine, testing, qrels, [method, *baselines], k=k)
    metric = f"ndcg@{k}"
    gain = {
        b.label: round(report.table[name]["all"][metric] - report.table[b.label]["all"][metric], 4) for b in baselines
    }
    engine.save_preset(
        method,
        {
            "tuning_" + metric: round(best_score, 4),
            "held_out": report.to_dict(),
            "gain_" + metric: gain,
            "tuning_queries": len(tuning),
            "held_out_queries": len(testing),
        },
    )
    return TuneResult(method, best_score, len(settings), report, gain)
