"""Search page: a text, an image, an audio clip (uploaded or recorded), any mix; results per method."""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import pandas as pd
import streamlit as st

from retrieval.compare import Comparison, compare_results
from retrieval.media import MediaError
from retrieval.plots import BUMP_STEP, bump_depth, bump_layout, bump_rows
from retrieval.results import Method, QueryInput, SearchResult
from ui import compare_view, detail, examples, explain, provenance, ties, weighing
from ui.cards import result_card
from ui.charts import EMPTY, draw_unfitted, template, with_rows
from ui.layout import folded_on_phone
from ui.plain import md
from ui.query import example_query, query_widgets, show_query, use_example
from ui.results_cache import cached_search, encoded_query
from ui.scores import learns, result_meaning
from ui.state import Settings, engine_for, queries_file

BUMP_FRAME = 150  # px of the bump chart's rank axis and the labels beside its last method


def render(settings: Settings) -> None:
    st.header("Search")
    engine = engine_for(settings.url, settings.collection)
    warm_up(settings.k)
    try:
        query = query_widgets(hears=engine.catalogue.keeps_transcripts)
    except MediaError as exc:
        st.error(f"That upload cannot be used: {md(exc.source)}: {md(exc.reason)}.")
        return
    example = None
    if st.session_state.get("example") is not None:
        found = example_query(engine, st.session_state["example"])
        if found is not None:
            example, query = found
    if not query.present():
        st.info(
            "Type a text, upload an image or an audio clip, or record one: any mix works. "
            "Each method below searches with everything you give, and you can compare them side by side."
        )
        examples.render(queries_file(), set(engine.catalogue.item_keys().values()))
        return
    box = show_query(query, example)
    if not settings.methods:
        st.warning("Choose at least one fusion method in the sidebar.")
        return
    with box:
        weighing.render(engine, settings.collection, query, settings.methods, settings.k, example is not None)
    results = show_results(engine, query, settings)
    if example is not None and results:
        with box:  # beside the query, once the results say where the item came
            weighing.examples_not_first(settings.methods, results, st.session_state["example"], query.present())


def search_time_caption(everything: dict[str, SearchResult], elapsed: float) -> str:
    """How long this run's searches took. That a method answered from memory is said only when the run took
    less than the methods' own searches add up to, so some came from memory (walkthrough 2, #6); on a first
    search it read as if something had (walkthrough 4, #13)."""
    said = f"Searched {len(everything)} method(s) in {elapsed * 1000:.0f} ms"
    if elapsed < 0.9 * sum(r.seconds for r in everything.values()):
        return (
            said
            + ": a method already searched with this query answered from memory; its own search time is beside its name."
        )
    return said + "; each method's own search time is beside its name."


def show_results(engine, query: QueryInput, settings: Settings) -> dict[str, SearchResult] | None:  # noqa: ANN001
    """The results of each method, their comparison and explanations; returns the results shown."""
    started = time.perf_counter()
    try:
        everything = cached_search(engine, settings.collection, query, settings.methods, settings.k)
    except MediaError as exc:
        st.error(f"That file cannot be used: {md(exc.reason)}.")
        return None
    elapsed = time.perf_counter() - started
    results = {label: r for label, r in everything.items() if r.error is None}
    problems = {label: r.error for label, r in everything.items() if r.error is not None}
    st.caption(search_time_caption(everything, elapsed))
    provenance.render(engine, results)
    comparison = compare_results(results, settings.k) if results else None
    compact = compare_view.compact_chosen()
    # Each view in one container, and the panel in another: the charts below then keep their place in the page
    # whichever view is shown, and the browser keeps them instead of drawing them again (0.2-0.3 s a switch)
    with st.container():
        if compact:
            by_label = {m.label: m for m in settings.methods}
            beyond = ties.tied_beyond(engine, settings, query, results)
            compare_view.render(
                results,
                problems,
                comparison,
                settings.k,
                lambda label, error: method_problem(by_label[label], error),
                beyond,
                ties.tie_reasons(engine, settings, results, query, beyond),
            )
        else:
            method_columns(settings.methods, everything, comparison)
    with st.container():
        detail.render({label: r.hits for label, r in results.items()}, use_example)
    if comparison and len(results) > 1:
        with folded_on_phone("How the methods differ", "comparison"):
            comparison_section(comparison)
    if results:
        with folded_on_phone("Why these results", "explain"):
            explain.render(engine, encoded_query(engine, query), settings.methods, results)
    return results


