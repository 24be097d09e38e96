"""Decode images, audio and text, with limits, for both the indexer and queries.

Every failure is a `MediaError` that names the file and the reason, so a batch can record it and
move on. Inputs may be paths, bytes, or already-decoded arrays.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile
import soxr
from PIL import Image, ImageOps, UnidentifiedImageError

Modality = Literal["image", "audio", "text"]
MODALITIES: tuple[Modality, ...] = ("image", "audio", "text")
MediaInput = str | Path | bytes | np.ndarray | Image.Image

MAX_IMAGE_PIXELS = 50_000_000  # 50 MP: above that a header is more likely a decompression bomb than a photo
MAX_AUDIO_SECONDS = 600.0
MIN_AUDIO_SECONDS = 0.02
SILENCE_PEAK = 1e-4  # about -80 dBFS
MAX_TEXT_BYTES = 1_000_000

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
TEXT_EXTENSIONS = {".txt", ".md", ".text"}


class MediaError(Exception):
    """A file that cannot be used, with the reason in words."""

    def __init__(self, source: object, reason: str) -> None:
        self.source = _describe(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")


@dataclass(frozen=True)
class Waveform:
    samples: np.ndarray  # float32, mono
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def _describe(source: object) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, np.ndarray):
        return f"<array {source.shape}>"
    return f"<{type(source).__name__}>"


def _read_bytes(source: str | Path, limit: int | None = None) -> bytes:
    path = Path(source)
    try:
        if limit is not None and path.stat().st_size > limit:
            raise MediaError(path, f"file is {path.stat().st_size} bytes, over the limit of {limit}")
        return path.read_bytes()
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError(path, "file not found") from None
    except PermissionError:
        raise MediaError(path, "permission denied") from None
    except IsADirectoryError:
        raise MediaError(path, "is a directory") from None
    except OSError as exc:
        raise MediaError(path, f"cannot read file ({exc.strerror or exc})") from None


def sniff_modality(head: bytes) -> Modality | None:
    """The modality a file's first bytes announce (magic numbers), or None when they announce none."""
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")):
        return "image"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image"
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head.startswith((b"fLaC", b"OggS", b"ID3")):
        return "audio"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio"
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError as exc:
            # A multi-byte character cut by the sniff window is still text.
            return "text" if exc.start >= len(head) - 3 else None
    return None


def modality_from_extension(path: Path) -> Modality | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in TEXT_EXTENSIONS:
        return "text"
    return None


def load_image(source: MediaInput, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """An RGB image, EXIF orientation applied; refuses headers claiming more than `max_pixels`."""
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source).convert("RGB")
    if isinstance(source, np.ndarray):
        return _image_from_array(source)
    data = _read_bytes(source) if isinstance(source, (str, Path)) else source
    if not data:
        raise MediaError(source, "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise MediaError(source, f"image claims {width}x{height} pixels, over the limit of {max_pixels}")
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float: scale, do not clip to white
                array = np.asarray(image, np.float32)
                span = float(array.max() - array.min()) or 1.0
                image = Image.fromarray(((array - array.min()) * (255.0 / span)).astype(np.uint8))
            return image.convert("RGB")
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(source, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise MediaError(source, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(source, f"corrupt or truncated image ({exc})") from None


def _image_from_array(array: np.ndarray) -> Image.Image:
    if array.ndim not in (2, 3) or array.size == 0:
        raise MediaError(array, "an image array must be HxW or HxWxC and non-empty")
    if array.dtype != np.uint8:
        scaled = np.clip(array.astype(np.float32), 0, 1) * 255 if array.max() <= 1.0 else np.clip(array, 0, 255)
        array = scaled.astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def load_audio(
    source: MediaInput, sample_rate: int, *, max_seconds: float = MAX_AUDIO_SECONDS, input_rate: int | None = None
) -> Waveform:
    """Mono float32 at `sample_rate`; arrays need `input_rate` (assumed equal to `sample_rate` if absent)."""
    return load_audio_rates(source, (sample_rate,), max_seconds=max_seconds, input_rate=input_rate)[sample_rate]


def load_audio_rates(
    source: MediaInput,
    rates: Iterable[int],
    *,
    max_seconds: float = MAX_AUDIO_SECONDS,
    input_rate: int | None = None,
) -> dict[int, Waveform]:
    """The one audio decode step, for the indexer and for queries alike: read and check the file once,
    then resample it to each rate in `rates` (each audio encoder's own), so a profile with `mfcc` (16 kHz)
    and CLAP (48 kHz) gives each encoder what it was trained on. Arrays need `input_rate` (assumed equal
    to the first rate when absent)."""
    targets = sorted(set(rates))
    if not targets:
        raise ValueError("load_audio_rates needs at least one sample rate")
    if isinstance(source, Waveform):
        samples, rate = source.samples, source.sample_rate
    elif isinstance(source, np.ndarray):
        samples, rate = source, input_rate or targets[0]
    else:
        samples, rate = _decode_audio(source, max_seconds)
    checked = _checked_samples(source, np.asarray(samples, np.float32), int(rate), max_seconds)
    return {target: _resampled(checked, int(rate), target) for target in targets}


def _decode_audio(source: str | Path | bytes | Image.Image, max_seconds: float) -> tuple[np.ndarray, int]:
    data = _read_bytes(source) if isinstance(source, (str, Path)) else source
    if not data or not isinstance(data, bytes):
        raise MediaError(source, "empty file" if not data else "not audio")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:  # one open: the header, then the samples
            seconds = sound.frames / max(sound.samplerate, 1)
            if seconds > max_seconds:
                raise MediaError(source, f"audio lasts {seconds:.0f} s, over the limit of {max_seconds:.0f} s")
            return sound.read(dtype="float32", always_2d=True), sound.samplerate
    except MediaError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise MediaError(source, f"not a readable audio file ({exc})") from None


def _checked_samples(source: object, samples: np.ndarray, rate: int, max_seconds: float) -> np.ndarray:
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1 or samples.size == 0:
        raise MediaError(source, "audio has no samples")
    if not np.isfinite(samples).all():
        raise MediaError(source, "audio contains NaN or infinite samples")
    if samples.size / rate > max_seconds:
        raise MediaError(source, f"audio lasts {samples.size / rate:.0f} s, over the limit of {max_seconds:.0f} s")
    if samples.size / rate < MIN_AUDIO_SECONDS:
        raise MediaError(
            source,
            f"audio lasts {1000 * samples.size / rate:.1f} ms, too short to encode "
            f"(at least {1000 * MIN_AUDIO_SECONDS:.0f} ms)",
        )
    if float(np.abs(samples).max()) < SILENCE_PEAK:
        raise MediaError(source, "audio is silent")
    return samples


def _resampled(samples: np.ndarray, rate: int, target: int) -> Waveform:
    if rate != target:
        samples = soxr.resample(samples, rate, target).astype(np.float32)
    return Waveform(samples=samples, sample_rate=target)


def load_text(source: str | Path | bytes, *, max_bytes: int = MAX_TEXT_BYTES, is_path: bool | None = None) -> str:
    """UTF-8 text (a BOM is dropped); a `str` is taken as the text itself unless `is_path`."""
    if isinstance(source, str) and not is_path:
        text = source
    else:
        data = _read_bytes(source, limit=max_bytes) if isinstance(source, (str, Path)) else source
        if len(data) > max_bytes:
            raise MediaError(source, f"text is {len(data)} bytes, over the limit of {max_bytes}")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MediaError(source, f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    text = text.strip()
    if not text:
        raise MediaError(source, "empty text")
    return text
