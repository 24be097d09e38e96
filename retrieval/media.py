"""Decode images, audio and text, with limits, for both the indexer and queries.

Every failure is a `MediaError` that names the file and the reason, so a batch can record it and
move on. Inputs may be paths, bytes, or already-decoded arrays.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import soundfile
import soxr
from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.errors import MediaError

__all__ = ["MODALITIES", "MediaError", "MediaInput", "Modality", "Waveform", "load_audio", "load_image", "load_text"]

Modality = Literal["image", "audio", "text"]
MODALITIES: tuple[Modality, ...] = ("image", "audio", "text")
MediaInput = str | Path | bytes | np.ndarray | Image.Image

MAX_IMAGE_PIXELS = 50_000_000  # 50 MP: above that a header is more likely a decompression bomb than a photo
MAX_DECODED_SIDE = 768  # what a decoded image is kept at: the encoders read 32-336 px (HOG, CLIP, ViT-L/336)
MAX_AUDIO_SECONDS = 600.0
MAX_AUDIO_RATE = 384_000
MAX_AUDIO_CHANNELS = 32
MAX_AUDIO_SAMPLES = 115_200_000  # frames x channels: 10 minutes of 96 kHz stereo; decoding time is bounded too
AUDIO_BLOCK_FRAMES = 1 << 16  # read, downmix and resample this many frames at a time (2 MB at 8 channels)
MIN_AUDIO_SECONDS = 0.02
SILENCE_PEAK = 1e-4  # about -80 dBFS
MAX_TEXT_BYTES = 1_000_000

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"}
TEXT_EXTENSIONS = {".txt", ".md", ".text"}


@dataclass(frozen=True)
class Waveform:
    samples: np.ndarray  # float32, mono
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def open_regular(path: str | Path, within: Sequence[str] | None = None) -> BinaryIO:
    """Open a regular file for reading, never blocking: a FIFO, socket or device is refused, not opened for
    real (opening a FIFO waits for a writer forever). O_NONBLOCK makes the open itself return at once, and
    fstat on the open descriptor decides (no window between a check and the open).

    With `within` (resolved folders), the file actually opened must lie in one of them: where it really is
    is asked of the open descriptor, so a file swapped for a link to elsewhere after a scan confined it is
    refused, not read."""
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # OSError as usual
    kind = special_file_kind(os.fstat(fd).st_mode)
    reason = None if kind is None else f"not a regular file ({kind}); skipped"
    if reason is None and within is not None and not is_within(opened_path(fd, path), within):
        reason = "its real path is outside the allowed folders (it changed after the scan); refused"
    if reason is not None:
        os.close(fd)
        raise MediaError(path, reason)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def opened_path(fd: int, path: Path) -> str:
    """Where the open descriptor's file really is (Linux tells through /proc; elsewhere the path, resolved
    again after the open: a narrower window than a check before it)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def is_within(real: str, folders: Sequence[str]) -> bool:
    return any(real == folder or real.startswith(folder.rstrip(os.sep) + os.sep) for folder in folders)


def read_file(path: str | Path, *, limit: int | None = None, within: Sequence[str] | None = None) -> bytes:
    """A file's bytes (at most `limit`), opened as `open_regular` does; every problem a `MediaError`."""
    return _read_bytes(path, limit, within)


SERVED_BYTES = 64 << 20  # what a page may show of one stored file (a 10-minute WAV at 48 kHz stereo is 110 MB)


def served_bytes(path: str | Path) -> bytes | None:
    """A stored asset's bytes for a page to show, or None where it cannot be shown: missing, not a regular
    file, over SERVED_BYTES, or not really in its own folder now (swapped for a link to elsewhere after it
    was indexed: where the open file really is decides, as for every confined read)."""
    path = Path(path)
    try:
        return read_file(path, limit=SERVED_BYTES, within=[os.path.realpath(path.parent)])
    except (MediaError, OSError):
        return None


