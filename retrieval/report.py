"""The strategies' comparison table, measured on the open collection instead of rated with stars.

Per method: p50 search latency, P@k and nDCG@k per query kind (from labelled queries, when there are
some), quality with one query modality missing (the two-modality query kinds against the three-modality
one), training time, the size on disk of the indexes it searches, and what adding a modality costs.
`python -m retrieval report` prints it and writes JSON, markdown and altair charts; the UI's Strategies
page shows the same.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.evaluate import EvalQuery, Evaluation, evaluate, run_methods
from retrieval.fusion import list_strategies, strategy_class
from retrieval.results import Method

if TYPE_CHECKING:
    import altair as alt

    from retrieval.engine import SearchEngine

FULL_KIND = "image+audio+text"
ONE_MISSING_KINDS = ("image+audio", "image+text", "audio+text")


@dataclass
class StrategyRow:
    method: str
    strategy: str
    fuses_at: str
    learns: bool
    p50_ms: float | None = None
    quality: dict[str, dict[str, float]] = field(default_factory=dict)  # query kind -> {"P@k", "nDCG@k"}
    full_ndcg: float | None = None  # nDCG@k of queries with all three modalities
    one_missing_ndcg: float | None = None  # mean nDCG@k of the two-modality kinds
    train_seconds: float | None = None
    index_bytes: int | None = None
    new_modality: str = ""
    error: str | None = None


@dataclass
class StrategyReport:
    k: int
    queries: dict[str, int]
    rows: list[StrategyRow]
    # the evaluation behind the quality columns (its significance tests included); None without labels
    evaluation: Evaluation | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "queries": self.queries, "rows": [asdict(r) for r in self.rows]}

    def to_markdown(self) -> str:
        k = self.k
        lines = [
            f"| method | fuses | learns | p50 ms | nDCG@{k} all | nDCG@{k} all three | one missing | "
            "training s | index MB | adding a modality |",
            "|---" * 10 + "|",
        ]
        for r in self.rows:
            cells = [
                r.method,
                f"at {r.fuses_at} time",
                "yes" if r.learns else "no",
                _fmt(r.p50_ms, ".2f"),
                _fmt(r.quality.get("all", {}).get(f"nDCG@{k}"), ".3f"),
                _fmt(r.full_ndcg, ".3f"),
                _fmt(r.one_missing_ndcg, ".3f"),
                _fmt(r.train_seconds, ".1f"),
                _fmt(r.index_bytes / 1e6 if r.index_bytes is not None else None, ".2f"),
                r.error or r.new_modality,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def new_modality_cost(strategy: str, learns: bool, fuses_at: str, trained: bool = False) -> str:
    """What adding a modality to the collection forces, from how the strategy fuses (nothing is re-encoded:
    every modality's vectors are kept)."""
    if fuses_at == "query":
        return "no re-indexing: one more index for the new field"
    if learns or trained:
        return "retrain, then rebuild the fused index from stored vectors"
    return "rebuild the fused index from stored vectors (no re-encoding)"


def index_bytes(engine: SearchEngine, used: list[tuple[str, str]]) -> int | None:
    """Bytes on disk of the catalogued index files in `used` (None where one is not a local file)."""
    total = 0
    for strategy, key in dict.fromkeys(used):
        location = engine.index_location(strategy, key)
        if location is None or not Path(location).is_file():
            return None
        total += Path(location).stat().st_size
    return total


def training_seconds(engine: SearchEngine, method: Method) -> float | None:
    """Seconds the method's checkpoint took to train (written beside it by `retrieval.train`)."""
    file = method.params.get("checkpoint") or engine.models.latest(method.strategy)
    curve = Path(f"{file}.loss.json") if file else None
    if curve is None or not curve.is_file():
        return None
    return json.loads(curve.read_text()).get("seconds")


def default_methods(engine: SearchEngine) -> list[Method]:
    """Every registered strategy with its defaults, and every saved preset."""
    methods = [Method(name, name) for name in list_strategies()]
    return methods + [engine.preset(name) for name in engine.presets()]


def strategy_report(
    engine: SearchEngine,
    queries: list[EvalQuery],
    qrels: dict[str, dict[str, int]] | None = None,
    methods: list[Method] | None = None,
    k: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
) -> StrategyReport:
    """Measure each method on `queries` (quality only where `qrels` is given). The queries are encoded once
    and every method that can run is evaluated in one pass; one that cannot (untrained) gets an error."""
    methods = methods or default_methods(engine)
    rows: dict[str, StrategyRow] = {}
    ready: list[Method] = []
    for n, method in enumerate(methods):
        if progress:
            progress(f"prepare {method.label}", n, len(methods) + 1)
        cls = strategy_class(method.strategy)
        trained = bool(method.params.get("checkpoint"))
        row = rows[method.label] = StrategyRow(method.label, method.strategy, cls.fuses_at, cls.learns or trained)
        row.new_modality = new_modality_cost(method.strategy, cls.learns, cls.fuses_at, trained)
        try:
            row.index_bytes = _prepare(engine, method)
        except (ValueError, LookupError) as exc:  # an untrained strategy: reported, not raised
            row.error = str(exc)
            continue
        row.train_seconds = training_seconds(engine, method) if row.learns else None
        ready.append(method)
    if progress:
        progress("search", len(methods), len(methods) + 1)
    evaluation = _measure(engine, ready, queries, qrels, k, rows) if ready and queries else None
    if progress:
        progress("done", len(methods) + 1, len(methods) + 1)
    kinds: dict[str, int] = {}
    for q in queries:
        kinds[q.kind] = kinds.get(q.kind, 0) + 1
    return StrategyReport(k, {"all": len(queries), **kinds}, list(rows.values()), evaluation)


def _prepare(engine: SearchEngine, method: Method) -> int | None:
    """Build or load the method's indexes, and return their size on disk."""
    strategy = engine.strategy(method.strategy, **method.params)
    if strategy.learns:
        strategy.checkpoint  # noqa: B018 (raises, with how to train it, when there is none)
    return index_bytes(engine, engine.prepare_method(method))


def _measure(
    engine: SearchEngine,
    methods: list[Method],
    queries: list[EvalQuery],
    qrels: dict[str, dict[str, int]] | None,
    k: int,
    rows: dict[str, StrategyRow],
) -> Evaluation | None:
    evaluation = None
    if qrels:
        evaluation = evaluate(engine, queries, qrels, methods, k=k)
        latency = {m: v["p50"] for m, v in evaluation.latency_ms.items()}
        for label, by_kind in evaluation.table.items():
            for kind, values in by_kind.items():
                rows[label].quality[kind] = {f"P@{k}": values[f"precision@{k}"], f"nDCG@{k}": values[f"ndcg@{k}"]}
    else:
        _, seconds = run_methods(engine, queries, methods, depth=k)
        latency = {m: round(1000 * statistics.median(v), 2) for m, v in seconds.items()}
    for method in methods:
        row = rows[method.label]
        row.p50_ms = latency[method.label]
        ndcg = {kind: v[f"nDCG@{k}"] for kind, v in row.quality.items()}
        row.full_ndcg = ndcg.get(FULL_KIND)
        missing = [ndcg[kind] for kind in ONE_MISSING_KINDS if kind in ndcg]
        row.one_missing_ndcg = round(statistics.mean(missing), 4) if missing else None
    return evaluation


MISSING_BARS = ["all three modalities", "one missing"]  # a method's two bars, in this order
BAR_STEP = 28  # px per method: a bar (90 % of it) or a heat-map row stays readable with any number of methods


def report_charts(report: StrategyReport) -> dict[str, alt.Chart]:
    """Latency, quality per query kind, and quality with one modality missing (altair)."""
    import altair as alt
    import pandas as pd

    k, ok = report.k, [r for r in report.rows if r.error is None]
    order = [r.method for r in ok]
    latency = pd.DataFrame([{"method": r.method, "p50 ms": r.p50_ms} for r in ok])
    charts = {
        "latency": alt.Chart(latency, title="p50 search latency")
        .mark_bar()
        .encode(
            x=alt.X("p50 ms:Q"),
            y=alt.Y("method:N", sort=order, title=None),
            color=alt.Color("method:N", sort=order, legend=None),
            tooltip=["method", alt.Tooltip("p50 ms:Q", format=".2f")],
        )
        .properties(width=360, height=alt.Step(BAR_STEP))
    }
    quality = pd.DataFrame(
        [
            {"method": r.method, "kind": kind, f"nDCG@{k}": v[f"nDCG@{k}"], f"P@{k}": v[f"P@{k}"]}
            for r in ok
            for kind, v in r.quality.items()
        ],
        columns=["method", "kind", f"nDCG@{k}", f"P@{k}"],
    )
    if len(quality):
        kinds = [kind for kind in report.queries if kind in set(quality["kind"])]
        charts["quality"] = (
            alt.Chart(quality, title=f"nDCG@{k} by query kind")
            .mark_rect()
            .encode(
                x=alt.X("kind:N", sort=kinds, title="query kind"),
                y=alt.Y("method:N", sort=order, title=None),
                color=alt.Color(f"nDCG@{k}:Q", scale=alt.Scale(domain=[0, 1], scheme="viridis")),
                tooltip=[
                    "method",
                    "kind",
                    alt.Tooltip(f"nDCG@{k}:Q", format=".3f"),
                    alt.Tooltip(f"P@{k}:Q", format=".3f"),
                ],
            )
            .properties(width=alt.Step(60), height=alt.Step(BAR_STEP))
        )
        missing = pd.DataFrame(
            [
                {"method": r.method, "queries": label, f"nDCG@{k}": value}
                for r in ok
                for label, value in ((MISSING_BARS[0], r.full_ndcg), (MISSING_BARS[1], r.one_missing_ndcg))
                if value is not None
            ],
            columns=["method", "queries", f"nDCG@{k}"],
        )
        # grouped bars, a method a row, its name written across: a facet's row names were turned on their side
        # and ran into each other ("learned_eacross_attention": walkthrough 4, #9)
        charts["one_missing"] = (
            alt.Chart(missing, title="Quality with one query modality missing")
            .mark_bar()
            .encode(
                x=alt.X(f"nDCG@{k}:Q", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("method:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
                yOffset=alt.YOffset("queries:N", sort=MISSING_BARS),
                color=alt.Color("queries:N", sort=MISSING_BARS, legend=alt.Legend(orient="bottom")),
                tooltip=["method", "queries", alt.Tooltip(f"nDCG@{k}:Q", format=".3f")],
            )
            .properties(width=300, height=alt.Step(BAR_STEP // 2))  # a step per bar: two bars a method
        )
    return charts


def sample_queries(engine: SearchEngine, n: int = 20, seed: int = 0) -> list[EvalQuery]:
    """Without labelled queries, `n` of the collection's items (seeded) searched with their own media:
    enough for latency and index size, not for quality."""
    import random

    keys = engine.catalogue.item_keys()
    chosen = random.Random(seed).sample(sorted(keys), min(n, len(keys)))
    queries = engine.catalogue.item_queries(chosen)
    return [EvalQuery(keys[i], q, exclude=keys[i]) for i, q in queries.items() if q.present()]


# Learned strategies by mean P@10 over the seven query kinds of docs/benchmarks/notes/fusion_digits.md (test
# split, not trained on): gated 0.863, learned early 0.854, cross-attention 0.848.
LEARNED_PREFERENCE = ("gated", "learned_early", "cross_attention")


def best_learned(engine: SearchEngine) -> str | None:
    """The learned strategy to show first: the best-measured one that has a checkpoint on this collection."""
    return next((name for name in LEARNED_PREFERENCE if engine.models.latest(name) is not None), None)


def per_kind(queries: list[EvalQuery], n: int) -> list[EvalQuery]:
    """The first `n` queries of each kind (a quicker report; the file's order is kept)."""
    counts: dict[str, int] = {}
    kept = []
    for q in queries:
        counts[q.kind] = counts.get(q.kind, 0) + 1
        if counts[q.kind] <= n:
            kept.append(q)
    return kept
