"""Altair charts drawn many times with new data: the chart's shape is built once, its rows put in each time.

Building and validating an altair chart took 0.05-0.1 s (the bump chart 0.25-0.4 s) of every Search rerun,
measured by profiling the Streamlit script in the browser; with three methods the page draws seven charts.
A template is the chart's vega-lite JSON built from empty inline data, cached by what shapes it (the bump
chart's depth, the modalities coloured, a heatmap's fields and title; rows and columns are ordered by an
`order` field and sized by steps, so they do not); `with_rows` adds the rows, so a rerun pays for a
`json.loads`.
"""

from __future__ import annotations

import json
from typing import Any

import altair as alt

EMPTY = alt.InlineData(values=[])
# Streamlit's chart theme writes axis, legend and title text in #808495, 3.8:1 on white: under the 4.5:1 of
# WCAG AA (issue 37). Its body text colour, 12.6:1, replaces it; the rest of the theme stays.
TEXT = "#31333F"
LEGIBLE = {
    "axis": {"labelColor": TEXT, "titleColor": TEXT},
    "legend": {"labelColor": TEXT, "titleColor": TEXT},
    "header": {"labelColor": TEXT, "titleColor": TEXT},
    "title": {"color": TEXT, "subtitleColor": TEXT},
}
BY_ORDER = alt.EncodingSortField(field="order", op="min")  # rows carry their place: the template needs no list


def legible(spec: dict[str, Any]) -> dict[str, Any]:
    """The vega-lite `spec` with its texts in `TEXT` (the chart's own config wins where it sets one); a
    chart sized by steps is drawn at that size."""
    config = spec.setdefault("config", {})
    for part, colours in LEGIBLE.items():
        config[part] = {**colours, **config.get(part, {})}
    if any(isinstance(spec.get(side), dict) for side in ("width", "height")):
        # Streamlit asks every chart to fit; Vega-Lite cannot fit a side sized by steps and said so in the
        # console at every draw of such a chart (issue 37), then fitted only the other side: now drawn as sized
        spec.setdefault("autosize", {"type": "pad", "contains": "padding"})
    return spec


def template(chart: alt.Chart | alt.LayerChart) -> str:
    """The chart, built on `EMPTY` data, as legible vega-lite JSON (not validated again: its shape is fixed)."""
    return json.dumps(legible(chart.to_dict(validate=False)))


def with_rows(shape: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A chart to draw: the template `shape` with these rows as its data."""
    spec = json.loads(shape)
    spec.pop("datasets", None)
    spec["data"] = {"values": rows}
    return spec


def draw(spec: dict[str, Any], width: int, where: Any = None) -> None:
    """The chart at `width` px, or at its container's width where that is narrower (a column at 1280 px, a
    400 px phone): Vega-Lite fits the whole chart, labels and legend included (fit-x), so nothing is cut off
    and nothing is wider than the window (issue 37: the contribution chart's legend was cut at 1280 px, and
    charts ran off a phone's screen)."""
    import streamlit as st

    spec = {**spec, "width": width, "autosize": {"type": "fit-x", "contains": "padding"}}
    (where or st).vega_lite_chart(spec=spec, width=width)


def draw_unfitted(spec: dict[str, Any], width: int) -> None:
    """The chart at `width` px whatever its column's width: a narrower column scrolls it sideways in its own
    box (`SCROLL_CHARTS`), for a chart whose labels cannot be fitted into less."""
    import streamlit as st

    spec = {**spec, "width": width, "autosize": {"type": "fit-x", "contains": "padding"}}
    st.vega_lite_chart(spec=spec, width="content")


def natural_width(spec: dict[str, Any], frame: int = 160) -> int | None:
    """The pixels a chart asks for with `frame` px of axis labels and legend: its width, or its steps times its
    x field's distinct values; None for a chart Vega-Lite cannot fit (a facet: `row`, `column`)."""
    encoding = spec.get("encoding", {})
    if "row" in encoding or "column" in encoding or "facet" in spec:
        return None
    width = spec.get("width")
    if isinstance(width, int | float):
        return int(width) + frame
    if isinstance(width, dict) and "step" in width:
        field = encoding.get("x", {}).get("field")
        rows = [row for values in spec.get("datasets", {}).values() for row in values]
        return int(width["step"]) * len({row.get(field) for row in rows}) + frame
    return None


def draw_natural(spec: dict[str, Any]) -> None:
    """`draw` at the chart's `natural_width`; a facet, which cannot be fitted, scrolls sideways in its own box
    (`SCROLL_CHARTS`) where the page is narrower."""
    import streamlit as st

    width = natural_width(spec)
    if width is None:
        st.vega_lite_chart(spec=spec, width="content")
    else:
        draw(spec, width)


# A chart wider than its column (a facet on a phone) scrolls in its own box instead of running off the page
SCROLL_CHARTS = '<style>[data-testid="stVegaLiteChart"]{overflow-x:auto;max-width:100%}</style>'
