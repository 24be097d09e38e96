"""Example queries for an empty Search page: a few texts from the collection's labelled queries file (the
demo writes one; RETRIEVAL_QUERIES names another), each a button that fills the Text box.

A file whose queries name none of the collection's items (their `exclude` keys) belongs to another
collection, so it offers nothing: the demo's default file stays put when a person indexes their own media.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import streamlit as st

from retrieval.errors import InvalidInputError
from retrieval.evaluate import load_queries
from ui.plain import md
from ui.query import clear_example

EXAMPLES = 4


def example_texts(path: Path, keys: Collection[str], n: int = EXAMPLES) -> list[str]:
    """Up to `n` distinct texts of the file's text-only queries, those of several words first (a phrase shows
    what can be asked better than "4"); [] when the file is missing or unreadable, or is another collection's."""
    try:
        queries = load_queries(path)
    except (OSError, InvalidInputError):
        return []
    named = [q.exclude for q in queries if q.exclude]
    if named and not any(key in keys for key in named):
        return []
    texts = dict.fromkeys(
        q.query.text for q in queries if q.query.text and q.query.image is None and q.query.audio is None
    )
    return sorted(texts, key=lambda text: len(text.split()) < 2)[:n]


def _fill(text: str) -> None:
    st.session_state["query_text"] = text
    clear_example()


def render(path: Path, keys: Collection[str]) -> None:
    """A row of buttons, one per example text (shown as text: a query file's text is never rendered)."""
    texts = example_texts(path, keys)
    if not texts:
        return
    st.caption("Or try one of the collection's example queries:")
    for n, (column, text) in enumerate(zip(st.columns(len(texts)), texts)):
        column.button(md(text), key=f"example_query_{n}", on_click=_fill, args=(text,))
