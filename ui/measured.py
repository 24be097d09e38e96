"""What the Strategies and Evaluate pages measure on, and the measurements kept between runs.

One query set: every query of the collection's labelled file (`queries_file`), relevant = the items sharing
the query's label, and one test: Fisher's paired randomisation test, seeded, the same `Evaluation` for both
pages. Strategies had taken the first 10 queries of each kind and Evaluate all of them, so their numbers
disagreed (issue 37, walkthrough #11).

A measurement is kept per engine (a collection opened), queries file (its path and time of change), label,
k and the models answering (a learned method's checkpoint), in the server process: a second look at either
page, in any session, costs nothing until one of those changes (walkthrough #18: 8-15 s each time).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import streamlit as st

from retrieval.evaluate import PERMUTATIONS, SIGNIFICANCE, EvalQuery, Evaluation, evaluate, label_qrels, load_queries
from retrieval.report import StrategyReport, default_methods, strategy_report
from retrieval.results import Method
from ui.results_cache import method_key

TEST = f"Fisher's paired randomisation test ({PERMUTATIONS:,} swaps, seeded), significant at p < {SIGNIFICANCE}"
Progress = Callable[[str, int, int], None]
KEPT = 16  # measurements: a report or an evaluation is a few hundred KB


def query_set(path: Path, count: int, label_field: str | None) -> str:
    """Which queries a page measured on, and what counts as relevant (markdown)."""
    relevant = (
        f"relevant = the items with the query's `{label_field}`" if label_field else "relevance from a qrels file"
    )
    return f"Queries: all {count} of `{path}` (the collection's labelled queries); {relevant}."


def _stamp(path: Path) -> float:
    return path.stat().st_mtime if path.is_file() else 0.0


def labelled(engine: Any, path: Path, label_field: str) -> tuple[list[EvalQuery], dict[str, dict[str, int]]]:
    queries = load_queries(path, label_field)
    return queries, label_qrels(engine, queries, label_field)


def report(engine: Any, path: Path | None, label_field: str | None, k: int, progress: Progress) -> StrategyReport:
    """Every strategy measured on the labelled queries (or, without, latency and sizes from sampled items)."""
    key = _report_key(engine, path, label_field, k)
    return _kept(key, lambda: _report(engine, key[2], label_field, k, progress))


def kept_report(engine: Any, path: Path | None, label_field: str | None, k: int) -> StrategyReport | None:
    """The report `report` would return, if this server process has measured it already; else None."""
    kept = _store().get(_report_key(engine, path, label_field, k))
    return None if kept is None else kept[0]


def report_made(report: StrategyReport) -> tuple[datetime, str | None, int] | None:
    """When a kept `report` was measured (UTC), with which label field and k; None if it is not kept."""
    for key, (value, made) in _store().items():
        if value is report:
            return made, key[3], key[4]
    return None


def _report_key(engine: Any, path: Path | None, label_field: str | None, k: int) -> tuple:
    keys = tuple(method_key(m, engine) for m in default_methods(engine))
    where = (str(path), _stamp(path)) if path else None
    return ("report", id(engine), where, label_field, k, keys)


def _report(
    engine: Any,
    where: tuple[str, float] | None,
    label_field: str | None,
    k: int,
    progress: Progress,
) -> StrategyReport:
    from retrieval.report import sample_queries

    if where and label_field:
        queries, qrels = labelled(engine, Path(where[0]), label_field)
        return strategy_report(engine, queries, qrels, k=k, progress=progress)
    return strategy_report(engine, sample_queries(engine), None, k=k, progress=progress)


def evaluation(
    engine: Any,
    path: Path,
    label_field: str,
    methods: list[Method],
    k: int,
    progress: Progress,
) -> Evaluation:
    """The sidebar's methods evaluated on the labelled queries, kept like `report`."""
    keys = tuple(method_key(m, engine) for m in methods)
    key = ("evaluation", id(engine), str(path), _stamp(path), label_field, keys, k)

    def measure() -> Evaluation:
        queries, qrels = labelled(engine, path, label_field)
        return evaluate(engine, queries, qrels, methods, k=k, progress=progress)

    return _kept(key, measure)


@st.cache_resource(show_spinner=False)
def _store() -> OrderedDict:
    """The measurements kept in this server process (a cached function could not draw its progress bar)."""
    return OrderedDict()


def _kept(key: tuple, measure: Callable[[], Any]) -> Any:
    """The measurement kept under `key` (measured now if none is), kept with the time it was made."""
    store = _store()
    if key not in store:
        store[key] = (measure(), datetime.now(UTC))
        while len(store) > KEPT:
            store.popitem(last=False)
    store.move_to_end(key)
    return store[key][0]
