"""Why this result: each query modality's share of the score, and what each strategy itself weighed.

Late and hybrid: each channel's rank among the candidates and its normalised score (what the fused score
adds up). Gated: the gate each field got, for the query and for each item. Cross-attention: how much each
field's token attended to the others, for one chosen item and for the query. Shown as altair charts.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from retrieval.results import Method, QueryInput, SearchResult
from retrieval.space import EncodedQuery
from ui.cards import COLOURS


def explanations(
    engine: Any, query: QueryInput, methods: list[Method], results: dict[str, SearchResult]
) -> dict[str, dict[str, Any]]:
    """Each method's `explain` output for its own hits (the query encoded once, weighted per method)."""
    encoded = engine.encode_query(query)
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        result = results.get(method.label)
        if result is None or not result.hits:
            continue
        weighted = EncodedQuery(
            encoded.vectors, {**encoded.weights, **method.weights}, encoded.negatives, encoded.negative_weight
        )
        ids = np.array([h.item_id for h in result.hits], np.int64)
        strategy = engine.strategy(method.strategy, **method.params)
        out[method.label] = strategy.explain(engine.space, weighted, ids)
    return out


def _label(hit: Any) -> str:
    return f"{hit.rank}. {hit.key}"


def contribution_chart(result: SearchResult) -> alt.Chart:
    """Each hit's score split by query modality, one stacked bar per hit."""
    rows = [
        {"item": _label(h), "modality": m, "contribution": v} for h in result.hits for m, v in h.contributions.items()
    ]
    order = [_label(h) for h in result.hits]
    modalities = sorted({m for h in result.hits for m in h.contributions})
    return (
        alt.Chart(pd.DataFrame(rows, columns=["item", "modality", "contribution"]), title="Share of the score")
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="contribution"),
            y=alt.Y("item:N", sort=order, title=None),
            color=alt.Color(
                "modality:N",
                scale=alt.Scale(domain=modalities, range=[COLOURS.get(m.lstrip("-"), "#9D9D9D") for m in modalities]),
            ),
            tooltip=["item", "modality", alt.Tooltip("contribution:Q", format=".3f")],
        )
        .properties(height=22 * len(order), width=260)
    )


def _heatmap(frame: pd.DataFrame, x: str, y: str, value: str, title: str, text: str, y_order: list[str]) -> alt.Chart:
    base = alt.Chart(frame, title=title).encode(
        x=alt.X(f"{x}:N", title=None), y=alt.Y(f"{y}:N", sort=y_order, title=None)
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme="blues", domainMin=0)),
        tooltip=[x, y, alt.Tooltip(f"{value}:Q", format=".3f")],
    )
    labels = base.mark_text(fontSize=10).encode(text=f"{text}:N")
    return (cells + labels).properties(height=22 * len(y_order), width=70 * frame[x].nunique())


def late_chart(result: SearchResult, explained: dict[str, Any]) -> alt.Chart:
    """Rows: hits; columns: channels; colour: normalised score; text: the hit's rank in that channel."""
    rows = []
    for n, hit in enumerate(result.hits):
        for u, unit in enumerate(explained["units"]):
            rank = int(explained["rank"][n, u])
            value = float(explained["normalised"][n, u])
            rows.append(
                {
                    "item": _label(hit),
                    "channel": unit.split(" [")[0],
                    "normalised": value,
                    "text": f"#{rank}" if rank else "—",
                }
            )
    order = [_label(h) for h in result.hits]
    return _heatmap(
        pd.DataFrame(rows), "channel", "item", "normalised", "Channel rank (#) and normalised score", "text", order
    )


def gate_chart(result: SearchResult, explained: dict[str, Any]) -> alt.Chart:
    """Rows: the query, then each hit; columns: fields; colour and text: the gate (blank where absent)."""
    fields = [f.split("@")[0] for f in explained["fields"]]
    rows = []
    named = [("query", explained["query_gates"], explained["query_mask"])]
    named += [(_label(h), explained["item_gates"][n], explained["item_mask"][n]) for n, h in enumerate(result.hits)]
    for name, gates, mask in named:
        for f, gate, present in zip(fields, gates, mask):
            rows.append({"row": name, "field": f, "gate": float(gate), "text": f"{gate:.2f}" if present else ""})
    return _heatmap(pd.DataFrame(rows), "field", "row", "gate", "Gate of each modality", "text", [r[0] for r in named])


def attention_chart(explained: dict[str, Any], row: int | None, title: str) -> alt.Chart:
    """One attention map (from field -> to field), masked to the fields present; `row` None = the query."""
    fields = [f.split("@")[0] for f in explained["fields"]]
    weights = explained["query_attention"] if row is None else explained["item_attention"][row]
    mask = explained["query_mask"] if row is None else explained["item_mask"][row]
    rows = [
        {"from": fields[i], "to": fields[j], "attention": float(weights[i, j]), "text": f"{weights[i, j]:.2f}"}
        for i in range(len(fields))
        for j in range(len(fields))
        if mask[i] and mask[j]
    ]
    frame = pd.DataFrame(rows, columns=["from", "to", "attention", "text"])
    order = [f for f, present in zip(fields, mask) if present]
    return _heatmap(frame, "to", "from", "attention", title, "text", order)


def render(engine: Any, query: QueryInput, methods: list[Method], results: dict[str, SearchResult]) -> None:
    """One tab per method: the contribution chart, and the strategy's own explanation beside it."""
    explained = explanations(engine, query, methods, results)
    labels = [m.label for m in methods if m.label in results and results[m.label].hits]
    if not labels:
        return
    for tab, label in zip(st.tabs(labels), labels):
        with tab:
            result, own = results[label], explained.get(label, {})
            left, right = st.columns(2)
            left.altair_chart(contribution_chart(result))
            with right:
                _strategy_chart(label, result, own)


def _strategy_chart(label: str, result: SearchResult, own: dict[str, Any]) -> None:
    if own.get("units"):
        st.altair_chart(late_chart(result, own))
    elif "item_gates" in own:
        st.altair_chart(gate_chart(result, own))
    elif "item_attention" in own:
        keys = [_label(h) for h in result.hits]
        chosen = st.selectbox("Attention of", keys, key=f"attention_item_{label}")
        row = keys.index(chosen)
        st.altair_chart(attention_chart(own, row, f"{chosen}: attention between its modalities"))
        st.altair_chart(attention_chart(own, None, "The query: attention between its modalities"))
    else:
        st.caption("This method weighs the modalities only through the query weights: see the shares on the left.")
