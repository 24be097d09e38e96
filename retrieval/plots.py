"""Charts for comparisons and evaluations (altair), saved as HTML and PNG (vl-convert)."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd

from retrieval.compare import Comparison
from retrieval.evaluate import Evaluation


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
            color=alt.Color("method:N", sort=list(evaluation.table), legend=None),
            column=alt.Column(
                "kind:N", title="query kind", sort=["all", *[k for k in evaluation.queries if k != "all"]]
            ),
            tooltip=["method", "kind", alt.Tooltip(f"{metric}:Q", format=".3f")],
        )
        .properties(width=max(60, 22 * len(evaluation.table)), height=220)
    )


def bump_chart(comparison: Comparison, top: int = 15) -> alt.Chart:
    """Each item's rank under each method, joined by lines: what moved where."""
    methods = list(comparison.results)
    rows = [
        {"item": m.key, "method": method, "rank": rank}
        for m in comparison.items[:top]
        for method, rank in m.ranks.items()
        if rank is not None
    ]
    frame = pd.DataFrame(rows, columns=["item", "method", "rank"])
    base = alt.Chart(frame, title="Rank of each item under each method").encode(
        x=alt.X("method:N", sort=methods, title=None),
        y=alt.Y("rank:Q", scale=alt.Scale(reverse=True, domainMin=1), title="rank"),
        color=alt.Color("item:N", legend=alt.Legend(title="item")),
        tooltip=["item", "method", "rank"],
    )
    return (base.mark_line(point=True) + base.mark_text(dx=8, align="left").encode(text="item:N")).properties(
        width=max(240, 110 * len(methods)), height=320
    )


def save(chart: alt.Chart, stem: Path) -> list[Path]:
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
