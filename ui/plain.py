"""Text from a collection (keys, texts, transcripts, metadata, file names, the messages that quote them) shown
as text: Streamlit renders markdown in captions, tooltips, alerts and labels, so such text is escaped before it
goes into one, and an item's `![x](http://host/pixel.png)` shows as those characters instead of fetching a URL.
"""

from __future__ import annotations

import re

# CommonMark lets any ASCII punctuation character be escaped with a backslash; escaping all of them also
# defuses Streamlit's own syntax (":red[...]", ":material/icon:", "$math$").
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def md(text: object) -> str:
    """`text` escaped for a markdown string: it renders as exactly these characters, on one line."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(text).split()))
