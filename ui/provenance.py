"""Which models answered: the collection's profile (the encoders that embedded the query and the items) and,
for each learned method, the checkpoint it searched with: its name, when and on how many items it was trained,
its final loss. Training swapped the model under Search without a word (issue 37, item 1)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from retrieval.results import CheckpointInfo, SearchResult
from ui.plain import md


def profile_line(engine: Any) -> str:
    """'Encoders: profile offline v2 (image: hog; audio: speech; text: sbert)' (markdown)."""
    profile = engine.profile
    encoders = "; ".join(f"{m}: {', '.join(names)}" for m, names in profile.encoders.items() if names)
    heard = f"; transcripts by {profile.transcriber}" if profile.transcriber else ""
    return f"Encoders: profile {md(profile.name)} v{profile.version} ({md(encoders + heard)})"


def checkpoint_line(engine: Any, label: str, result: SearchResult) -> str | None:
    """Which trained model a learned method searched with (markdown); None for a method that uses none."""
    file = result.params.get("checkpoint")
    if not file:
        return None
    info = engine.models.info(str(file))
    if info is None:
        return f"**{md(label)}** answers with the model {md(file)} (not trained on this collection)"
    return f"**{md(label)}** answers with the model {describe(info)}, for the encoders {md(', '.join(info.encoders))}"


def describe(info: CheckpointInfo) -> str:
    """'gated.safetensors, trained 2026-12-07 11:22 UTC on 176 items (split=train), final loss 5.762' (markdown)."""
    loss = f", final loss {info.final_loss:.3f}" if info.final_loss is not None else ""
    split = ", ".join(f"{k}={v}" for k, v in info.where) if info.where else "every item"
    return f"{md(info.name)}, trained {info.trained_at:%Y-%m-%d %H:%M} UTC on {info.items:,} items ({md(split)}){loss}"


def render(engine: Any, results: dict[str, SearchResult]) -> None:
    """The profile, then a line per learned method, as captions above the results."""
    st.caption(profile_line(engine))
    for label, result in results.items():
        line = checkpoint_line(engine, label, result)
        if line is not None:
            st.caption(line)
