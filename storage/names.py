"""How stored things are named from user-given names: one rule for files, folders and Milvus collections.

A name keeps its readable characters (so a person can tell files apart) and, where two names could map to
the same characters, 8 hex digits of its SHA-1 (so they never meet).
"""

from __future__ import annotations

import hashlib
import re

FILE_CHARACTERS = r"A-Za-z0-9._-"
MILVUS_CHARACTERS = r"A-Za-z0-9_"  # Milvus collection names allow letters, digits and underscores only


def slug(name: str, keep: int, allowed: str = FILE_CHARACTERS) -> str:
    """`name` with each run of other characters replaced by "_", at most `keep` characters."""
    return re.sub(f"[^{allowed}]+", "_", name)[:keep]


def name_hash(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:8]


def hashed_stem(name: str, keep: int = 60) -> str:
    """A file name stem for `name`: its slug and its hash ("late_image-1a2b3c4d")."""
    return f"{slug(name, keep)}-{name_hash(name)}"
