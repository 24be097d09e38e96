"""Why this result: each query modality's share of the score, and what each strategy itself weighed.

Late and hybrid: each channel's rank among the candidates, its weight for the query (adaptive or set) and
what it adds to the score (the fused score is their sum). Gated: the gate each field got, for the query and
for each item. Cross-attention: how much each field's token attended to the others, for one chosen item and
for the query. Shown as altair charts.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from itertools import combinations
from typing import Any

import altair as alt
import streamlit as st

from retrieval.media import MODALITIES
from retrieval.results import Method, SearchResult
from retrieval.space import EncodedQuery
from ui.cards import COLOURS
from ui.charts import BY_ORDER, EMPTY, draw, template, with_rows
from ui.plain import md


def explanations(
    engine: Any, encoded: EncodedQuery, methods: list[Method], results: dict[str, SearchResult]
) -> dict[str, dict[str, Any]]:
    """Each method's `explain` output for its own hits (the query encoded once, weighted per method)."""
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        result = results.get(method.label)
        if result is None or not result.hits:
            continue
        out[method.label] = engine.explain(method, encoded, [h.item_id for h in result.hits])
    return out


def _label(hit: Any) -> str:
    return f"{hit.rank}. {hit.key}"


# Sized per row and column (vega-lite steps), not as a total: a total height was squeezed by the page
# (eleven gate rows drawn in ~130 px, every other label hidden)
ROW_STEP, COLUMN_STEP = 22, 70
CONTRIBUTION_WIDTH = 440  # px with its labels and legend (Streamlit fits the whole chart into it)
CONTRIBUTION_TITLE = "What each query modality adds to the score"
HEAT_FRAME = 200  # px of a heat map's row labels, legend and padding beside its columns
HEAT_WIDTH = 400  # px at least: its title is as long as that


# The lighter 60 % of "blues": black text stays at least 6:1 on every cell (WCAG AA asks 4.5:1), where on the
# whole scheme the "#n" labels were black on dark blue, 1.4:1 (issue 37)
HEAT = {"name": "blues", "extent": [0, 0.6]}


LATE_SHAPE = ("channel", "item", "adds", "Rank in each channel (#), and what it adds to the score", "text")
GATE_SHAPE = ("field", "row", "gate", "Gate of each modality", "text")


def warm_up() -> None:
    """Build the templates every first search needs (the share of each modality mix, late's and gated's maps)."""
    for size in range(1, len(MODALITIES) + 1):
        for modalities in combinations(sorted(MODALITIES), size):
            _contribution_shape(modalities)
    _heatmap_shape(*LATE_SHAPE)
    _heatmap_shape(*GATE_SHAPE)


@lru_cache(maxsize=64)
def _contribution_shape(modalities: tuple[str, ...]) -> str:
    bars = (
        alt.Chart(EMPTY)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="adds to the score (below 0: lowers it)"),
            y=alt.Y("item:N", sort=BY_ORDER, title=None),
            color=alt.Color(
                "modality:N",
                scale=alt.Scale(domain=modalities, range=[COLOURS.get(m.lstrip("-"), "#9D9D9D") for m in modalities]),
            ),
            tooltip=["item:N", "modality:N", alt.Tooltip("contribution:Q", format=".3f")],
        )
    )
    # a line at 0, so a term that lowers the score reads as one: "share" had said every term was a part of it
    zero = alt.Chart(EMPTY).mark_rule(color="#222").encode(x=alt.datum(0))
    return template(
        (bars + zero).properties(title=CONTRIBUTION_TITLE, height=alt.Step(ROW_STEP), width=CONTRIBUTION_WIDTH)
    )


def contribution_chart(result: SearchResult) -> dict[str, Any]:
    """Each hit's score split by query modality, one stacked bar per hit."""
    rows = [
        {"item": _label(h), "order": n, "modality": m, "contribution": v}
        for n, h in enumerate(result.hits)
        for m, v in h.contributions.items()
    ]
    modalities = tuple(sorted({m for h in result.hits for m in h.contributions}))
    spec = with_rows(_contribution_shape(modalities), rows)
    # a row's step as a height in pixels: the chart's width, labels and legend included, then fits its 440 px
    # (a step-sized side made Vega-Lite warn at every draw that it cannot fit, issue 37)
    spec["height"] = ROW_STEP * max(1, len(result.hits))
    spec["autosize"] = {"type": "fit-x", "contains": "padding"}
    return spec


@lru_cache(maxsize=256)
def _heatmap_shape(x: str, y: str, value: str, title: str, text: str) -> str:
    # on lines of at most 32 characters: one line was cut off in a narrow column
    base = alt.Chart(EMPTY, title=alt.TitleParams(textwrap.wrap(title, 32))).encode(
        x=alt.X(f"{x}:N", title=None), y=alt.Y(f"{y}:N", sort=BY_ORDER, title=None)
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{value}:Q", scale=alt.Scale(scheme=HEAT, domainMin=0)),
        tooltip=[f"{x}:N", f"{y}:N", alt.Tooltip(f"{value}:Q", format=".3f")],
    )
    labels = base.mark_text(fontSize=11, color="#000").encode(text=f"{text}:N")
    return template((cells + labels).properties(height=alt.Step(ROW_STEP), width=alt.Step(COLUMN_STEP)))


