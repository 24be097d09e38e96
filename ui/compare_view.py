"""The compact comparison: one row per rank, one column per method, so three methods' top 10 fit one screen.

Each cell holds a thumbnail (a blank square for an item without an image), the key, what moved against the
first method (▲ up, ▼ down, new), the score and a mark for each other modality the item has (♪ audio, ¶ text).

Identity is exact: hovering or focusing (click, Tab) a cell outlines that item in every column (CSS `:has`,
no script). Colour is kept for the few items that matter, the first method's top `FOLLOWED` that another
method also found, each with its own colour from a palette safe for colour-blind eyes (Okabe & Ito) and a
letter, so no colour is shared and none is needed. Ten cycling background colours had made different items
share a colour, and with 5-6 methods almost every cell was coloured (issue 37). Ties are said above the grid.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import streamlit as st

from retrieval.compare import Comparison, tie_spans
from retrieval.results import Hit, SearchResult
from ui.detail import POPUP_CSS, popup_html
from ui.movement import movement_mark
from ui.plain import md
from ui.scores import result_meaning
from ui.thumbnails import thumbnail_uri

# Okabe & Ito's colour-blind-safe palette (its yellow and black left out: too light and too like text), drawn
# as a cell's thick left border beside a letter, so the text keeps its contrast on white.
PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7"]
FOLLOWED = len(PALETTE)
LETTERS = "ABCDE"
KEYBOARD = (
    "From the keyboard: Tab moves from cell to cell, each showing its picture and text; Enter opens the cell's "
    "item in “Look closer at a result” below."
)
# Enter on a cell did nothing (walkthrough #18): it now types the cell's key into "Look closer at a result"
# and opens its list and picks there, as a person would (the selector takes scripted key events: ArrowDown
# opens it; typed text alone did not). The key is read from the cell's text, never put into the script;
# "key (" matches that item's option alone (not "3-george-28" for "3-george-2"). The app's own script.
ENTER_OPENS = """
<script>
if (!window.__enterOpensCell) {
  window.__enterOpensCell = true;
  document.addEventListener('keydown', e => {
    const cell = e.target.closest && e.target.closest('td.cmp-cell');
    const box = document.querySelector('input[aria-label="Look closer at a result"]');
    if (e.key !== 'Enter' || !cell || !box) return;
    e.preventDefault();
    box.scrollIntoView({block: 'center'});
    box.focus();
    const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
    set.call(box, cell.querySelector('b').textContent + ' (');
    box.dispatchEvent(new Event('input', {bubbles: true}));
    const press = (key, code) => box.dispatchEvent(new KeyboardEvent('keydown', {key, code: key, keyCode: code, bubbles: true}));
    setTimeout(() => { press('ArrowDown', 40); setTimeout(() => press('Enter', 13), 50); }, 50);  // open the list, pick
  }, true);
}
</script>
"""
ROW_HEIGHT = 44  # px: ten rows plus the header fit in ~500 px
MARKS = {"audio": "♪", "text": "¶"}  # an image shows as its thumbnail
# A grid wider than the page (5-6 methods on a 400 px phone: 536 px) scrolls sideways in its own box, its
# rank column kept in view; without the box Streamlit's whole main section scrolled and columns 4-6 were cut off
# Separate borders: collapsed ones belong to the table, not the cell, so the kept rank column let the borders of
# the cells scrolled under it show through; a key stays on one line (it broke at every hyphen: 7-/jackson-/0)
SCROLL_CSS = (
    ".cmp-scroll{overflow-x:auto;max-width:100%;scroll-padding-left:2.5em}"
    ".cmp-grid .cmp-rank{position:sticky;left:0;z-index:4;background:#fff}"
    ".cmp-cell b,.cmp-cell code{white-space:nowrap}"
)


def followed_items(results: dict[str, SearchResult]) -> dict[int, int]:
    """item id -> its place (0..FOLLOWED-1) among the first method's top `FOLLOWED` that another method also
    returned: the items whose fate across methods is worth a colour."""
    labels = list(results)
    if len(labels) < 2:
        return {}
    elsewhere = {h.item_id for label in labels[1:] for h in results[label].hits}
    top = results[labels[0]].hits[:FOLLOWED]
    return {hit.item_id: n for n, hit in enumerate(h for h in top if h.item_id in elsewhere)}


def item_colours(results: dict[str, SearchResult]) -> dict[int, str]:
    """A colour for each followed item (`followed_items`), each its own."""
    return {item: PALETTE[n] for item, n in followed_items(results).items()}


def tie_groups(hits: list[Hit]) -> list[tuple[int, int, float]]:
    """(first rank, last rank, score) of each run of two or more hits with equal scores (`tie_key`, as the
    strategies' `rank_order` ties them and orders them by item id)."""
    groups = []
    for first, last in sorted(set(tie_spans(hits).values())):
        if last > first:
            groups.append((first, last, hits[first - 1].score))
    return groups


def tie_lines(
    results: dict[str, SearchResult],
    beyond: dict[str, tuple[int, bool]] | None = None,
    reasons: dict[str, dict[int, str]] | None = None,
) -> list[str]:
    """ "late: 10 items tied at 2.180 (ranks 1-10), ordered by id" for each method's tie groups (markdown).
    `beyond[label]`: (items tied at the last score shown, whether that count is only a floor) for a method
    whose list ends inside a tie; the note counted only the shown ones (walkthrough #4). `reasons[label][first
    rank]`: why that group ties (`ui.ties.tie_reasons`), said in its parentheses."""
    lines = []
    for label, result in results.items():
        groups = tie_groups(result.hits)
        hits, count = result.hits, (beyond or {}).get(label, (0, False))[0]
        if count > 1 and (not groups or groups[-1][1] < len(hits)):  # the last item alone, tied past the list
            groups.append((len(hits), len(hits), hits[-1].score))
        if not groups:
            continue
        parts = []
        for first, last, score in groups:
            count, floor = (beyond or {}).get(label, (0, False)) if last == len(result.hits) else (0, False)
            why = (reasons or {}).get(label, {}).get(first)
            why = f"; {why}" if why else ""
            if count > last - first + 1:
                shown = last - first + 1
                parts.append(
                    f"{'at least ' if floor else ''}{count} items tied at {score:.3f} (ranks {first}-"
                    f"{first + count - 1}, {shown} of them shown{why})"
                )
            else:
                parts.append(f"{last - first + 1} items tied at {score:.3f} (ranks {first}-{last}{why})")
        lines.append(f"**{md(label)}**: {'; '.join(parts)}, ordered by id")
    return lines


def highlight_css(results: dict[str, SearchResult]) -> str:
    """One rule per item shown in more than one cell: hovering or focusing one of its cells outlines them all."""
    counts: dict[int, int] = {}
    for result in results.values():
        for hit in result.hits:
            counts[hit.item_id] = counts.get(hit.item_id, 0) + 1
    rules = []
    for item in (i for i, n in counts.items() if n > 1):
        cell = f'td[data-item="{item}"]'
        rules.append(f".cmp-grid:has({cell}:hover) {cell},.cmp-grid:has({cell}:focus) {cell}")
    if not rules:
        return ""
    return ",".join(rules) + "{outline:3px solid #000;outline-offset:-3px;background:#fff1b8}"


def modality_marks(hit: Hit) -> str:
    """A mark for each modality the item has besides an image (its thumbnail shows that one)."""
    marks = [f'<span title="has {m}">{MARKS[m]}</span>' for m in ("audio", "text") if hit.assets.get(m)]
    return f' <span class="cmp-has">{"".join(marks)}</span>' if marks else ""


def _cell(hit: Hit, change: str | None, followed: int | None, up: bool, end: bool) -> str:
    uri = thumbnail_uri(hit.assets["image"]) if hit.assets.get("image") else None
    if uri:
        picture = f'<img src="{uri}" width="32" height="32" alt="" style="image-rendering:pixelated">'
    else:
        picture = '<span title="no image" style="display:inline-block;width:32px;height:32px"></span>'
    heard = f" · heard: {hit.transcript['text']}" if hit.transcript and hit.transcript["text"] else ""
    title = html.escape(
        ", ".join(f"{k}={v}" for k, v in hit.metadata.items()) + (f" · {hit.text}" if hit.text else "") + heard
    )
    border = f"border-left:6px solid {PALETTE[followed]};" if followed is not None else ""
    letter = f'<span class="cmp-tag">{LETTERS[followed]}</span> ' if followed is not None else ""
    return (
        f'<td class="cmp-cell" tabindex="0" data-item="{hit.item_id}" title="{title}" style="{border}">'
        f'<div style="display:flex;align-items:center;gap:6px">{picture}'
        f"<div>{letter}<b>{html.escape(hit.key)}</b>{movement_mark(change)}<br>"
        f"<code>{hit.score:.3f}</code>{modality_marks(hit)}</div></div>{popup_html(hit, up, end)}</td>"
    )


def grid_html(results: dict[str, SearchResult], comparison: Comparison | None, k: int) -> str:
    """The comparison as one HTML table (rank rows x method columns)."""
    labels = list(results)
    followed = followed_items(results)
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
            up, end = rank >= k / 2, label == labels[-1] and len(labels) > 1
            cells.append(_cell(hit, change, followed.get(hit.item_id), up, end))
        rows.append(f'<tr style="height:{ROW_HEIGHT}px"><th class="cmp-rank">{rank + 1}</th>{"".join(cells)}</tr>')
    style = (
        "<style>.cmp-grid{border-collapse:separate;border-spacing:0;width:100%;font-size:0.85em}"
        ".cmp-grid td,.cmp-grid th{border-right:1px solid #ddd;border-bottom:1px solid #ddd;padding:2px 6px}"
        ".cmp-grid tr:first-child>*{border-top:1px solid #ddd}.cmp-grid tr>:first-child{border-left:1px solid #ddd}"
        ".cmp-grid th{text-align:left}.cmp-cell{cursor:pointer}.cmp-has{color:#444;margin-left:4px}"
        ".cmp-tag{font-weight:bold;font-size:0.8em;padding:0 3px;border:1px solid #444;border-radius:3px}"
        f"{SCROLL_CSS}{POPUP_CSS}{highlight_css(results)}</style>"
    )
    table = f'<table class="cmp-grid"><tr><th class="cmp-rank">#</th>{head}</tr>{"".join(rows)}</table>'
    return f'{style}<div class="cmp-scroll" role="region" aria-label="Comparison grid" tabindex="0">{table}</div>'


def render(
    results: dict[str, SearchResult],
    problems: dict[str, str],
    comparison: Comparison | None,
    k: int,
    show_problem: Callable[[str, str], None],
    beyond: dict[str, tuple[int, bool]] | None = None,
    reasons: dict[str, dict[int, str]] | None = None,
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
        + f" · {legend(results)} · ▲ ▼ new: moved against the first · ♪ has audio · ¶ has text · "
        "point at or click an item to see it in every column"
    )
    for line in tie_lines(results, beyond, reasons):
        st.caption(line)
    st.caption(score_lines(results))
    st.html(grid_html(results, comparison, k))
    st.caption(KEYBOARD)
    st.html(ENTER_OPENS, unsafe_allow_javascript=True)


def score_lines(results: dict[str, SearchResult]) -> str:
    """What each method's score is, one line each (markdown): "**late** score: the sum over channels …"."""
    return "  \n".join(f"**{md(label)}** score: {md(result_meaning(r))}" for label, r in results.items())


def legend(results: dict[str, SearchResult]) -> str:
    """What the letters and colours mean (markdown): the first method's top items that another also found."""
    if not followed_items(results):
        return "no item of the first method's top 5 is in another's list" if len(results) > 1 else "one method"
    return f"A-E, coloured: those of {md(next(iter(results)))}'s top {FOLLOWED} that another method found too"


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
