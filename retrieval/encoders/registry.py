"""One place that turns an encoder name into an encoder (after open_clip's factory).

A name is `family` or `family:argument`, e.g. `hog`, `sbert`, `openclip:ViT-B-32/laion2b_s34b_b79k`,
`openclip:local-dir:/models/clip`, `clap:laion/clap-htsat-unfused`. A new encoder family is one file
that calls `register_encoder`, plus its line in `BUILTIN_FAMILIES` (or an import by the caller, for a plug-in).

Families are imported on first use: a query that needs only `hog` never loads torch or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from retrieval.encoders.base import Encoder

DEFAULT_CLIP = "ViT-B-32/laion2b_s34b_b79k"  # OpenCLIP architecture/tag of the `pretrained` profile
DEFAULT_CLAP = "laion/clap-htsat-unfused"  # Hugging Face repo id of the `pretrained` profile's CLAP

# family -> the module whose import registers it
BUILTIN_FAMILIES = {
    "hog": "retrieval.encoders.features",
    "mfcc": "retrieval.encoders.features",
    "sbert": "retrieval.encoders.sbert",
    "openclip": "retrieval.encoders.openclip",
    "clap": "retrieval.encoders.clap",
}

Factory = Callable[[str | None, str | None], Encoder]
_FAMILIES: dict[str, tuple[Factory, str]] = {}
_CACHE: dict[tuple[str, str | None], Encoder] = {}


def register_encoder(family: str, description: str) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        _FAMILIES[family] = (factory, description)
        return factory

    return decorate


def _load_family(family: str) -> None:
    if family not in _FAMILIES and family in BUILTIN_FAMILIES:
        importlib.import_module(BUILTIN_FAMILIES[family])


def list_encoders() -> dict[str, str]:
    """Encoder families and what each one is (imports every built-in family)."""
    for family in BUILTIN_FAMILIES:
        _load_family(family)
    return {family: description for family, (_, description) in sorted(_FAMILIES.items())}


def split_name(name: str) -> tuple[str, str | None]:
    family, _, argument = name.partition(":")
    return family, (argument or None)


def create_encoder(name: str, device: str | None = None, *, cache: bool = True) -> Encoder:
    """Build (or reuse) the encoder called `name`; the same name always gives the same space."""
    key = (name, device)
    if cache and key in _CACHE:
        return _CACHE[key]
    family, argument = split_name(name)
    _load_family(family)
    if family not in _FAMILIES:
        known = sorted(set(_FAMILIES) | set(BUILTIN_FAMILIES))
        raise KeyError(f"unknown encoder {name!r}; known families: {', '.join(known)}")
    encoder = _FAMILIES[family][0](argument, device)
    encoder.name = name
    if cache:
        _CACHE[key] = encoder
    return encoder
