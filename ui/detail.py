"""Looking at a result without leaving the comparison (issue 37, item 7).

- In the grid, pointing at a cell or reaching it with Tab shows a larger picture and the item's text and
  transcript beside it (`popup_html`, CSS only: no script, no request).
- Below the results, "Look closer at a result" opens one item in a panel: a large picture, an audio player
  made for that item alone (50 cells make none), its text, transcript and metadata as text, its rank under
  each method, and "Search with this item". Every control is a Streamlit widget, so Tab and the arrow keys
  reach it.
Collection text is escaped in the HTML and shown with `st.text` in the panel: never rendered.
"""

from __future__ import annotations

import html
from collections.abc import Callable

import streamlit as st

from retrieval.media import served_bytes
from retrieval.results import Hit
from ui.cards import heard_text, said_parts
from ui.plain import md
from ui.players import player
from ui.thumbnails import thumbnail_uri

POPUP_PICTURE = 112  # px in the grid's pop-up
PANEL_PICTURE = 224  # px in the panel
POPUP_CSS = (
    # above the grid's pinned rank column (z-index 4), which covered it at 400 px (walkthrough 4, #7)
    ".cmp-cell{position:relative}.cmp-pop{display:none;position:absolute;left:0;top:100%;z-index:6;"
    "background:#fff;color:#222;border:1px solid #444;border-radius:4px;padding:6px;width:max-content;"
    "max-width:240px;white-space:normal;box-shadow:0 2px 6px rgba(0,0,0,.25)}"
    ".cmp-pop.up{top:auto;bottom:100%}.cmp-pop.end{left:auto;right:0}"
    ".cmp-cell:hover .cmp-pop,.cmp-cell:focus .cmp-pop{display:block}"
    ".cmp-pop img{display:block;image-rendering:pixelated;object-fit:contain}"
    # on a phone, beside a cell of a grid that scrolls sideways, it ran off the screen (walkthrough #14): there
    # it is drawn across the bottom of the window instead
    "@media (max-width:640px){.cmp-pop,.cmp-pop.up,.cmp-pop.end{position:fixed;left:8px;right:8px;top:auto;"
    "bottom:8px;width:auto;max-width:none}}"
)
LOOK_KEY = "look_closer"


def popup_html(hit: Hit, up: bool, end: bool) -> str:
    """The cell's pop-up: a larger picture, the text and the transcript (escaped). `up`: above the cell (the
    grid's lower rows, so it stays inside the grid's box); `end`: aligned to the cell's right (the last column)."""
    # the item's name and what it holds first: an item with a recording alone showed only the key hint (walkthrough
    # 4, #11)
    holds = ", ".join(m for m in ("image", "audio", "text") if hit.assets.get(m) or (m == "text" and hit.text))
    parts = [f"<div><b>{html.escape(hit.key)}</b> · {holds or 'nothing stored'}</div>"]
    # at most 112 px itself (digits stay 28 px, scaled up): 50 of them are sent again with every change of the grid
    uri = thumbnail_uri(hit.assets["image"], POPUP_PICTURE) if hit.assets.get("image") else None
    if uri:
        parts.append(f'<img src="{uri}" alt="" width="{POPUP_PICTURE}" height="{POPUP_PICTURE}">')
    parts += said_parts(hit, 300)
    # the pop-up shows on keyboard focus too: it says how to open the item (`compare_view.ENTER_OPENS`)
    parts.append('<div style="font-size:0.8em;color:#444">Enter: look closer at it, below</div>')
    where = " ".join(["cmp-pop"] + (["up"] if up else []) + (["end"] if end else []))
    return f'<div class="{where}" role="tooltip">{"".join(parts)}</div>'


def shown_items(hits_by_method: dict[str, list[Hit]]) -> dict[int, tuple[Hit, list[str]]]:
    """Each item shown, in order of first appearance (rank by rank across methods), with "late #1"-style
    places under every method that has it and "not in gated's top 10" under each that does not."""
    items: dict[int, tuple[Hit, list[str]]] = {}
    depth = max((len(hits) for hits in hits_by_method.values()), default=0)
    for rank in range(depth):
        for label, hits in hits_by_method.items():
            if rank < len(hits):
                hit = hits[rank]
                items.setdefault(hit.item_id, (hit, []))[1].append(f"{label} #{hit.rank}")
    for label, hits in hits_by_method.items():
        ranked = {h.item_id for h in hits}
        for item_id, (_, places) in items.items():
            if item_id not in ranked:
                places.append(f"not in {label}'s top {len(hits)}")
    return items


def render(
    hits_by_method: dict[str, list[Hit]], on_example: Callable[[int], None], action: str = "Search with this item"
) -> None:
    """The selector and, once an item is chosen, its panel. `on_example(item_id)` runs on the panel's button."""
    items = shown_items(hits_by_method)
    if not items:
        return
    if st.session_state.get(LOOK_KEY) not in items:
        st.session_state[LOOK_KEY] = None  # none yet, or an item of an earlier query's results
    chosen = st.selectbox(
        "Look closer at a result",
        list(items),
        key=LOOK_KEY,
        placeholder="Choose a result: its picture, sound, text and transcript",
        format_func=lambda item: f"{items[item][0].key} ({', '.join(items[item][1])})",
    )
    if chosen is not None:
        panel(*items[chosen], on_example, action)


def panel(hit: Hit, places: list[str], on_example: Callable[[int], None], action: str) -> None:
    """One result's picture, player, text, transcript, metadata and places, and the button `action`."""
    with st.container(border=True):
        st.markdown(f"**{md(hit.key)}**: {md(', '.join(places))}")
        left, right = st.columns([1, 2])
        uri = thumbnail_uri(hit.assets["image"], PANEL_PICTURE * 2) if hit.assets.get("image") else None
        if uri:
            left.html(
                f'<img src="{uri}" alt="{html.escape(hit.key)}" width="{PANEL_PICTURE}" height="{PANEL_PICTURE}" '
                'style="image-rendering:pixelated;object-fit:contain">'
            )
        with right:
            clip = served_bytes(hit.assets["audio"]) if hit.assets.get("audio") else None
            if clip:
                player(clip)
            if hit.text:
                st.text(hit.text)
            if hit.transcript:
                st.text(heard_text(hit.transcript))
            if hit.metadata:
                st.text(", ".join(f"{k}={v}" for k, v in hit.metadata.items()))
            st.button(action, key=f"look-example-{hit.item_id}", on_click=on_example, args=(hit.item_id,))
