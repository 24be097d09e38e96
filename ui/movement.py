"""How an item moved against the first method, as a mark both the grid and the cards draw."""

from __future__ import annotations

import html


def movement_mark(change: str | None) -> str:
    """▲n / ▼n / new against the first method (plain symbols: headless browsers often lack emoji fonts)."""
    if not change or change == "same":
        return ""
    if change == "new":
        return ' <span style="color:#2b7a0b;font-size:0.8em">new</span>'
    direction, _, steps = change.partition(" ")
    colour = "#2b7a0b" if direction == "up" else "#b23b3b"
    return f' <span style="color:{colour}">{"▲" if direction == "up" else "▼"}{html.escape(steps)}</span>'
