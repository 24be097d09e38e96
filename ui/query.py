"""The Search page's query: the widgets, uploads kept across pages, query by example, and the query shown.

Uploads and the typed text live in Streamlit's widgets, which forget them when another page is shown; each
is therefore also kept in the session (`kept_<key>`): an upload until the person removes it, the text as typed. Any change to the query
widgets ends a query by example, so what is typed or uploaded is never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from retrieval.media import MediaError, load_image
from retrieval.results import QueryInput
from ui.layout import line_and_button
from ui.plain import md
from ui.players import player
from ui.state import MAX_UPLOAD_BYTES

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp"]
AUDIO_TYPES = ["wav", "flac", "ogg", "mp3"]
UPLOADS = {"query_image": "the image", "query_audio": "the audio clip", "query_recording": "the recording"}


@dataclass
class Upload:
    name: str
    data: bytes


def use_example(item_id: int) -> None:
    st.session_state["example"] = item_id
    st.session_state["scroll_to_query"] = st.session_state.get("scroll_to_query_count", 0) + 1


# The page to the query's banner: the button pressed sits mid-results, and the browser kept that scroll
# position while the page above it changed, so the new query was off screen (issue 37, item 6). The script
# is the app's own (no collection text); `n` makes each press a new element, so it runs once per press.
SCROLL_TO_QUERY = (
    '<div id="query-top-{n}" style="scroll-margin-top:4rem"></div>'
    "<script>document.getElementById('query-top-{n}').scrollIntoView({{block: 'start'}})</script>"
)


def scroll_to_query() -> None:
    """Once after a query by example was chosen: bring the query into view."""
    n = st.session_state.pop("scroll_to_query", None)
    if n is not None:
        st.session_state["scroll_to_query_count"] = n
        st.html(SCROLL_TO_QUERY.format(n=n), unsafe_allow_javascript=True)


# Chromium fires no change for a file input given the path it already holds, so a query file saved anew
# under its name and given again was ignored and the old content searched (walkthrough #2). Streamlit's
# uploader empties its input before it opens the file dialog, not after a file arrives: this empties every
# file input once its change has been read, so the same path given again is a change. The app's own script.
FORGET_FILE_PATHS = """
<script>
if (!window.__forgetFilePaths) {
  window.__forgetFilePaths = true;
  document.addEventListener('change', e => {
    if (e.target instanceof HTMLInputElement && e.target.type === 'file') setTimeout(() => { e.target.value = ''; });
  }, true);
}
</script>
"""


def clear_example() -> None:
    st.session_state["example"] = None


def _keep(key: str) -> None:
    """on_change of an uploader: remember its file (or that it was removed), and end a query by example."""
    widget = st.session_state.get(key)
    st.session_state[f"kept_{key}"] = None if widget is None else Upload(widget.name, widget.getvalue())
    clear_example()


def _forget(key: str) -> None:
    st.session_state[f"kept_{key}"] = None


def _upload(key: str) -> Upload | None:
    """The widget's file, else the one kept from before a page switch; refused when empty or too big."""
    widget = st.session_state.get(key)
    upload = Upload(widget.name, widget.getvalue()) if widget is not None else st.session_state.get(f"kept_{key}")
    if upload is None:
        return None
    if widget is None:
        left = right = line_and_button()
        left.caption(f"{UPLOADS[key].capitalize()}: {md(upload.name)} (uploaded before you changed page).")
        right.button("Remove", key=f"forget_{key}", on_click=_forget, args=(key,))
    if not upload.data:
        raise MediaError(upload.name, f"{UPLOADS[key]} is empty (0 bytes)")
    if len(upload.data) > MAX_UPLOAD_BYTES:
        raise MediaError(
            upload.name,
            f"{UPLOADS[key]} is {len(upload.data) // 1024 // 1024} MB, over the limit of "
            f"{MAX_UPLOAD_BYTES // 1024 // 1024} MB",
        )
    return upload


def query_widgets(hears: bool = False) -> QueryInput:
    """The person's own query from the widgets; raises MediaError for an unusable upload. `hears`: the
    collection keeps transcripts, so a clip may also be searched by what it says."""
    st.html(FORGET_FILE_PATHS, unsafe_allow_javascript=True)
    left, right = st.columns([2, 3])
    if "query_text" not in st.session_state:  # dropped with the widget on another page: bring the text back
        st.session_state["query_text"] = st.session_state.get("kept_query_text", "")
    text = left.text_input("Text", key="query_text", placeholder="e.g. the digit seven", on_change=clear_example)
    st.session_state["kept_query_text"] = text
    right.file_uploader("Image", type=IMAGE_TYPES, key="query_image", on_change=_keep, args=("query_image",))
    left.file_uploader("Audio clip", type=AUDIO_TYPES, key="query_audio", on_change=_keep, args=("query_audio",))
    right.audio_input("…or record one", key="query_recording", on_change=_keep, args=("query_recording",))
    image = _upload("query_image")
    if image is not None:
        try:  # a broken image is refused here, before it is shown or searched with
            load_image(image.data)
        except MediaError as exc:
            raise MediaError(image.name, f"the image cannot be read ({exc.reason})") from exc
    audio = _upload("query_audio")
    recorded = _upload("query_recording")
    clip = audio if audio is not None else recorded
    transcribe = hears and left.checkbox(
        "Also search by what the clip says",
        key="query_transcribe",
        help="The clip is transcribed (about half a second) and its words search the texts and transcripts.",
    )
    return QueryInput(
        text=text.strip() or None,
        image=image.data if image else None,
        audio=clip.data if clip else None,
        transcribe=bool(transcribe and clip),
    )


def example_query(engine, item_id: int) -> tuple[str, QueryInput] | None:  # noqa: ANN001
    """The item's key and its media as a query, or None when it is gone."""
    item = engine.catalogue.items([item_id]).get(item_id)
    query = engine.catalogue.item_query(item_id) if item is not None else None
    return None if query is None else (item.key, query)


def show_query(query: QueryInput, example: str | None) -> Any:
    """What is searched with, above the results: the example item or the person's own text and media. Returns
    the query's box, where the page then says how each method weighed the inputs."""
    box = st.container(border=True)
    with box:
        if example is not None:
            scroll_to_query()
            left = right = line_and_button()
            left.markdown(f"**Query: the item {md(example)}** (its {', '.join(query.present())})")
            right.button("Back to your own query", key="clear_example", on_click=clear_example, type="primary")
        else:
            st.markdown(f"**Query:** {', '.join(query.present())}")
        columns = st.columns(3)
        if query.text is not None:
            columns[0].markdown(f"> {md(query.text)}")
        if query.image is not None and (not isinstance(query.image, str | Path) or Path(query.image).is_file()):
            columns[1].image(query.image, width=96)
        audio = query.audio
        if isinstance(audio, bytes) or (isinstance(audio, str | Path) and Path(audio).is_file()):
            player(audio, columns[2])
    return box