def method_columns(methods: list[Method], results: dict[str, SearchResult], comparison: Comparison | None) -> None:
    changes = {m.item_id: m.change for m in comparison.items} if comparison else {}
    for column, method in zip(st.columns(len(methods)), methods):
        result = results[method.label]
        with column:
            st.subheader(method.label)
            if result.error is not None:
                method_problem(method, result.error)
                continue
            st.caption(f"{result.seconds * 1000:.1f} ms · {describe(method, result.params)}")
            st.caption(f"score: {md(result_meaning(result))}")
            if not result.hits:
                st.write("No item shares a modality with this query.")
            for hit in result.hits:
                result_card(hit, method.label, changes.get(hit.item_id, {}).get(method.label), use_example)


def method_problem(method: Method, error: str) -> None:
    if learns(method.strategy) and "train it first" in error:
        st.warning(
            f"{method.label} learns from this collection: train it first on the Index page "
            "(under “Train a learned strategy”), then choose it here again."
        )
        st.button("Go to the Index page", key=f"train-{method.label}", on_click=_go_to_index)
        return
    st.warning(f"{md(method.label)}: {md(error)}")


def _go_to_index() -> None:
    st.session_state["page"] = "Index"


def comparison_section(comparison: Comparison) -> None:
    for line in comparison.summary:
        st.write(line)
    k = comparison.k
    st.table(
        pd.DataFrame(
            [
                {
                    "methods": f"{p.a} vs {p.b}",
                    f"shared in top {k}": f"{p.shared(k)} of {k}",
                    "Jaccard": f"{p.jaccard:.3f}",
                    "RBO": f"{p.rbo:.3f}",
                    "Kendall's tau": "undefined" if p.kendall_tau is None else f"{p.kendall_tau:.3f}",
                }
                for p in comparison.pairs
            ]
        ).set_index("methods"),
    )
    st.caption(
        "Kendall's tau compares the order of the items both methods return; it is undefined with fewer "
        "than two shared items, or when one method gives every shared item the same score. Items with equal "
        "scores count as unmoved."
    )
    # its own width, not the page's: stretched, Chromium redrew it as the layout settled, and adding a method
    # took 2.9 s in the browser instead of 1.7 s (tests/test_browser.py). Never squeezed either: fitted to a
    # 400 px phone, its item labels ran over the rank axis and each other (walkthrough #8); where the column
    # is narrower it scrolls sideways in its own box (`ui.charts.SCROLL_CHARTS`), as the grid does
    draw_unfitted(bump_spec(comparison), BUMP_STEP * len(comparison.results) + BUMP_FRAME)


@st.cache_resource(show_spinner=False)
def warm_up(k: int) -> None:
    """Once per server process (and number of results): build the charts' templates before the first
    search, which spent 0.6-0.8 s building them (altair's first use included)."""
    explain.warm_up()
    _bump_shape(k)


@lru_cache(maxsize=64)
def _bump_shape(deepest: int) -> str:
    return template(bump_layout(deepest, EMPTY))


def bump_spec(comparison: Comparison) -> dict:
    """The bump chart, its shape built once per depth (see `ui.charts`)."""
    rows = bump_rows(comparison)
    return with_rows(_bump_shape(bump_depth(rows, comparison.k)), rows)


def describe(method: Method, params: dict) -> str:
    """The parameters that shape this method's ranking, in words (not another strategy's)."""
    if learns(method.strategy) or params.get("checkpoint"):
        parts = [f"trained model {Path(params['checkpoint']).name}" if params.get("checkpoint") else "trained model"]
        parts.append(f"mode={params.get('mode', 'index')}")
    elif method.strategy in ("late", "hybrid"):
        parts = [f"{k}={params[k]}" for k in ("normalisation", "fusion", "weighting") if k in params]
        if params.get("fusion") == "rrf":
            parts.append(f"rrf_k={params.get('rrf_k')}")
    else:
        parts = ["one index over the concatenated vectors"] + (["centred"] if params.get("centre") else [])
        parts += [f"weighting={params['weighting']}"] if "weighting" in params else []
    parts += ["no input left out"] if params.get("screen") is False else []
    return ", ".join(parts + ([compare_view.weights_text(params)] if params.get("weights") else []))
