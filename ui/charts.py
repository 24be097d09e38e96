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
BY_ORDER = alt.EncodingSortField(field="order", op="min")  # rows carry their place: the template needs no list


def template(chart: alt.Chart | alt.LayerChart) -> str:
    """The chart, built on `EMPTY` data, as vega-lite JSON (not validated again: its shape is fixed)."""
    return json.dumps(chart.to_dict(validate=False))


def with_rows(shape: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A chart to draw: the template `shape` with these rows as its data."""
    spec = json.loads(shape)
    spec.pop("datasets", None)
    spec["data"] = {"values": rows}
    return spec
