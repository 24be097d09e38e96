"""One unit of indexing work and its decoding, run in worker threads; never raises on bad media."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from indexer.sources import AssetSpec
from retrieval.media import MAX_TEXT_BYTES, MediaError, load_audio_rates, load_image, load_text, read_file


@dataclass
class WorkItem:
    item_id: int
    spec: AssetSpec
    sha256: str | None
    error: str | None = None


@dataclass
class Decoded:
    work: WorkItem
    value: Any = None
    error: str | None = None
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None


def decode_asset(work: WorkItem, sample_rates: int | Sequence[int]) -> Decoded:
    """Decode one asset; a bad file becomes a `Decoded` with its reason instead of an exception.

    Audio is read once and resampled to each of `sample_rates` (those of the profile's audio encoders):
    its value is {rate: Waveform}, and each encoder is given its own rate's copy."""
    if work.error is not None:
        return Decoded(work, error=work.error)
    spec = work.spec
    try:
        if spec.inline_text is not None:
            text = load_text(spec.inline_text)
            return Decoded(work, text, size_bytes=len(text.encode()))
        # read here, where it may be (spec.within), then decoded from the bytes read
        data = read_file(spec.path, limit=MAX_TEXT_BYTES if spec.modality == "text" else None, within=spec.within)
        if not data:
            raise MediaError(spec.path, "empty file")
        if spec.modality == "image":
            image = load_image(data)
            width, height = image.info.get("source_size", image.size)  # before shrinking for the encoders
            return Decoded(work, image, size_bytes=len(data), width=width, height=height)
        if spec.modality == "audio":
            rates = (sample_rates,) if isinstance(sample_rates, int) else tuple(sample_rates)
            waves = load_audio_rates(data, rates)
            return Decoded(work, waves, size_bytes=len(data), duration_s=next(iter(waves.values())).duration_s)
        return Decoded(work, load_text(data), size_bytes=len(data))
    except MediaError as exc:
        return Decoded(work, error=exc.reason)
    except OSError as exc:
        return Decoded(work, error=f"cannot read file ({exc.strerror or exc})")
    except Exception as exc:
        return Decoded(work, error=f"unexpected decoding error: {type(exc).__name__}: {exc}")
