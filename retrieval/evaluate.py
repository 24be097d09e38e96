"""Evaluate fusion methods on a labelled query set: metrics per method and query kind, with significance.

Metrics and the paired randomisation test come from ranx itself (no home-made re-implementation):
P@k, Recall@k, MRR, nDCG@k and MAP@k. Relevance is a TREC qrels file, or "items sharing this label".
Document ids are item keys, so qrels written by people stay readable.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.engine import SearchEngine
from retrieval.errors import InvalidInputError
from retrieval.media import MODALITIES
from retrieval.results import Method, QueryInput

SIGNIFICANCE = 0.05  # the p under which a difference between two methods is called significant


@dataclass
class EvalQuery:
    qid: str
    query: QueryInput
    label: str | None = None
    exclude: str | None = None  # an item key left out of the results (the query's own item)

    @property
    def kind(self) -> str:
        return "+".join(m for m in MODALITIES if getattr(self.query, m) is not None)


@dataclass
class Evaluation:
    k: int
    metrics: list[str]
    table: dict[str, dict[str, dict[str, float]]]  # method -> query kind (and "all") -> metric -> value
    pvalues: dict[str, dict[str, dict[str, float]]]  # metric -> method -> other method -> p
    latency_ms: dict[str, dict[str, float]]
    queries: dict[str, int]  # query kind -> count
    runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "runs"}

    def p_value(self, metric: str, a: str, b: str) -> float:
        """The paired test's p for methods a and b on `metric` (kept under one of the two orders); NaN if none."""
        by_method = self.pvalues.get(metric, {})
        p = by_method.get(a, {}).get(b)
        return float(by_method.get(b, {}).get(a, float("nan")) if p is None else p)

    def significant(self, metric: str, alpha: float = SIGNIFICANCE) -> list[tuple[str, str, float]]:
        """(better, worse, p) for each pair of methods whose difference on `metric` (all queries) is
        significant, the smallest p first."""
        overall = {m: by_kind["all"][metric] for m, by_kind in self.table.items()}
        pairs = []
        for a, b in combinations(overall, 2):
            p = self.p_value(metric, a, b)
            if p < alpha:  # NaN (no test) is never significant
                better, worse = (a, b) if overall[a] >= overall[b] else (b, a)
                pairs.append((better, worse, p))
        return sorted(pairs, key=lambda pair: pair[2])

    def unbeaten(self, metric: str, alpha: float = SIGNIFICANCE) -> list[str]:
        """The methods no other is significantly better than on `metric`, highest first: with more than one,
        none of them may be called the best."""
        overall = {m: by_kind["all"][metric] for m, by_kind in self.table.items()}
        beaten = {worse for _, worse, _ in self.significant(metric, alpha)}
        return sorted((m for m in overall if m not in beaten), key=lambda m: -overall[m])

    def to_markdown(self, metric_order: list[str] | None = None) -> str:
        kinds = ["all"] + [k for k in self.queries if k != "all"]
        lines = ["Queries: " + ", ".join(f"{k} {n}" for k, n in self.queries.items()) + ".", ""]
        for metric in metric_order or self.metrics:
            lines += [
                f"### {metric}",
                "",
                "| method | " + " | ".join(kinds) + " | p50 ms |",
                "|---" * (len(kinds) + 2) + "|",
            ]
            for method, by_kind in self.table.items():
                cells = [f"{by_kind.get(kind, {}).get(metric, float('nan')):.3f}" for kind in kinds]
                lines.append(f"| {method} | " + " | ".join(cells) + f" | {self.latency_ms[method]['p50']} |")
            lines.append("")
        methods = list(self.table)
        if len(methods) > 1:
            lines += [
                "Paired randomisation test (ranx, Fisher), p-values on all queries:",
                "",
                "| metric | "
                + " | ".join(f"{a} vs {b}" for i, a in enumerate(methods) for b in methods[i + 1 :])
                + " |",
                "|---" * (1 + len(methods) * (len(methods) - 1) // 2) + "|",
            ]
            for metric in self.metrics:
                cells = [f"{self.pvalues[metric][a][b]:.3g}" for i, a in enumerate(methods) for b in methods[i + 1 :]]
                lines.append(f"| {metric} | " + " | ".join(cells) + " |")
            lines.append("")
        return "\n".join(lines)


def load_queries(path: str | Path, label_field: str | None = None) -> list[EvalQuery]:
    """JSONL rows with `id` and any of `text`, `image`, `audio` (paths relative to the file), plus an optional
    label (`label` or the label field's own name) and `exclude` (an item key)."""
    path = Path(path)
    queries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInputError(f"{path}:{number}: a query must be a JSON object, not {type(row).__name__}")
        if any(not isinstance(row.get(m), (str, type(None))) for m in ("image", "audio", "text")):
            raise InvalidInputError(f"{path}:{number}: text, image and audio must be strings")

        def media(name: str, row: dict = row) -> Path | None:
            value = row.get(name)
            return None if value in (None, "") else (path.parent / value).resolve()

        query = QueryInput(text=row.get("text") or None, image=media("image"), audio=media("audio"))
        if not query.present():
            raise InvalidInputError(f"{path}:{number}: a query needs text, image or audio")
        label = row.get("label", row.get(label_field) if label_field else None)
        queries.append(
            EvalQuery(str(row.get("id", number)), query, None if label is None else str(label), row.get("exclude"))
        )
    return queries


def load_trec_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """TREC qrels: `query_id iteration item_key relevance` per line."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 4:
            raise InvalidInputError(f"{path}:{number}: expected 'query iteration item relevance'")
        qrels.setdefault(parts[0], {})[parts[2]] = int(parts[3])
    return qrels


def label_qrels(engine: SearchEngine, queries: list[EvalQuery], label_field: str) -> dict[str, dict[str, int]]:
    """Items whose `label_field` equals the query's label are relevant (the excluded item is not)."""
    metadata = engine.catalogue.metadata()
    keys = engine.catalogue.item_keys()
    by_label: dict[str, list[str]] = {}
    for item_id, meta in metadata.items():
        value = (meta or {}).get(label_field)
        if value not in (None, "") and item_id in keys:
            by_label.setdefault(str(value), []).append(keys[item_id])
    missing = [q.qid for q in queries if q.label is None]
    if missing:
        raise InvalidInputError(f"queries {missing[:5]} carry no label; add 'label' (or '{label_field}') to each row")
    return {q.qid: {key: 1 for key in by_label.get(q.label or "", []) if key != q.exclude} for q in queries}


def run_methods(
    engine: SearchEngine,
    queries: list[EvalQuery],
    methods: list[Method],
    depth: int = 100,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, list[float]]]:
    """Ranked item keys with scores per method and query, plus each search's latency.

    `progress(stage, done, total)` is called after each query: stage "encoding queries", then each method's label.
    """
    keys = engine.catalogue.item_keys()
    encoded = {}
    for n, q in enumerate(queries, start=1):
        encoded[q.qid] = engine.encode_query(q.query)
        if progress:
            progress("encoding queries", n, len(queries))
    runs: dict[str, dict[str, dict[str, float]]] = {}
    latency: dict[str, list[float]] = {}
    for method in methods:
        method = engine.pinned(method)  # fails before timing; no checkpoint lookup inside the timed loop
        runs[method.label], latency[method.label] = {}, []
        for n, q in enumerate(queries, start=1):
            started = time.perf_counter()
            scored = engine.scored(method, encoded[q.qid], depth + 1)
            latency[method.label].append(time.perf_counter() - started)
            ranked = [s for s in scored if keys.get(s.item_id) != q.exclude][:depth]
            # ranks, not raw scores: ties and negative scores would otherwise confuse the evaluator
            runs[method.label][q.qid] = {
                keys[s.item_id]: float(len(ranked) - n) for n, s in enumerate(ranked) if s.item_id in keys
            } or {"__none__": 0.0}
            if progress:
                progress(method.label, n, len(queries))
    return runs, latency


