"""One place that turns an encoder name into an encoder (after open_clip's factory).

A name is `family` or `family:argument`, e.g. `hog`, `sbert`, `openclip:ViT-B-32/laion2b_s34b_b79k`,
`openclip:local-dir:/models/clip`, `clap:laion/clap-htsat-unfused`. A new encoder family is one file
that calls `register_encoder`, plus its line in `BUILTIN_FAMILIES` (or an import by the caller, for a plug-in).

Families are imported on first use: a query that needs only `hog` never loads torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext

from retrieval.device import check_device
from retrieval.encoders.base import Encoder
from retrieval.encoders.loading import quiet_loading
from retrieval.errors import WeightsNotFoundError
from storage.registry import Registry

DEFAULT_CLIP = "ViT-B-32/laion2b_s34b_b79k"  # OpenCLIP architecture/tag of the `pretrained` profile
DEFAULT_CLAP = "laion/clap-htsat-unfused"  # Hugging Face repo id of the `pretrained` profile's CLAP

# family -> the module that defines (and registers) its factory, `_FAMILY` (a hyphen written as `_`)
BUILTIN_FAMILIES = {
    "hog": "retrieval.encoders.features",
    "mfcc": "retrieval.encoders.features",
    "speech": "retrieval.encoders.speech",
    "whisper-encoder": "retrieval.encoders.whisper_encoder",
    "sbert": "retrieval.encoders.sbert",
    "openclip": "retrieval.encoders.openclip",
    "clap": "retrieval.encoders.clap",
}

# What each built-in family reads, known without building an encoder (so that deciding which fields hold
# transcripts loads no model); a plug-in says so in `register_encoder(..., reads=...)`, else one is built.
READS: dict[str, tuple[str, ...]] = {
    "hog": ("image",),
    "mfcc": ("audio",),
    "speech": ("audio",),
    "whisper-encoder": ("audio",),
    "sbert": ("text",),
    "openclip": ("image", "text"),
    "clap": ("audio", "text"),
}

# Factories that draw no library progress bars run without `quiet_loading`, which imports transformers (1.1 s
# of a one-shot `retrieval search --image` on the demo): computed features, ONNX and CTranslate2 models, and sbert, which loads
# its torch model only when a batch needs it, inside `quiet_loading` of its own.
WEIGHTLESS = frozenset({"hog", "mfcc", "speech", "whisper-encoder", "sbert"})

Factory = Callable[[str | None, str | None], Encoder]
ENCODERS: Registry[Factory] = Registry("encoder")
for _family, _module in BUILTIN_FAMILIES.items():
    ENCODERS.register(_family, f"{_module}:_{_family.replace('-', '_')}")
_CACHE: dict[tuple[str, str | None], Encoder] = {}


def register_encoder(
    family: str, description: str, reads: tuple[str, ...] | None = None
) -> Callable[[Factory], Factory]:
    """`@register_encoder("name", "what it reads")` above a factory `(argument, device) -> Encoder`;
    `reads`: the modalities its encoders read, if they are the same for every argument."""
    if reads:
        READS[family] = tuple(reads)
    return ENCODERS.decorator(family, description)


def encoder_reads(name: str) -> tuple[str, ...]:
    """The modalities the encoder called `name` reads: from its family where known, else from building it."""
    family, _ = split_name(name)
    return READS.get(family) or tuple(create_encoder(name).modalities)


def list_encoders() -> dict[str, str]:
    """Encoder families and what each one is (imports every built-in family for its description)."""
    for family in ENCODERS.names():
        ENCODERS.get(family)
    return dict(sorted(ENCODERS.describe().items()))


def split_name(name: str) -> tuple[str, str | None]:
    family, _, argument = name.partition(":")
    return family, (argument or None)


def create_encoder(name: str, device: str | None = None, *, cache: bool = True) -> Encoder:
    """Build (or reuse) the encoder called `name`; the same name always gives the same space."""
    key = (name, device)
    if cache and key in _CACHE:
        return _CACHE[key]
    family, argument = split_name(name)
    factory = ENCODERS.get(family)
    with nullcontext() if family in WEIGHTLESS else quiet_loading():
        encoder = factory(argument, device)
    encoder.name = name
    if cache:
        _CACHE[key] = encoder
    return encoder


def create_encoders(names: Iterable[str], device: str | None = None) -> dict[str, Encoder]:
    """Every encoder of `names`, or one `WeightsNotFoundError` that lists all the missing ones at once
    (one at a time, a profile with three missing models took three runs to learn so). A bad `device`
    is refused first, before any weights are read."""
    check_device(device)
    encoders: dict[str, Encoder] = {}
    missing: list[WeightsNotFoundError] = []
    for name in dict.fromkeys(names):
        try:
            encoders[name] = create_encoder(name, device)
        except WeightsNotFoundError as exc:
            missing.append(exc)
    if missing:
        raise WeightsNotFoundError.combine(missing)
    return encoders
