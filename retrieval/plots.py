"""Charts for comparisons and evaluations (altair), saved as HTML and PNG (vl-convert)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from retrieval.compare import Comparison, tie_spans
from retrieval.evaluate import Evaluation

# Dark enough for labels on white (each at least 4.5:1 contrast, WCAG AA): no pale yellow or grey
PALETTE = [
    "#1f5f99", "#b3400f", "#2e7d32", "#7b1fa2", "#8d6e00", "#c2185b",
    "#00695c", "#4e342e", "#283593", "#ad1457", "#33691e", "#6a1b9a",
]  # fmt: skip


def metric_chart(evaluation: Evaluation, metric: str) -> alt.Chart:
    """One metric by method and query kind, grouped bars."""
    rows = [
        {"method": method, "kind": kind, metric: values[metric]}
        for method, by_kind in evaluation.table.items()
        for kind, values in by_kind.items()
    ]
    frame = pd.DataFrame(rows)
    return (
        alt.Chart(frame, title=f"{metric} by method and query kind")
        .mark_bar()
        .encode(
            x=alt.X("method:N", title=None, sort=list(evaluation.table)),
            y=alt.Y(f"{metric}:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "method:N",
                sort=list(evaluation.table),
                scale=alt.Scale(range=PALETTE),
                legend=alt.Legend(title="method", orient="bottom"),
            ),
            column=alt.Column(
                "kind:N", title="query kind", sort=["all", *[k for k in evaluation.queries if k != "all"]]
            ),
            tooltip=["method", "kind", alt.Tooltip(f"{metric}:Q", format=".3f")],
        )
        .properties(width=max(60, 22 * len(evaluation.table)), height=220)
    )


BUMP_STEP = 180  # px between methods: room for a key's label left of the first and right of the last


def bump_rows(comparison: Comparison) -> list[dict]:
    """The bump chart's data: one row per item and method that ranked it. An item tied with others (`tie_spans`)
    is drawn at the middle of its tie group's ranks, labelled once per group ("10 tied"): drawn at its rank
    within the group, lines crossed where the grid, rightly, showed no ▲/▼ (issue 37)."""
    position = {method: n for n, method in enumerate(comparison.results)}
    final = len(position) - 1
    spans = {method: tie_spans(result.hits) for method, result in comparison.results.items()}
    rows = []
    for m in comparison.items:
        for method, rank in m.ranks.items():
            if rank is None:
                continue
            first, last = spans[method].get(m.item_id, (rank, rank))
            tied = last > first
            rows.append(
                {
                    "item": m.key,
                    "method": method,
                    "rank": rank,
                    "position": (first + last) / 2,
                    "label": (f"{last - first + 1} tied" if rank == first else "") if tied else m.key,
                    "moved": "moved" if m.moved else "unmoved",
                    "order": position[method],
                    # labelled outside the lines only: left of the first method, right of the last
                    "side": "left" if position[method] == 0 else "right" if position[method] == final else "",
                }
            )
    return rows


def bump_depth(rows: list[dict], k: int) -> int:
    """The deepest rank drawn (k when nothing is)."""
    return max((row["rank"] for row in rows), default=k)


def bump_layout(deepest: int, data: alt.Data | pd.DataFrame) -> alt.LayerChart:
    """The bump chart's shape for this depth, drawing `data` (`bump_rows`: methods in their `order`)."""
    base = alt.Chart(data, title="Rank of each item under each method").encode(
        x=alt.X(
            "method:N",
            sort=alt.EncodingSortField(field="order", op="min"),
            title=None,
            axis=alt.Axis(labelAngle=0, orient="top"),
        ),
        y=alt.Y(
            "position:Q",
            scale=alt.Scale(reverse=True, domain=[1, deepest]),
            title="rank",
            axis=alt.Axis(tickMinStep=1),
        ),
        color=alt.Color("item:N", scale=alt.Scale(range=PALETTE), legend=None),
        # ordinal, not nominal: Vega-Lite warned at each draw that opacity needs an order
        opacity=alt.Opacity("moved:O", scale=alt.Scale(domain=["moved", "unmoved"], range=[1.0, 0.35]), legend=None),
        tooltip=["item:N", "method:N", "rank:Q", "moved:N"],
    )
    # at full opacity: faded with their lines, the unmoved items' labels were light grey, 2.4:1 (issue 37).
    # Outside the lines: written right of every method's points, a middle method's labels and the first's
    # were crossed by the lines leaving them (issue 37); an item only a middle method ranks has its tooltip
    text = {"text": "label:N", "color": alt.value("#222"), "opacity": alt.value(1)}
    left = base.mark_text(dx=-7, align="right", fontSize=11).encode(**text).transform_filter("datum.side == 'left'")
    right = base.mark_text(dx=7, align="left", fontSize=11).encode(**text).transform_filter("datum.side == 'right'")
    lines = base.mark_line(point=True)
    return (lines + left + right).properties(width=alt.Step(BUMP_STEP), height=max(240, 26 * deepest))


def bump_chart(comparison: Comparison) -> alt.LayerChart:
    """Every item's rank under every method, joined by lines: what moved where. Items no method moved
    (ties included, see `compare`) are drawn faint, so the eye goes to what did move."""
    rows = bump_rows(comparison)
    frame = pd.DataFrame(rows, columns=["item", "method", "rank", "position", "label", "moved", "order", "side"])
    return bump_layout(bump_depth(rows, comparison.k), frame)


def save(chart: alt.Chart | alt.LayerChart, stem: Path) -> list[Path]:
    """Write `stem`.html and, where vl-convert is installed, `stem`.png."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = [stem.with_suffix(".html")]
    chart.save(str(written[0]))
    try:
        chart.save(str(stem.with_suffix(".png")), scale_factor=1.5)
        written.append(stem.with_suffix(".png"))
    except (ValueError, ImportError):
        pass  # no PNG engine: the HTML still holds the chart
    return written
