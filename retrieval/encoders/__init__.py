"""Encoders: one registry (`create_encoder`), one file per family, each imported when first used."""

from retrieval.encoders.base import Encoder, EncoderInfo, WeightsNotFoundError
from retrieval.encoders.registry import create_encoder, create_encoders, list_encoders, register_encoder

__all__ = [
    "Encoder",
    "EncoderInfo",
    "WeightsNotFoundError",
    "create_encoder",
    "create_encoders",
    "list_encoders",
    "register_encoder",
]
