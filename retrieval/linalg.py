"""Vector rules that encoders, spaces and fusion share, written once."""

from __future__ import annotations

import numpy as np

NORM_FLOOR = 1e-12  # a zero vector stays zero instead of dividing by zero
# Items per chunk where a whole collection's vectors pass through float32: 65,536 x 1,536-d is 0.4 GB, so a
# chunk and its centred copy stay under 1 GB (all of 1M items at once held 12-21 GB and ran out of memory).
ROWS_PER_CHUNK = 65_536


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row (the last axis) scaled to unit length, as float32."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, NORM_FLOOR)).astype(np.float32, copy=False)