def evaluate(
    engine: SearchEngine,
    queries: list[EvalQuery],
    qrels: dict[str, dict[str, int]],
    methods: list[Method],
    k: int = 10,
    depth: int = 100,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    metrics = ranx_metrics(k)
    usable = [q for q in queries if qrels.get(q.qid)]
    if not usable:
        raise InvalidInputError("no query has a relevant item: check the qrels or the label field")
    runs, latency = run_methods(engine, usable, methods, depth, progress)
    kinds = {"all": usable}
    for q in sorted(usable, key=lambda q: (q.kind.count("+"), [MODALITIES.index(m) for m in q.kind.split("+")])):
        kinds.setdefault(q.kind, []).append(q)
    qids = [q.qid for q in usable]
    labels = [m.label for m in methods]
    per_query, pvalues = score_runs(
        {i: qrels[i] for i in qids}, {m: {i: runs[m][i] for i in qids} for m in labels}, metrics
    )
    # a kind's value is the mean over its queries, as ranx's own mean is
    table = {
        label: {
            kind: {m: round(statistics.fmean(per_query[label][m][q.qid] for q in subset), 4) for m in metrics}
            for kind, subset in kinds.items()
        }
        for label in labels
    }
    latency_ms = {
        m: {"p50": round(1000 * statistics.median(v), 2), "p99": round(1000 * sorted(v)[int(0.99 * (len(v) - 1))], 2)}
        for m, v in latency.items()
    }
    return Evaluation(k, metrics, table, pvalues, latency_ms, {k_: len(v) for k_, v in kinds.items()}, runs)


PERMUTATIONS = 10_000  # a p near 0.05 is then known to about ±0.004


def paired_randomisation_p(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Fisher's paired randomisation test: the share of random swaps of the two methods' per-query values (a sign
    flip of each query's difference) whose mean difference is at least the observed one. Seeded: the same two
    runs always give the same p."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if diff.size == 0:
        return float("nan")
    observed = abs(diff.mean()) - 1e-12  # float sums of the same values in another order
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, 1000):  # 1,000 swaps at a time: bounded memory for many queries
        count = min(1000, permutations - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(count, diff.size))
        hits += int((np.abs((signs * diff).mean(axis=1)) >= observed).sum())
    return hits / permutations


def ranx_metrics(k: int) -> list[str]:
    return [f"precision@{k}", f"recall@{k}", "mrr", f"ndcg@{k}", f"map@{k}"]


def score_runs(
    judged: dict[str, dict[str, int]], runs: dict[str, dict[str, dict[str, float]]], metrics: list[str]
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, dict[str, dict[str, float]]]]:
    """ranx's per-query value of every metric for every run (run label -> metric -> qid -> value), and with
    two runs or more the paired randomisation test's p-values (metric -> label -> other label -> p).

    Each run is scored once, per query (one ranx evaluation per method and query kind spent 6 s of a 300-item
    demo's evaluation converting and checking the same runs again).
    """
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    judged, runs = _fixed_width_ids(judged, runs)
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for label, ranked in runs.items():
        run = Run(ranked)
        ranx_evaluate(Qrels(judged), run, metrics, return_mean=False)  # per query, kept in run.scores
        per_query[label] = {m: dict(run.scores[m]) for m in metrics}
    pvalues: dict[str, dict[str, dict[str, float]]] = {m: {} for m in metrics}
    # Fisher's paired randomisation test, ours: ranx's draws its permutations in parallel numba threads, so the
    # same pair read p 0.014 on the Strategies page and 0.017 on Evaluate (issue 37); seeded here, a pair's p
    # depends on its two runs alone
    labels = list(runs)
    for n, a in enumerate(labels):
        for b in labels[n + 1 :]:
            for metric in metrics:
                qids = sorted(per_query[a][metric].keys() & per_query[b][metric].keys())
                p = paired_randomisation_p(
                    np.array([per_query[a][metric][q] for q in qids]), np.array([per_query[b][metric][q] for q in qids])
                )
                pvalues[metric].setdefault(a, {})[b] = p
                pvalues[metric].setdefault(b, {})[a] = p
    return per_query, pvalues


RANX_ID_WIDTH = 12  # characters: up to 10**12 distinct documents in one evaluation


def _fixed_width_ids(
    judged: dict[str, dict[str, int]], runs: dict[str, dict[str, dict[str, float]]]
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, dict[str, float]]]]:
    """The same qrels and runs with every document id replaced by a number of RANX_ID_WIDTH digits.

    ranx stores a run's document ids in numpy arrays as wide as its longest id, and numba compiles its
    containers again for every new width: ~40 s of the first evaluation of each collection on this 2-core
    machine (the demo's evaluation tests: 70 s on a fresh cache after `warm_up`, 32 s warm). One width for
    every collection keeps what `warm_up` compiled valid; the metrics see the same relevance and order.
    """
    code: dict[str, str] = {}

    def coded(docs: dict[str, Any]) -> dict[str, Any]:
        return {code.setdefault(doc, f"{len(code):0{RANX_ID_WIDTH}d}"): value for doc, value in docs.items()}

    return (
        {qid: coded(docs) for qid, docs in judged.items()},
        {label: {qid: coded(docs) for qid, docs in ranked.items()} for label, ranked in runs.items()},
    )


def warm_up() -> None:
    """Compile ranx's metrics, containers and test once, at install (scripts/setup.sh): numba caches the
    machine code in ranx's folder; compiling it on a first evaluation cost ~60 CPU-s on this 2-core machine."""
    judged = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    runs = {
        "x": {"q1": {"a": 0.9, "b": 0.5}, "q2": {"b": 0.8, "a": 0.1}},
        "y": {"q1": {"b": 0.7, "a": 0.2}, "q2": {"c": 0.6, "b": 0.4}},
    }
    with warnings.catch_warnings():  # ranx's own type-safety notes while numba compiles it
        warnings.simplefilter("ignore")
        score_runs(judged, runs, ranx_metrics(10))
