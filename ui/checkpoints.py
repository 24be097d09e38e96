"""The Index page's list of a learned strategy's saved models, and the choice of the one that answers for it in
Search and Evaluate: an earlier model restored in one click (issue 37, item 1: "choose or restore")."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from retrieval.errors import reportable
from retrieval.results import CheckpointInfo
from ui.plain import md
from ui.provenance import describe
from ui.tables import table as show_table


def table(saved: list[CheckpointInfo], answering: str | None) -> pd.DataFrame:
    """One row per model: name, training date, items, split, final loss, and which answers now."""
    return pd.DataFrame(
        [
            {
                "answers now": "✓" if info.file == answering else "",
                "model": info.name,
                "trained (UTC)": f"{info.trained_at:%Y-%m-%d %H:%M}",
                "items": info.items,
                "split": ", ".join(f"{k}={v}" for k, v in info.where) or "every item",
                "final loss": info.final_loss,
            }
            for info in saved
        ]
    )


def render(engine: Any, strategy: str) -> None:
    """The saved models of `strategy` and, with two or more, a choice of the one that answers."""
    said = st.session_state.pop(f"checkpoint_said_{strategy}", None)
    saved = engine.models.saved(strategy)
    if not saved:
        return
    answering = engine.models.latest(strategy)
    st.markdown(f"**Saved models of '{md(strategy)}'** ({len(saved)})")
    show_table(table(saved, answering), hide_index=True)  # cells are text, never markdown
    if said is not None:
        (st.success if said[0] else st.error)(said[1])
    if len(saved) < 2:
        return
    by_file = {info.file: info for info in saved}
    files = list(by_file)
    chosen = st.selectbox(
        f"Model that answers '{strategy}' in Search and Evaluate",
        files,
        index=files.index(answering) if answering in by_file else 0,
        format_func=lambda file: by_file[file].name,
        key=f"checkpoint_choice_{strategy}",
    )
    if chosen != answering:
        # a callback, so that the list above shows the change in the run the click starts
        st.button(
            "Use this model",
            key=f"checkpoint_use_{strategy}",
            type="primary",
            on_click=use,
            args=(engine, strategy, chosen, by_file.get(answering or "")),
        )


def use(engine: Any, strategy: str, file: str, before: CheckpointInfo | None) -> None:
    """The button's callback: the choice made, and what it changed said on the page (a user error as one line)."""
    try:
        info = engine.models.use(strategy, file)
    except Exception as exc:
        if not reportable(exc):
            raise
        st.session_state[f"checkpoint_said_{strategy}"] = (False, md(exc))
        return
    instead = f" instead of {describe(before)}" if before else ""
    said = f"Search and Evaluate now answer '{md(strategy)}' with {describe(info)}{instead}."
    st.session_state[f"checkpoint_said_{strategy}"] = (True, said)
