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
