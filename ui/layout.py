"""Small layouts shared by the pages."""

from __future__ import annotations

from typing import Any

import streamlit as st


def line_and_button() -> Any:
    """A row for a line of text and its button: the button keeps its whole label and moves under the text
    when the row is too narrow. Columns of [4, 1] cut "Back to your own query" to "Back to your own …" at
    1280 px (issue 37's walkthrough, #7)."""
    return st.container(horizontal=True, vertical_alignment="center", gap="small")


PHONE_WIDTH = 640  # px: under it the grid's pop-up sits across the window's bottom (ui/detail.py) too

# On a phone the sections below the results (comparison, explanations) made a two-method search's page 3,900 px
# tall (walkthrough #15). Each sits in an expander keyed `fold_*`, open on a wider screen; under PHONE_WIDTH this
# script closes each such expander once, through its own summary, so a person opens the one they want and it
# stays as they left it. The app's own script, no collection text.
FOLD_ON_PHONE = f"""
<script>
if (!window.__foldOnPhone) {{
  window.__foldOnPhone = true;
  const fold = () => {{
    if (window.innerWidth >= {PHONE_WIDTH}) return;
    document.querySelectorAll('[class*="st-key-fold_"] details').forEach(d => {{
      if (d.dataset.folded) return;
      d.dataset.folded = '1';
      if (d.open) d.querySelector('summary').click();
    }});
  }};
  new MutationObserver(fold).observe(document.body, {{childList: true, subtree: true}});
  fold();
}}
</script>
"""


def folded_on_phone(label: str, key: str) -> Any:
    """An expander open on a wide screen and closed once on a phone (`FOLD_ON_PHONE`); `key` names it."""
    st.html(FOLD_ON_PHONE, unsafe_allow_javascript=True)
    return st.expander(label, expanded=True, key=f"fold_{key}")
