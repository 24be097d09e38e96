"""Item page: one item's media and metadata, and its nearest neighbours under each method."""

from __future__ import annotations

import json
from functools import partial

import pandas as pd
import streamlit as st

from retrieval.media import served_bytes
from retrieval.results import Hit
from ui import detail
from ui.cards import heard_line, result_card
from ui.plain import md
from ui.players import player
from ui.results_cache import cached_search
from ui.scores import result_meaning
from ui.state import Settings, engine_for
from ui.tables import table

SEEN_KEY = "item_seen"  # what the Search page had opened when this page last looked: {source: item id}


def _open(key: str, _item_id: int) -> None:
    """A neighbour's button: show that item."""
    st.session_state["item_key"] = key


def opened_elsewhere(keys: dict[int, str]) -> str | None:
    """The key of the item opened since this page last looked, if any: the one chosen in
    "Look closer at a result" (at 400 px the page showed the first item instead: walkthrough 4, #10) or the
    one searched with; the one in "Look closer" wins when both changed (its panel is where one looks last)."""
    seen = st.session_state.setdefault(SEEN_KEY, {})
    opened = None
    for source in ("example", detail.LOOK_KEY):
        value = st.session_state.get(source)
        if value != seen.get(source):
            seen[source] = value
            opened = keys.get(value, opened) if value is not None else opened
    return opened


def metadata_table(meta: dict) -> pd.DataFrame:
    """The item's metadata as rows of field and value, each value as text (nested values as JSON)."""
    return pd.DataFrame(
        {
            "field": [str(k) for k in meta],
            "value": [v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in meta.values()],
        }
    )


def render(settings: Settings) -> None:
    st.header("Item")
    engine = engine_for(settings.url, settings.collection)
    keys = engine.catalogue.item_keys()
    by_key = {key: item_id for item_id, key in keys.items()}
    ordered = sorted(by_key)
    if not ordered:
        st.info("This collection has no items yet.")
        return
    # arriving from another page (which dropped this page's choice): its own "Look closer" changes no item
    arriving = "item_key" not in st.session_state
    opened = opened_elsewhere(keys)
    if arriving and opened is not None:
        st.session_state["item_key"] = opened  # set, so the browser shows it too
    elif st.session_state.get("item_key") not in by_key:  # dropped on another page: the one shown last
        st.session_state["item_key"] = (
            st.session_state.get("item_shown") if st.session_state.get("item_shown") in by_key else ordered[0]
        )
    key = st.selectbox("Item", ordered, key="item_key")
    st.session_state["item_shown"] = key
    item = engine.catalogue.items([by_key[key]])[by_key[key]]
    assets = {a.modality: a for a in item.assets}
    meta = dict(item.meta)
    columns = st.columns(3)
    for column, modality in zip(columns, ("image", "audio", "text")):
        asset = assets.get(modality)
        with column:
            st.markdown(f"**{modality}**")
            if asset is None:
                st.caption("none")
            elif asset.status != "ok":
                st.error(md(asset.error or "could not be read"))
            elif modality == "image" and (image := served_bytes(asset.path)):
                st.image(image, width=140)
            elif modality == "audio" and (audio := served_bytes(asset.path)):
                player(audio)
                transcript = engine.catalogue.transcript(item.id)
                if transcript:
                    st.caption(heard_line(transcript))
            else:
                st.text(asset.preview or asset.path)
    if meta:  # a table of text cells: collection text is shown as text, never rendered
        table(metadata_table(meta), hide_index=True)
    query = engine.catalogue.item_query(by_key[key])
    if query is None or not settings.methods:
        return
    st.subheader("Nearest neighbours")
    st.caption("Each method's ranks of this item's own query; the item itself, left out, is usually #1.")
    # kept per session like the Search page's (each visit searched again: 0.4 s of its 1 s with five methods)
    results = cached_search(engine, settings.collection, query, settings.methods, settings.k + 1)
    neighbours: dict[str, list[Hit]] = {}
    for column, (label, result) in zip(st.columns(len(results)), results.items()):
        with column:
            st.markdown(f"**{label}**")
            if not result.error:
                st.caption(f"score: {md(result_meaning(result))}")
            if result.error:
                st.warning(md(result.error))
            for hit in neighbours.setdefault(label, [h for h in result.hits if h.item_id != item.id][: settings.k]):
                result_card(hit, f"item-{label}", None, partial(_open, hit.key), action="Open this item")
    detail.render(neighbours, lambda item_id: _open(keys[item_id], item_id), action="Open this item")
