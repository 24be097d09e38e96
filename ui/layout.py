"""Small layouts shared by the pages."""

from __future__ import annotations

from typing import Any

import streamlit as st


def line_and_button() -> Any:
    """A row for a line of text and its button: the button keeps its whole label and moves under the text
    when the row is too narrow. Columns of [4, 1] cut "Back to your own query" to "Back to your own …" at
    1280 px (issue 37's walkthrough, #7)."""
    return st.container(horizontal=True, vertical_alignment="center", gap="small")