def special_file_kind(mode: int) -> str | None:
    """None for a regular file, else what it is in words."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _file_bytes(source: object, wrong_kind: str) -> bytes:
    """A path's or a bytes object's content, refused when empty or of another kind (`wrong_kind` says which)."""
    if not isinstance(source, (str, Path, bytes)):
        raise MediaError(source, wrong_kind)
    data = _read_bytes(source) if isinstance(source, (str, Path)) else source
    if not data:
        raise MediaError(source, "empty file")
    return data


def _read_bytes(source: str | Path, limit: int | None = None, within: Sequence[str] | None = None) -> bytes:
    path = Path(source)
    try:
        with open_regular(path, within) as handle:
            size = os.fstat(handle.fileno()).st_size
            if limit is not None and size > limit:
                raise MediaError(path, f"file is {size} bytes, over the limit of {limit}")
            return handle.read()
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


def load_image(
    source: MediaInput, *, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = MAX_DECODED_SIDE
) -> Image.Image:
    """An RGB image, EXIF orientation applied, at most `max_side` pixels on its longer side; refuses headers
    claiming more than `max_pixels`. The original size is kept in `image.info["source_size"]`."""
    if isinstance(source, Image.Image):
        return _shrink(ImageOps.exif_transpose(_check_pixels(source, source, max_pixels)), max_side).convert("RGB")
    if isinstance(source, np.ndarray):
        return _shrink(_image_from_array(source, max_pixels), max_side)
    data = _file_bytes(source, "an image must be a path, bytes, a numpy array or a PIL image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            image = _check_pixels(source, Image.open(io.BytesIO(data)), max_pixels)
            size = image.size
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale directly
            image.load()
            image = _shrink(image, max_side)  # before any copy: the full-size decode is freed at once
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or float: scale, do not clip to white
                array = np.asarray(image, np.float32)
                span = float(array.max() - array.min()) or 1.0
                image = Image.fromarray(((array - array.min()) * (255.0 / span)).astype(np.uint8))
            image = image.convert("RGB")
            image.info["source_size"] = size
            return image
    except MediaError:
        raise
    except UnidentifiedImageError:
        raise MediaError(source, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise MediaError(source, f"decompression bomb refused ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise MediaError(source, f"corrupt or truncated image ({exc})") from None


def _check_pixels(source: object, image: Image.Image, max_pixels: int) -> Image.Image:
    width, height = image.size
    if width * height > max_pixels:
        raise MediaError(source, f"image claims {width}x{height} pixels, over the limit of {max_pixels}")
    if width == 0 or height == 0:
        raise MediaError(source, f"image has no pixels ({width}x{height})")
    return image


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """At most `max_side` on the longer side (aspect kept): what the encoders see is 224-336 pixels, and a
    7000x7000 PNG held at full size is 147 MB per image in flight, at 768 px 1.8 MB."""
    if max(image.size) <= max_side:
        return image
    size = image.info.get("source_size", image.size)
    if image.mode not in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "I", "F", "I;16", "RGBX", "RGBa", "La"):
        image = image.convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    image.info["source_size"] = size
    return image


def _image_from_array(array: np.ndarray, max_pixels: int) -> Image.Image:
    """HxW (grey), HxWx1, HxWx3 or HxWx4 of real numbers: uint8 as is, others in [0, 1] or [0, 255]."""
    channels = 1 if array.ndim == 2 else array.shape[-1] if array.ndim == 3 else 0
    if array.ndim not in (2, 3) or array.size == 0 or channels not in (1, 3, 4):
        raise MediaError(array, "an image array must be HxW or HxWxC with C = 1, 3 or 4, and non-empty")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating) or array.dtype == bool):
        raise MediaError(array, f"an image array must hold real numbers, not {array.dtype}")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise MediaError(
            array, f"image array has {array.shape[0]}x{array.shape[1]} pixels, over the limit of {max_pixels}"
        )
    if array.dtype != np.uint8:
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise MediaError(array, "image array contains NaN or infinite values")
        scaled = np.clip(values, 0, 1) * 255 if values.max() <= 1.0 else np.clip(values, 0, 255)
        array = scaled.astype(np.uint8)
    if array.ndim == 3 and channels == 1:
        array = array[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def load_audio(
    source: MediaInput | Waveform,
    sample_rate: int,
    *,
    max_seconds: float = MAX_AUDIO_SECONDS,
    input_rate: int | None = None,
) -> Waveform:
    """Mono float32 at `sample_rate`; arrays need `input_rate` (assumed equal to `sample_rate` if absent).

    Files are read in blocks, each downmixed and resampled before the next is read, so memory holds the
    result at `sample_rate` plus one block, whatever the file's channels and rate."""
    if isinstance(source, Waveform):
        return _from_array(source, source.samples, source.sample_rate, sample_rate, max_seconds)
    if isinstance(source, np.ndarray):
        return _from_array(source, source, sample_rate if input_rate is None else input_rate, sample_rate, max_seconds)
    data = _file_bytes(source, "audio must be a path, bytes, a numpy array or (samples, sample_rate)")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            _check_audio_size(source, sound.frames, sound.channels, sound.samplerate, max_seconds)
            samples, peak = _read_blocks(source, sound, sample_rate)
    except MediaError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        reason = getattr(exc, "error_string", None) or re.sub(r"<[^>]* at 0x[0-9a-fA-F]+>", "the file", str(exc))
        raise MediaError(source, f"not a readable audio file ({reason})") from None
    return _checked(source, samples, peak, sample_rate)


