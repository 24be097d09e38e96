"""Text from a collection on a terminal: shown, never obeyed.

A file name, key, label or transcript can hold control characters: ESC sequences that clear the screen, set
the window title or recolour what follows, a newline that forges a report line, a bidirectional override that
reorders what is read. The CLIs print such text through `plain`, as the UI escapes HTML; `--json` output is
escaped by JSON itself.
"""

from __future__ import annotations

import unicodedata

# bidirectional overrides and isolates (category Cf): they reorder the characters after them on screen
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def plain(value: object) -> str:
    """`value` as text with every control character written as its escape (`\\x1b`, `\\n`, `\\u202e`)."""
    text = str(value)
    if text.isprintable():  # the common case, and what a space or any visible character is
        return text
    return "".join(_escaped(c) if unicodedata.category(c) == "Cc" or c in _BIDI else c for c in text)


def _escaped(character: str) -> str:
    return repr(character)[1:-1] if character != "'" else character
