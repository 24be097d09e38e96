"""Vector rules that encoders, spaces and fusion share, written once."""

from __future__ import annotations

import numpy as np

NORM_FLOOR = 1e-12  # a zero vector stays zero instead of dividing by zero


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row (the last axis) scaled to unit length, as float32."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, NORM_FLOOR)).astype(np.float32, copy=False)