def _heatmap(rows: list[dict], x: str, y: str, value: str, title: str, text: str, y_order: list[str]) -> dict:
    position = {name: n for n, name in enumerate(y_order)}
    for row in rows:
        row["order"] = position[row[y]]
    spec = with_rows(_heatmap_shape(x, y, value, title, text), rows)
    # its width when there is room (a step per column), fitted to a narrower column or phone by `draw`
    spec["width"] = max(HEAT_WIDTH, COLUMN_STEP * len({row[x] for row in rows}) + HEAT_FRAME)
    # a height in pixels, a step per row: fitted by `draw`, a height in steps made Vega-Lite warn at each draw
    spec["height"] = ROW_STEP * len(y_order)
    return spec


def late_chart(result: SearchResult, explained: dict[str, Any]) -> dict[str, Any]:
    """Rows: hits; columns: channels with their weight for this query (adaptive or set); colour: what the
    channel adds to the hit's score (the row adds up to it); text: the hit's rank in that channel."""
    rows = []
    columns = [f"{unit.split(' [')[0]} ×{weight:.2f}" for unit, weight in zip(explained["units"], explained["weight"])]
    for n, hit in enumerate(result.hits):
        for u, column in enumerate(columns):
            rank = int(explained["rank"][n, u])
            rows.append(
                {
                    "item": _label(hit),
                    "channel": column,
                    "adds": float(explained["fused"][n, u]),
                    "text": f"#{rank}" if rank else "—",
                }
            )
    order = [_label(h) for h in result.hits]
    return _heatmap(rows, *LATE_SHAPE, order)


def gate_chart(result: SearchResult, explained: dict[str, Any]) -> dict[str, Any]:
    """Rows: the query, then each hit; columns: fields; colour and text: the gate (blank where absent)."""
    fields = [f.split("@")[0] for f in explained["fields"]]
    rows = []
    named = [("query", explained["query_gates"], explained["query_mask"])]
    named += [(_label(h), explained["item_gates"][n], explained["item_mask"][n]) for n, h in enumerate(result.hits)]
    for name, gates, mask in named:
        for f, gate, present in zip(fields, gates, mask):
            rows.append({"row": name, "field": f, "gate": float(gate), "text": f"{gate:.2f}" if present else ""})
    return _heatmap(rows, *GATE_SHAPE, [r[0] for r in named])


def attention_fields(explained: dict[str, Any], row: int | None) -> list[str]:
    """The fields present in the item (`row`) or the query (None): the rows and columns of its map."""
    mask = explained["query_mask"] if row is None else explained["item_mask"][row]
    return [f.split("@")[0] for f, present in zip(explained["fields"], mask) if present]


def attention_note(explained: dict[str, Any], row: int | None, name: str) -> str | None:
    """Words instead of a map where there is nothing to map: one field attends only to itself (a 1x1 map)."""
    fields = attention_fields(explained, row)
    if len(fields) > 1:
        return None
    if not fields:
        return f"{name} has no modality this method reads: nothing attends."
    return f"{name} has one modality ({fields[0]}): it attends only to itself, so there is no map to draw."


def attention_chart(explained: dict[str, Any], row: int | None, title: str) -> dict[str, Any]:
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
    order = [f for f, present in zip(fields, mask) if present]
    return _heatmap(rows, "to", "from", "attention", title, "text", order)


def render(engine: Any, encoded: EncodedQuery, methods: list[Method], results: dict[str, SearchResult]) -> None:
    """For the method chosen: the contribution chart, and the strategy's own explanation beside it.

    One method at a time, not a tab per method: the browser draws every tab's charts at each rerun, and with
    three methods the explanations took 1.5-2 s of the 2.3-3.5 s that adding a method took in Chromium."""
    labels = [m.label for m in methods if m.label in results and results[m.label].hits]
    if not labels:
        return
    label = st.segmented_control("Explain the results of", labels, default=labels[0], key="explain_method")
    label = label if label in labels else labels[0]
    method = next(m for m in methods if m.label == label)
    own = explanations(engine, encoded, [method], results).get(label, {})
    left, right = st.columns(2)
    draw(contribution_chart(results[label]), CONTRIBUTION_WIDTH, left)
    with right:
        _strategy_chart(label, results[label], own)


def _strategy_chart(label: str, result: SearchResult, own: dict[str, Any]) -> None:
    if own.get("units"):
        _draw_heatmap(late_chart(result, own))
    elif "item_gates" in own:
        _draw_heatmap(gate_chart(result, own))
    elif "item_attention" in own:
        keys = [_label(h) for h in result.hits]
        chosen = st.selectbox("Attention of", keys, key=f"attention_item_{label}")
        for row, name in ((keys.index(chosen), chosen), (None, "The query")):
            note = attention_note(own, row, name)
            if note:
                st.caption(md(note))
            else:
                title = f"{name}: attention between its modalities"
                _draw_heatmap(attention_chart(own, row, title))
    else:
        st.caption("This method weighs the modalities only through the query weights: see the shares on the left.")


def _draw_heatmap(spec: dict[str, Any]) -> None:
    draw(spec, spec["width"])
