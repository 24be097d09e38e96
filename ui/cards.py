"""One result card: thumbnail, audio player, text, score, a bar of each modality's share, movement."""

from __future__ import annotations

import html

import streamlit as st

from retrieval.media import served_bytes
from retrieval.results import Hit
from ui.plain import md

COLOURS = {"image": "#4C78A8", "audio": "#F58518", "text": "#54A24B"}


def contribution_bar(contributions: dict[str, float]) -> str:
    """A small stacked bar: each query modality's share of the score (negative terms in grey)."""
    total = sum(abs(v) for v in contributions.values()) or 1.0
    parts = "".join(
        f'<div title="{html.escape(m)} {v:.3f}" style="width:{100 * abs(v) / total:.1f}%;'
        f'background:{COLOURS.get(m, "#9D9D9D")};height:8px"></div>'
        for m, v in contributions.items()
    )
    legend = " · ".join(
        f'<span style="color:{COLOURS.get(m, "#777")}">{html.escape(m)} {v:.2f}</span>'
        for m, v in contributions.items()
    )
    return (
        f'<div style="display:flex;width:100%;border-radius:3px;overflow:hidden">{parts}</div>'
        f'<div style="font-size:0.75em">{legend}</div>'
    )


def movement_badge(change: str | None) -> str:
    if not change or change == "same":
        return ""
    if change == "new":
        return " 🆕"
    direction, _, steps = change.partition(" ")
    return f" {'⬆' if direction == 'up' else '⬇'}{steps}"


def heard_line(transcript: dict) -> str:
    """What the recording says, as the model heard it, and how sure it was; the text escaped."""
    said = md(transcript["text"][:200]) if transcript["text"] else "(no words heard)"
    sure = "" if transcript.get("confidence") is None else f" · confidence {transcript['confidence']:.2f}"
    language = f" · {transcript['language']}" if transcript.get("language") else ""
    return f"heard: “{said}”{language}{sure} · {md(transcript['model'])}"


def served(path: str | None) -> bytes | None:
    return served_bytes(path) if path else None


def result_card(
    hit: Hit,
    method: str,
    change: str | None,
    on_example,  # noqa: ANN001
    action: str = "Search with this item",
) -> None:
    """`on_example(item_id)` runs when the card's button (labelled `action`) is pressed."""
    with st.container(border=True):
        st.markdown(
            f"**{hit.rank}. {md(hit.key)}**{movement_badge(change)}  \nscore `{hit.score:.3f}`",
            help=md(", ".join(f"{k}={v}" for k, v in hit.metadata.items())) or None,
        )
        image, audio = served(hit.assets.get("image")), served(hit.assets.get("audio"))
        if image:
            st.image(image, width=72)
        if audio:
            st.audio(audio)
        if hit.text:
            st.caption(md(hit.text[:200]))
        if hit.transcript:
            st.caption(heard_line(hit.transcript))
        if hit.contributions:
            st.markdown(contribution_bar(hit.contributions), unsafe_allow_html=True)
        st.button(
            action,
            key=f"example-{method}-{hit.item_id}",
            on_click=on_example,
            args=(hit.item_id,),
            width="stretch",
        )