def load_audio_rates(
    source: MediaInput | Waveform,
    rates: Iterable[int],
    *,
    max_seconds: float = MAX_AUDIO_SECONDS,
    input_rate: int | None = None,
) -> dict[int, Waveform]:
    """The one audio decode step, for the indexer and for queries alike: {rate: Waveform} for each of
    `rates` (each audio encoder's own), so a profile with `mfcc` (16 kHz) and CLAP (48 kHz) gives each
    encoder what it was trained on, at index time exactly as at query time. The file is read once, at the
    highest rate (`load_audio`), and resampled down from that copy to the others."""
    targets = sorted(set(rates), reverse=True)
    if not targets:
        raise ValueError("load_audio_rates needs at least one sample rate")
    first = load_audio(source, targets[0], max_seconds=max_seconds, input_rate=input_rate)
    out = {targets[0]: first}
    for target in targets[1:]:
        out[target] = Waveform(soxr.resample(first.samples, first.sample_rate, target).astype(np.float32), target)
    return out


def _check_audio_size(source: object, frames: int, channels: int, rate: int, max_seconds: float) -> None:
    """Refuse, from the header alone, what would take too long or too much memory to decode."""
    if not 0 < rate <= MAX_AUDIO_RATE:
        raise MediaError(source, f"audio sample rate {rate} Hz is outside 1..{MAX_AUDIO_RATE} Hz")
    if not 0 < channels <= MAX_AUDIO_CHANNELS:
        raise MediaError(source, f"audio has {channels} channels; at most {MAX_AUDIO_CHANNELS} are read")
    if frames / rate > max_seconds:
        raise MediaError(source, f"audio lasts {frames / rate:.0f} s, over the limit of {max_seconds:.0f} s")
    if frames * channels > MAX_AUDIO_SAMPLES:
        raise MediaError(
            source,
            f"audio holds {frames * channels:,} samples ({channels} channels x {frames:,} frames), over the limit "
            f"of {MAX_AUDIO_SAMPLES:,}",
        )


