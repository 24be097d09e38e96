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


# -- decode amplification: peak memory measured in a child process (docs/reliability.md's budget) ---------
MEMORY_PROBE = """
import json, resource, sys, types
from concurrent.futures import ThreadPoolExecutor
for package in ("retrieval", "storage"):  # only media.py and errors.py: not the engine, torch or FAISS
    sys.modules[package] = types.ModuleType(package)
    sys.modules[package].__path__ = [sys.argv[1] + "/" + package]
from retrieval.media import load_audio, load_image
kind, paths = sys.argv[2], sys.argv[3:]
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB
load_image(paths[0] + ".small.png")  # codecs loaded before the baseline
before = peak()
held, error = [], None
try:
    if kind == "image":  # one decode thread, every result held: a batch in flight
        with ThreadPoolExecutor(1) as pool:
            held = list(pool.map(load_image, paths))
    else:
        held = [load_audio(p, 16000) for p in paths]
except Exception as exc:
    error = str(exc)
print(json.dumps({"growth_mb": peak() - before, "error": error}))
"""


def _peak_growth(kind: str, paths: list[Path]) -> dict:
    import json
    import subprocess
    import sys

    Image.new("RGB", (8, 8)).save(f"{paths[0]}.small.png")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, root, kind, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout)


def big_png(width: int, height: int) -> bytes:
    """A solid-colour PNG built in a fraction of a second (rows 2.. use the Up filter: all zeros)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(1)
    data = [packer.compress(b"\x00" + bytes((10, 200, 30)) * width)]
    zero_row = b"\x02" + bytes(3 * width)
    data += [packer.compress(zero_row) for _ in range(height - 1)]
    data.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b"")


def test_large_images_in_flight_are_held_small(tmp_path: Path) -> None:
    """Six 4000x4000 PNGs (48 MB each decoded) held as a batch: before, peak growth 428 MB; now each is kept
    at 768 px (1.7 MB) as soon as it is decoded, so the peak is about one full decode (measured: 96 MB)."""
    data = big_png(4000, 4000)
    paths = [tmp_path / f"big{n}.png" for n in range(6)]
    for path in paths:
        path.write_bytes(data)
    result = _peak_growth("image", paths)
    assert result["error"] is None
    assert result["growth_mb"] < 200, result
    image = load_image(paths[0])
    assert image.size == (768, 768) and image.info["source_size"] == (4000, 4000)
    assert image.getpixel((100, 100)) == (10, 200, 30)


def _constant_flac(path: Path, rate: int, channels: int, seconds: int) -> None:
    with soundfile.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as sound:
        block = np.full((rate, channels), 0.25, np.float32)
        for _ in range(seconds):
            sound.write(block)


def test_multichannel_high_rate_audio_is_read_in_blocks(tmp_path: Path) -> None:
    """8 channels at 192 kHz for 20 s (31M samples, 90 KB as FLAC): read whole, 123 MB of float32 plus its
    mean (measured peak growth 148 MB); read in blocks, downmixed and resampled a block at a time, 10 MB."""
    path = tmp_path / "wide.flac"
    _constant_flac(path, 192_000, 8, 20)
    result = _peak_growth("audio", [path])
    assert result["error"] is None
    assert result["growth_mb"] < 40, result
    wave = load_audio(path, 16_000)
    assert wave.sample_rate == 16_000 and abs(len(wave.samples) - 320_000) <= 1
    assert abs(float(np.median(wave.samples)) - 0.25) < 0.01


def test_audio_header_claiming_too_much_is_refused_before_decoding(tmp_path: Path) -> None:
    """The issue's FLAC: 8 channels at 192 kHz for 590 s (906M samples, 3.6 GB as float32). Its header is
    forged here onto a 1 s file (STREAMINFO's 36-bit sample count), so the refusal must come from the header."""
    path = tmp_path / "claims.flac"
    _constant_flac(path, 192_000, 8, 1)
    data = bytearray(path.read_bytes())
    field = int.from_bytes(data[18:26], "big")
    data[18:26] = ((field & ~((1 << 36) - 1)) | (590 * 192_000)).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert soundfile.info(str(path)).frames == 590 * 192_000
    with pytest.raises(MediaError, match="over the limit of 115,200,000"):
        load_audio(path, 16_000)
    result = _peak_growth("audio", [path])
    assert "over the limit" in result["error"] and result["growth_mb"] < 25, result


def test_a_stored_file_swapped_for_a_link_is_not_served_to_a_page(tmp_path: Path) -> None:
    """Issue 35, item 2: the UI showed stored image and audio paths as they were, following links, so a file
    swapped for a link after indexing had the link's target sent to every viewer's browser."""
    import os

    from retrieval.media import served_bytes

    folder, outside = tmp_path / "collection", tmp_path / "private"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.wav").write_bytes(b"RIFF-not-yours")
    stored = folder / "a.wav"
    stored.write_bytes(b"RIFF-ours")
    assert served_bytes(stored) == b"RIFF-ours"
    stored.unlink()
    stored.symlink_to(outside / "secret.wav")
    assert served_bytes(stored) is None
    inside = folder / "b.wav"
    inside.symlink_to(folder / "c.wav")
    (folder / "c.wav").write_bytes(b"RIFF-also-ours")
    assert served_bytes(inside) == b"RIFF-also-ours"  # a link within the folder is the folder's
    os.mkfifo(folder / "pipe.wav")
    assert served_bytes(folder / "pipe.wav") is None and served_bytes(folder / "gone.wav") is None
