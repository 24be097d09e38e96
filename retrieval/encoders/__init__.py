"""Encoders: one registry (`create_encoder`), one file per family."""

from retrieval.encoders import features  # noqa: F401  (registers hog, mfcc)
from retrieval.encoders import sbert, openclip, clap  # noqa: F401  (register sbert, openclip, clap)
from retrieval.encoders.base import Encoder, EncoderInfo, WeightsNotFoundError
from retrieval.encoders.registry import create_encoder, list_encoders, register_encoder

__all__ = ["Encoder", "EncoderInfo", "WeightsNotFoundError", "create_encoder", "list_encoders", "register_encoder"]