def _read_blocks(source: object, sound: soundfile.SoundFile, target: int) -> tuple[np.ndarray, float]:
    """The file's samples, downmixed and resampled block by block; and the peak before resampling."""
    stream = soxr.ResampleStream(sound.samplerate, target, 1, dtype="float32") if sound.samplerate != target else None
    parts: list[np.ndarray] = []
    peak, frames = 0.0, 0
    for block in sound.blocks(blocksize=AUDIO_BLOCK_FRAMES, dtype="float32", always_2d=True):
        frames += len(block)
        if frames * sound.channels > MAX_AUDIO_SAMPLES:  # a header that under-reported its length
            raise MediaError(source, f"audio holds more than {MAX_AUDIO_SAMPLES:,} samples, over the limit")
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if not np.isfinite(mono).all():
            raise MediaError(source, "audio contains NaN or infinite samples")
        if len(mono):
            peak = max(peak, float(np.abs(mono).max()))
        parts.append(stream.resample_chunk(mono) if stream is not None else mono.copy())
    if stream is not None:
        parts.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    if frames / sound.samplerate < MIN_AUDIO_SECONDS:
        raise MediaError(source, _too_short(frames / sound.samplerate))
    return (np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)), peak


def _too_short(seconds: float) -> str:
    return f"audio lasts {1000 * seconds:.1f} ms, too short to encode (at least {1000 * MIN_AUDIO_SECONDS:.0f} ms)"


def _from_array(source: object, samples: object, rate: object, target: int, max_seconds: float) -> Waveform:
    """An array (samples, or samples x channels) of real numbers at a positive integer rate."""
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 0 < int(rate) <= MAX_AUDIO_RATE:
        raise MediaError(source, f"audio sample rate must be a whole number of Hz in 1..{MAX_AUDIO_RATE}, not {rate!r}")
    array = np.asarray(samples)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise MediaError(source, f"audio must hold real numbers, not {array.dtype}")
    if array.ndim not in (1, 2):
        raise MediaError(source, f"audio must be (samples,) or (samples, channels), not shape {array.shape}")
    channels = array.shape[1] if array.ndim == 2 else 1
    _check_audio_size(source, array.shape[0], channels, int(rate), max_seconds)
    mono = array.astype(np.float32).mean(axis=1) if array.ndim == 2 else array.astype(np.float32)
    if mono.size == 0:
        raise MediaError(source, "audio has no samples")
    if not np.isfinite(mono).all():
        raise MediaError(source, "audio contains NaN or infinite samples")
    if mono.size / int(rate) < MIN_AUDIO_SECONDS:
        raise MediaError(source, _too_short(mono.size / int(rate)))
    peak = float(np.abs(mono).max())
    if int(rate) != target:
        mono = soxr.resample(mono, int(rate), target).astype(np.float32)
    return _checked(source, mono, peak, target)


def _checked(source: object, samples: np.ndarray, peak: float, rate: int) -> Waveform:
    if samples.size == 0:
        raise MediaError(source, "audio has no samples")
    if peak < SILENCE_PEAK:
        raise MediaError(source, "audio is silent")
    return Waveform(samples=samples, sample_rate=rate)


def load_text(source: str | Path | bytes, *, max_bytes: int = MAX_TEXT_BYTES, is_path: bool | None = None) -> str:
    """UTF-8 text (a BOM is dropped); a `str` is taken as the text itself unless `is_path`."""
    if isinstance(source, str) and not is_path:
        text = source
        if len(text) > max_bytes:
            raise MediaError("<text>", f"text is {len(text)} characters, over the limit of {max_bytes}")
    elif isinstance(source, (str, Path, bytes)):
        data = _read_bytes(source, limit=max_bytes) if isinstance(source, (str, Path)) else source
        if len(data) > max_bytes:
            raise MediaError(source, f"text is {len(data)} bytes, over the limit of {max_bytes}")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise MediaError(source, f"not UTF-8 text (invalid byte at offset {exc.start})") from None
    else:
        raise MediaError(source, "a text must be a string, a path or bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: from undecodable bytes in argv, or a broken string
        raise MediaError(
            source if not isinstance(source, str) or is_path else "<text>",
            f"text is not valid Unicode (a lone surrogate at character {exc.start})",
        ) from None
    text = text.strip()
    if not text:
        raise MediaError(source if not isinstance(source, str) or is_path else "<text>", "empty text")
    return text
