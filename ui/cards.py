"""One result card: picture, key, score, movement, text, transcript, a bar of each modality's share, a button.

A card's content is one HTML element (collection text escaped), not six Streamlit elements: 50 cards of
markdown, captions, images and audio players took Chromium seconds to draw at each rerun, each image and
player a request of its own (issue 37, item 6; bench/ui_views.py).
"""

from __future__ import annotations

import html
from collections.abc import Callable

import streamlit as st

from retrieval.results import Hit
from ui.movement import movement_mark
from ui.plain import md
from ui.thumbnails import thumbnail_uri

COLOURS = {"image": "#4C78A8", "audio": "#F58518", "text": "#54A24B"}
# the same hues dark enough for small text on white (at least 4.5:1, WCAG AA; the bar colours are 2.5-4.6:1)
TEXT_COLOURS = {"image": "#3B5F86", "audio": "#A8530A", "text": "#2F6B2A"}
PICTURE = 72  # px
TEXT_STYLE = "font-size:0.85em;overflow-wrap:anywhere"
PICTURE_STYLE = f"width:{PICTURE}px;height:{PICTURE}px;object-fit:contain;image-rendering:pixelated"


def _bar_parts(contributions: dict[str, float], total: float, hatched: bool = False) -> str:
    """One div per modality, `abs(v) / total` of the width; `hatched` (striped): a term that lowers the score."""

    def fill(colour: str) -> str:
        return f"repeating-linear-gradient(45deg,{colour} 0 3px,#fff 3px 5px)" if hatched else colour

    return "".join(
        f'<div title="{html.escape(m)} {v:+.3f}" style="width:{100 * abs(v) / total:.1f}%;'
        f'background:{fill(COLOURS.get(m, "#9D9D9D"))};height:8px"></div>'
        for m, v in contributions.items()
    )


def contribution_bar(contributions: dict[str, float]) -> str:
    """A small bar of what each query modality adds to the score. With a negative term it is split at zero:
    what lowers the score left of the mark, what raises it right (a negative term was drawn as a positive
    share: issue 37)."""
    legend = " · ".join(
        f'<span style="color:{TEXT_COLOURS.get(m, "#595959")}">{html.escape(m)} {v:.2f}</span>'
        for m, v in contributions.items()
    )
    legend_html = f'<div style="font-size:0.75em">{legend}</div>'
    lowers = {m: v for m, v in contributions.items() if v < 0}
    if not lowers:
        total = sum(contributions.values()) or 1.0
        bar = _bar_parts(contributions, total)
        return f'<div style="display:flex;width:100%;border-radius:3px;overflow:hidden">{bar}</div>{legend_html}'
    raises = {m: v for m, v in contributions.items() if v >= 0}
    total = sum(abs(v) for v in contributions.values()) or 1.0
    share = 100 * sum(-v for v in lowers.values()) / total
    # each side's parts are sized within their own half, so widths stay proportional across the zero mark
    left = _bar_parts(lowers, sum(-v for v in lowers.values()), hatched=True)
    right = _bar_parts(raises, sum(raises.values()) or 1.0)
    return (
        '<div class="contribution-split" style="display:flex;width:100%;height:8px">'
        f'<div class="lowers" title="lowers the score" style="width:{share:.1f}%;display:flex;'
        f'flex-direction:row-reverse">{left}</div>'
        '<div style="width:2px;background:#222;height:12px;margin-top:-2px"></div>'
        f'<div class="raises" style="width:{100 - share:.1f}%;display:flex">{right}</div></div>'
        f'<div style="font-size:0.75em">{legend} · striped, left of the mark: lowers the score</div>'
    )


def heard_text(transcript: dict, escape: Callable[[str], str] = str) -> str:
    """What the recording says, as the model heard it, and how sure it was; `escape` applied to the words and
    the model's name (`md` for a caption; plain text for HTML, escaped there as a whole)."""
    said = escape(transcript["text"][:200]) if transcript["text"] else "(no words heard)"
    sure = "" if transcript.get("confidence") is None else f" · confidence {transcript['confidence']:.2f}"
    language = f" · {transcript['language']}" if transcript.get("language") else ""
    return f"heard: “{said}”{language}{sure} · {escape(transcript['model'])}"


def heard_line(transcript: dict) -> str:
    """`heard_text` for a caption (markdown)."""
    return heard_text(transcript, md)


def said_parts(hit: Hit, limit: int, attributes: str = "") -> list[str]:
    """The item's text (its first `limit` characters) and transcript, each escaped in a div of `attributes`."""
    parts = []
    if hit.text:
        parts.append(f"<div{attributes}>{html.escape(hit.text[:limit])}</div>")
    if hit.transcript:
        parts.append(f"<div{attributes}>{html.escape(heard_text(hit.transcript))}</div>")
    return parts


def card_html(hit: Hit, change: str | None) -> str:
    """The card's content as HTML, every piece of the collection's text escaped; its metadata on hover."""
    meta = ", ".join(f"{k}={v}" for k, v in hit.metadata.items())
    parts = [
        f'<div title="{html.escape(meta)}"><b>{hit.rank}. {html.escape(hit.key)}</b>'
        f"{movement_mark(change)}<br>score <code>{hit.score:.3f}</code></div>"
    ]
    uri = thumbnail_uri(hit.assets["image"], PICTURE) if hit.assets.get("image") else None
    if uri:
        parts.append(f'<img src="{uri}" alt="{html.escape(hit.key)}" style="{PICTURE_STYLE}">')
    parts += said_parts(hit, 200, f' style="{TEXT_STYLE}"')
    if hit.contributions:
        parts.append(contribution_bar(hit.contributions))
    return "".join(parts)


def result_card(
    hit: Hit,
    method: str,
    change: str | None,
    on_example: Callable[[int], None],
    action: str = "Search with this item",
) -> None:
    """`on_example(item_id)` runs when the card's button (labelled `action`) is pressed. No audio player: one
    is made on demand, for the item chosen under "Look closer at a result" (`ui.detail`)."""
    with st.container(border=True):
        st.html(card_html(hit, change))
        st.button(
            action,
            key=f"example-{method}-{hit.item_id}",
            on_click=on_example,
            args=(hit.item_id,),
            width="stretch",
        )
