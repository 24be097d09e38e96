"""An audio player with the clip's length beside it: the browser's player rounds to whole seconds, so a
0.37 s digit read "0:00" (issue 37)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import soundfile
import streamlit as st


def clip_seconds(data: bytes) -> float | None:
    """The clip's length in seconds, or None where soundfile cannot read its header."""
    try:
        return float(soundfile.info(io.BytesIO(data)).duration)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None


def length_text(seconds: float) -> str:
    """ "0.37 s" under ten seconds, "12.4 s" above: a short clip's length to the hundredth."""
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def player(clip: bytes | str | Path, where: Any = st) -> None:
    """`where.audio(clip)` and, under it, the clip's length (`where`: st, a column or a container)."""
    data = clip if isinstance(clip, bytes) else Path(clip).read_bytes()
    where.audio(data)
    seconds = clip_seconds(data)
    if seconds is not None:
        where.caption(f"clip length {length_text(seconds)}")
