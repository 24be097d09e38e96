"""Images drawn inside a page's own HTML, as data URIs: a grid or card of 50 results then costs the browser no
request and no element per picture (each `st.image` was both: part of why 50 cards took seconds, issue 37)."""

from __future__ import annotations

import base64
from functools import lru_cache
from io import BytesIO

from retrieval.media import served_bytes


@lru_cache(maxsize=4096)
def thumbnail_uri(path: str, size: int = 36) -> str | None:
    """The image at most `size` px a side (MNIST digits stay 28 px: the page scales them, pixelated), as a
    data URI; None when it cannot be shown. Small images stay PNG; larger ones are JPEG, a tenth of the bytes."""
    from PIL import Image

    data = served_bytes(path)
    if data is None:
        return None
    try:
        with Image.open(BytesIO(data)) as opened:
            image = opened.convert("RGB")
            image.thumbnail((size, size))
            buffer = BytesIO()
            kind = "png" if max(image.size) <= 64 else "jpeg"
            image.save(buffer, format=kind, quality=85)
    except OSError:
        return None
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode()
