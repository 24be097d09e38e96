"""Search page: a text, an image, an audio clip (uploaded or recorded), any mix; results per method."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from retrieval.compare import compare_results
from retrieval.media import MediaError
from retrieval.plots import bump_chart
from retrieval.results import QueryInput
from ui import compare_view, explain
from ui.cards import result_card
from ui.state import MAX_UPLOAD_BYTES, Settings, engine_for

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp"]
AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]


def _use_example(item_id: int) -> None:
    st.session_state["example"] = item_id


def _upload(widget, label: str) -> bytes | None:  # noqa: ANN001
    if widget is None:
        return None
    data = widget.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        raise MediaError(
            widget.name,
            f"{label} is {len(data) // 1024 // 1024} MB, over the limit of {MAX_UPLOAD_BYTES // 1024 // 1024} MB",
        )
    return data


def _example_query(engine, item_id: int) -> QueryInput | None:  # noqa: ANN001
    from storage.repository import items_by_ids

    with engine.db.session() as session:
        item = items_by_ids(session, [item_id]).get(item_id)
        if item is None:
            return None
        ok = {a.modality: a for a in item.assets if a.status == "ok"}
        st.info(f"Searching with item **{item.key}** (its {', '.join(sorted(ok))}).")
        return QueryInput(
            text=ok["text"].preview if "text" in ok else None,
            image=ok["image"].path if "image" in ok else None,
            audio=ok["audio"].path if "audio" in ok else None,
        )


def render(settings: Settings) -> None:
    st.header("Search")
    engine = engine_for(settings.url, settings.collection)
    left, right = st.columns([2, 3])
    text = left.text_input("Text", key="query_text", placeholder="e.g. the digit seven")
    image = right.file_uploader("Image", type=IMAGE_TYPES, key="query_image")
    audio = left.file_uploader("Audio clip", type=AUDIO_TYPES, key="query_audio")
    recorded = right.audio_input("…or record one", key="query_recording")
    query: QueryInput | None
    try:
        query = QueryInput(
            text=text.strip() or None,
            image=_upload(image, "the image"),
            audio=_upload(audio, "the audio clip") or _upload(recorded, "the recording"),
        )
    except MediaError as exc:
        st.error(f"That upload cannot be used: {exc.reason}.")
        return
    if st.session_state.get("example") is not None:
        if st.button("Clear the example item", key="clear_example"):
            st.session_state["example"] = None
            st.rerun()
        query = _example_query(engine, st.session_state["example"]) or query
    if not query.present():
        st.info(
            "Type a text, upload an image or an audio clip, or record one: any mix works. "
            "Each method below searches with everything you give, and you can compare them side by side."
        )
        return
    if not settings.methods:
        st.warning("Choose at least one fusion method in the sidebar.")
        return
    show_results(engine, query, settings)


def show_results(engine, query: QueryInput, settings: Settings) -> None:  # noqa: ANN001
    started = time.perf_counter()
    try:
        everything = engine.search_many(query, settings.methods, k=settings.k, keep_going=True)
    except MediaError as exc:
        st.error(f"That file cannot be used: {exc.reason}.")
        return
    elapsed = time.perf_counter() - started
    results = {label: r for label, r in everything.items() if r.error is None}
    problems = {label: r.error for label, r in everything.items() if r.error is not None}
    st.caption(f"Searched {len(everything)} method(s) in {elapsed * 1000:.0f} ms.")
    comparison = compare_results(results, settings.k) if results else None
    compact = compare_view.compact_chosen()
    if compact:
        compare_view.render(results, problems, comparison, settings.k)
    columns = [] if compact else st.columns(len(settings.methods))  # the cards, when the grid is off
    for column, method in zip(columns, settings.methods):
        with column:
            if method.label in problems:
                st.subheader(method.label)
                st.warning(problems[method.label])
                continue
            result = results[method.label]
            st.subheader(method.label)
            st.caption(f"{result.seconds * 1000:.1f} ms · {_describe(result.params)}")
            if not result.hits:
                st.write("No item shares a modality with this query.")
            changes = {m.item_id: m.change.get(method.label) for m in comparison.items} if comparison else {}
            for hit in result.hits:
                result_card(hit, method.label, changes.get(hit.item_id), _use_example)
    if comparison and len(results) > 1:
        st.subheader("How the methods differ")
        for line in comparison.summary:
            st.write(line)
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "methods": f"{p.a} vs {p.b}",
                        f"overlap@{settings.k}": p.overlap,
                        "Jaccard": p.jaccard,
                        "RBO": p.rbo,
                        "Kendall's tau": p.kendall_tau,
                    }
                    for p in comparison.pairs
                ]
            ).round(3),
            hide_index=True,
        )
        st.altair_chart(bump_chart(comparison), width="stretch")
    if results:
        with st.expander("Why these results", expanded=True):
            explain.render(engine, query, settings.methods, results)


def _describe(params: dict) -> str:
    keep = {k: v for k, v in params.items() if k in ("normalisation", "fusion", "rrf_k", "weights", "mode", "blend")}
    return ", ".join(f"{k}={v}" for k, v in keep.items()) or "defaults"
