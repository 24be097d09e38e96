"""Item page: one item's media and metadata, and its nearest neighbours under each method."""

from __future__ import annotations

from functools import partial

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


def _open(key: str, _item_id: int) -> None:
    """A neighbour's button: show that item."""
    st.session_state["item_key"] = key


def render(settings: Settings) -> None:
    st.header("Item")
    engine = engine_for(settings.url, settings.collection)
    keys = engine.catalogue.item_keys()
    by_key = {key: item_id for item_id, key in keys.items()}
    ordered = sorted(by_key)
    current = keys.get(st.session_state.get("example") or -1, ordered[0] if ordered else None)
    if current is None:
        st.info("This collection has no items yet.")
        return
    key = st.selectbox("Item", ordered, index=ordered.index(current), key="item_key")
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
    st.json(meta)
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
