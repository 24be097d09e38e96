"""The compact comparison: one row per rank, one column per method, so three methods' top 10 fit one screen.

Each cell holds a thumbnail (or a mark for audio/text-only items), the key, the score and what moved
against the first method (▲ up, ▼ down, new). An item found by more than one method keeps one colour in
every column, so the eye follows it across; items only one method found stay uncoloured.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import streamlit as st

from retrieval.compare import Comparison
from retrieval.results import Hit, SearchResult

# Tableau 10 (altair's default categorical scheme), lightened for backgrounds behind dark text.
PALETTE = [
    "#c6dbef", "#fdd0a2", "#c7e9c0", "#fcbba1", "#dadaeb",
    "#e7cb94", "#f7c6e0", "#d9d9d9", "#e5f5a0", "#a6e3e9",
]  # fmt: skip
ROW_HEIGHT = 44  # px: ten rows plus the header fit in ~500 px


@lru_cache(maxsize=2048)
def thumbnail_uri(path: str, size: int = 36) -> str | None:
    """A small PNG of the image as a data URI (MNIST digits are 28 px; photos are shrunk), or None."""
    from io import BytesIO

    from PIL import Image

    file = Path(path)
    if not file.is_file():
        return None
    try:
        with Image.open(file) as opened:
            image = opened.convert("RGB")
            image.thumbnail((size, size))
            buffer = BytesIO()
            image.save(buffer, format="PNG")
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def item_colours(results: dict[str, SearchResult]) -> dict[int, str]:
    """A colour for each item that more than one method returned, in order of first appearance."""
    seen: dict[int, int] = {}
    for result in results.values():
        for hit in result.hits:
            seen[hit.item_id] = seen.get(hit.item_id, 0) + 1
    shared = [item for item, count in seen.items() if count > 1]
    return {item: PALETTE[n % len(PALETTE)] for n, item in enumerate(shared)}


def movement_mark(change: str | None) -> str:
    """▲n / ▼n / new against the first method (plain symbols: headless browsers often lack emoji fonts)."""
    if not change or change == "same":
        return ""
    if change == "new":
        return ' <span style="color:#2b7a0b;font-size:0.8em">new</span>'
    direction, _, steps = change.partition(" ")
    colour = "#2b7a0b" if direction == "up" else "#b23b3b"
    return f' <span style="color:{colour}">{"▲" if direction == "up" else "▼"}{html.escape(steps)}</span>'


def _cell(hit: Hit, change: str | None, colour: str | None) -> str:
    uri = thumbnail_uri(hit.assets["image"]) if hit.assets.get("image") else None
    if uri:
        picture = f'<img src="{uri}" width="32" height="32" style="image-rendering:pixelated">'
    else:
        mark = "♪" if hit.assets.get("audio") else "¶"
        picture = f'<span style="display:inline-block;width:32px;text-align:center">{mark}</span>'
    heard = f" · heard: {hit.transcript['text']}" if hit.transcript and hit.transcript["text"] else ""
    title = html.escape(
        ", ".join(f"{k}={v}" for k, v in hit.metadata.items()) + (f" · {hit.text}" if hit.text else "") + heard
    )
    background = f"background:{colour};" if colour else ""
    return (
        f'<td class="cmp-cell" data-item="{hit.item_id}" title="{title}" style="{background}">'
        f'<div style="display:flex;align-items:center;gap:6px">{picture}'
        f"<div><b>{html.escape(hit.key)}</b>{movement_mark(change)}<br>"
        f"<code>{hit.score:.3f}</code></div></div></td>"
    )


def grid_html(results: dict[str, SearchResult], comparison: Comparison | None, k: int) -> str:
    """The comparison as one HTML table (rank rows x method columns)."""
    labels = list(results)
    colours = item_colours(results)
    changes = {m.item_id: m.change for m in comparison.items} if comparison else {}
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = []
    for rank in range(k):
        cells = []
        for label in labels:
            hits = results[label].hits
            if rank >= len(hits):
                cells.append("<td></td>")
                continue
            hit = hits[rank]
            change = changes.get(hit.item_id, {}).get(label) if label != labels[0] else None
            cells.append(_cell(hit, change, colours.get(hit.item_id)))
        rows.append(f'<tr style="height:{ROW_HEIGHT}px"><th>{rank + 1}</th>{"".join(cells)}</tr>')
    style = (
        "<style>.cmp-grid{border-collapse:collapse;width:100%;font-size:0.85em}"
        ".cmp-grid td,.cmp-grid th{border:1px solid #ddd;padding:2px 6px}"
        ".cmp-grid th{text-align:left}</style>"
    )
    return f'{style}<table class="cmp-grid"><tr><th>#</th>{head}</tr>{"".join(rows)}</table>'


def render(
    results: dict[str, SearchResult],
    problems: dict[str, str],
    comparison: Comparison | None,
    k: int,
    show_problem: Callable[[str, str], None],
) -> None:
    """The grid, with each method's latency and parameters above it; `show_problem(label, error)` for each
    method that failed (the Search page's message, the same as in the cards)."""
    for label, problem in problems.items():
        show_problem(label, problem)
    if not results:
        return
    st.caption(
        " · ".join(
            f"**{label}** {r.seconds * 1000:.1f} ms{weights_text(r.params, ' (', ')')}" for label, r in results.items()
        )
        + " · colour: found by more than one method · ▲ ▼ new: moved against the first · ♪ audio only · ¶ text only"
    )
    st.html(grid_html(results, comparison, k))


def weights_text(params: dict, before: str = "", after: str = "") -> str:
    """The query weights a method ran with ("weights text×0.95"), or "" at the defaults."""
    weights = params.get("weights") or {}
    if not weights:
        return ""
    return before + "weights " + ", ".join(f"{m}×{w:.2f}" for m, w in weights.items()) + after


def compact_chosen() -> bool:
    """The toggle between this grid (default) and the result cards."""
    st.session_state.setdefault("compact_view", True)  # the default, settable before the first run (tests)
    return st.toggle(
        "Compact comparison (one row per rank)",
        key="compact_view",
        help="Off: one card per result, with an audio player and a 'Search with this item' button.",
    )
