"""Issue 37, item 4, by the chart specs: drawn by vega (vl-convert's SVG) with 2 and with 6 methods, bars stay
at least 8 px thick, heat-map cells at least 12 px, and every label at least 4.5:1 on what lies under it.
The browser test (tests/test_browser_charts.py) measures the same in Streamlit's page."""

from __future__ import annotations

import re

import numpy as np
import pytest

from retrieval.report import StrategyReport, StrategyRow, report_charts
from ui.charts import legible
from ui.explain import attention_note, late_chart

vlc = pytest.importorskip("vl_convert")
METHODS = ["late", "early", "hybrid", "gated", "cross_attention", "late_rrf"]
KINDS = ["text", "image", "audio", "text+image", "text+audio", "image+audio", "text+image+audio"]
PATH = re.compile(r'<path[^>]*?d="M[-\d.]+,[-\d.]+h([-\d.]+)v([-\d.]+)h[^"]*"[^>]*?fill="([^"]+)"')
TEXT = re.compile(r'<text[^>]*?transform="translate\(([-\d.]+),([-\d.]+)\)"[^>]*?fill="([^"]+)"[^>]*>([^<]*)</text>')


def marks(svg: str) -> str:
    """The SVG of the chart's own marks (not its axes or legend)."""
    return "".join(re.findall(r'<g class="mark-rect role-mark[^"]*"[^>]*>(.*?)</g>', svg))


def luminance(colour: str) -> float:
    """Of "#rrggbb" or "rgb(r, g, b)", as WCAG defines it."""
    if colour.startswith("rgb"):
        channels = [float(v) / 255 for v in colour[colour.index("(") + 1 : -1].split(",")[:3]]
    else:
        h = colour[1:] if len(colour) == 7 else "".join(c * 2 for c in colour[1:4])
        channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def report(n: int) -> StrategyReport:
    rows = [
        StrategyRow(
            m, m, "query", False, p50_ms=2.0 + i,
            quality={kind: {"P@10": 0.5, "nDCG@10": (i + j) / 14} for j, kind in enumerate(["all", *KINDS])},
            full_ndcg=0.6, one_missing_ndcg=0.5,
        )
        for i, m in enumerate(METHODS[:n])
    ]  # fmt: skip
    return StrategyReport(10, {"all": 70, **dict.fromkeys(KINDS, 10)}, rows)


@pytest.mark.parametrize("n", [2, 6])
def test_latency_bars_and_quality_cells_are_big_enough(n: int) -> None:
    charts = report_charts(report(n))
    bars = PATH.findall(marks(vlc.vegalite_to_svg(charts["latency"].to_dict())))
    assert len(bars) == n and min(abs(float(h)) for _, h, _ in bars) >= 8, bars
    cells = PATH.findall(marks(vlc.vegalite_to_svg(charts["quality"].to_dict())))
    assert len(cells) == n * (len(KINDS) + 1)
    assert min(min(abs(float(w)), abs(float(h))) for w, h, _ in cells) >= 12, cells


def test_strategies_charts_texts_are_dark() -> None:
    """Streamlit's theme writes chart texts in #808495 (3.8:1 on white); `legible` sets them at 4.5:1 or more."""
    spec = legible(report_charts(report(2))["latency"].to_dict())
    colours = [v for part in ("axis", "legend", "header", "title") for v in spec["config"][part].values()]
    assert contrast("#808495", "#ffffff") < 4.5 <= min(contrast(c, "#ffffff") for c in colours)


class Hit:
    def __init__(self, rank: int) -> None:
        self.rank, self.key, self.item_id, self.contributions = rank, f"item{rank}", rank, {}


class Result:
    def __init__(self, n: int) -> None:
        self.hits = [Hit(r) for r in range(1, n + 1)]


def test_late_heat_map_labels_can_be_read_on_every_cell() -> None:
    """The "#n" labels were black on dark blue (1.4:1): each must be 4.5:1 on its own cell, lightest to darkest."""
    n, units = 10, ["image [clip]", "text [clip]", "text [sbert]"]
    adds = np.linspace(0, 1, n * len(units)).reshape(n, len(units))
    explained = {"units": units, "weight": [1.0, 1.0, 0.5], "fused": adds, "rank": np.arange(n * 3).reshape(n, 3) + 1}
    svg = vlc.vegalite_to_svg(late_chart(Result(n), explained))  # type: ignore[arg-type]
    cells = [(float(w), float(h), fill) for w, h, fill in PATH.findall(marks(svg))]
    assert len(cells) == n * len(units) and min(min(w, h) for w, h, _ in cells) >= 12
    fills = {fill for _, _, fill in cells}
    labels = [(fill, text) for _, _, fill, text in TEXT.findall(svg) if text.startswith("#")]
    assert len(labels) == n * len(units)
    worst = min(contrast(text_fill, cell) for text_fill, _ in labels for cell in fills)
    assert worst >= 4.5, f"a #n label at {worst:.2f}:1 on the darkest cell"


def test_a_one_token_item_gets_words_not_a_one_cell_map() -> None:
    explained = {
        "fields": ["image@clip", "audio@clap", "text@sbert"],
        "item_mask": [[False, False, True], [True, True, False]],
        "query_mask": [True, False, True],
    }
    assert attention_note(explained, 0, "item1") == (
        "item1 has one modality (text): it attends only to itself, so there is no map to draw."
    )
    assert attention_note(explained, 1, "item2") is None
    assert attention_note(explained, None, "The query") is None


def test_the_cards_share_labels_are_readable_on_white() -> None:
    """The walkthrough's finding: "audio 2.44" in orange (#F58518) on white read at 2.5:1. Each label's colour,
    as the card draws it, is at least 4.5:1 against the white page."""
    import re

    from ui.cards import contribution_bar

    drawn = contribution_bar({"image": 1.2, "audio": 2.44, "text": -0.31, "other": 0.1})
    colours = re.findall(r'<span style="color:(#[0-9A-Fa-f]{6})">', drawn)
    assert len(colours) == 4
    assert min(contrast(c, "#FFFFFF") for c in colours) >= 4.5, colours
