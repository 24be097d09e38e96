from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import mnist_image, recording
from PIL import Image

from retrieval.media import MediaError, load_audio, load_image, load_text, sniff_modality


def png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims a huge size (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_real_image_decodes_to_rgb() -> None:
    image = load_image(mnist_image(3))
    assert image.mode == "RGB" and image.size == (28, 28)


def test_image_from_bytes_and_array_agree() -> None:
    path = mnist_image(5)
    from_bytes = np.asarray(load_image(path.read_bytes()))
    from_array = np.asarray(load_image(np.asarray(Image.open(path))))
    assert np.array_equal(from_bytes, from_array)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"\x00\x01garbage" * 50, "not a recognised image"),
        (png_claiming(100_000, 100_000), "over the limit|decompression bomb"),
        (png_claiming(10_000, 10_000), "claims 10000x10000 pixels, over the limit"),
    ],
)
def test_bad_images_name_the_reason(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    with pytest.raises(MediaError, match=reason) as caught:
        load_image(path)
    assert str(path) in str(caught.value)


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(MediaError, match=r"truncated|corrupt"):
        load_image(path)


def test_audio_is_mono_resampled_and_measured() -> None:
    wave = load_audio(recording(4), 16_000)
    native, rate = soundfile.read(recording(4))
    assert rate == 8000 and wave.sample_rate == 16_000
    assert abs(len(wave.samples) - 2 * len(native)) <= 2
    assert wave.samples.dtype == np.float32


def test_stereo_array_becomes_mono() -> None:
    stereo = np.stack([np.full(800, 0.5), -np.full(800, 0.25)], axis=1).astype(np.float32)
    wave = load_audio(stereo, 8000, input_rate=8000)
    assert wave.samples.shape == (800,) and np.allclose(wave.samples, 0.125)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + b"\x00" * 20), "not a readable audio file"),
        (lambda p: soundfile.write(p, np.full(100, np.nan, np.float32), 8000, subtype="FLOAT"), "NaN or infinite"),
        (lambda p: soundfile.write(p, np.zeros(8000 * 11, np.float32), 8000), "over the limit"),
    ],
)
def test_bad_audio_names_the_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(MediaError, match=reason):
        load_audio(path, 16_000, max_seconds=10)


def test_text_must_be_utf8(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.txt", tmp_path / "b.txt"
    good.write_bytes("\ufeffcafé ☕".encode("utf-8"))
    bad.write_bytes("café".encode("latin-1"))
    assert load_text(good) == "café ☕"
    with pytest.raises(MediaError, match="not UTF-8"):
        load_text(bad)
    with pytest.raises(MediaError, match="file not found"):
        load_text(tmp_path / "missing.txt", is_path=True)


def test_sniffing_uses_content() -> None:
    assert sniff_modality(mnist_image(1).read_bytes()[:64]) == "image"
    assert sniff_modality(recording(1).read_bytes()[:64]) == "audio"
    assert sniff_modality("héllo".encode()) == "text"
    assert sniff_modality(bytes(range(256))[:64]) is None
