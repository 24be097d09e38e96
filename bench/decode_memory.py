"""Peak memory of decoding hostile media (issue 14, item 5): large PNGs held as a batch in flight, a wide
high-rate FLAC, and a FLAC whose header claims 590 s of 8 channels at 192 kHz.

Each case runs in a child process that imports only `retrieval/media.py` (and what it imports), decodes,
and reports the growth of its peak RSS over the peak after imports. `--baseline FILE` measures another
media.py too, e.g. the one before the limits: `git show 9af7cb5:retrieval/media.py > /tmp/old_media.py`.

    .venv/bin/python bench/decode_memory.py [--baseline /tmp/old_media.py]
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import soundfile
from common import ROOT, write_report

PROBE = """
import importlib.util, json, resource, sys, types
from concurrent.futures import ThreadPoolExecutor
root, module, kind, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
if module == "current":
    for package in ("retrieval", "storage"):  # media.py and errors.py only: not torch, FAISS or the engine
        sys.modules[package] = types.ModuleType(package)
        sys.modules[package].__path__ = [root + "/" + package]
    import retrieval.media as media
else:
    spec = importlib.util.spec_from_file_location("baseline_media", module)
    media = importlib.util.module_from_spec(spec)
    sys.modules["baseline_media"] = media
    spec.loader.exec_module(media)
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
media.load_image(paths[0] + ".small.png")
before, error = peak(), None
try:
    if kind == "image":  # one decode thread, every result held: a batch in flight
        with ThreadPoolExecutor(1) as pool:
            held = list(pool.map(media.load_image, paths))
    else:
        held = [media.load_audio(p, 16000) for p in paths]
except Exception as exc:
    error = str(exc)[:120]
print(json.dumps({"growth_mb": round(peak() - before, 1), "error": error}))
"""


def big_png(width: int, height: int) -> bytes:
    """A solid-colour PNG built in a fraction of a second (rows 2.. use the Up filter: all zeros)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(1)
    data = [packer.compress(b"\x00" + bytes((10, 200, 30)) * width)]
    data += [packer.compress(b"\x02" + bytes(3 * width)) for _ in range(height - 1)]
    data.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b"")


def constant_flac(path: Path, rate: int, channels: int, seconds: int, claim_seconds: int | None = None) -> Path:
    with soundfile.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as sound:
        for _ in range(seconds):
            sound.write(np.full((rate, channels), 0.25, np.float32))
    if claim_seconds:  # forge STREAMINFO's 36-bit total sample count
        data = bytearray(path.read_bytes())
        value = int.from_bytes(data[18:26], "big")
        data[18:26] = ((value & ~((1 << 36) - 1)) | (claim_seconds * rate)).to_bytes(8, "big")
        path.write_bytes(bytes(data))
    return path


def cases(folder: Path, scale: float = 1.0) -> dict[str, tuple[str, list[Path]]]:
    """The hostile inputs; `scale` shrinks the images' sides and the wide FLAC's length (a smoke run: 0.05)."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "x.small.png")
    out: dict[str, tuple[str, list[Path]]] = {}
    for full, count in ((4000, 6), (7000, 8)):
        side = max(8, int(full * scale))
        path = folder / f"png{side}.png"
        path.write_bytes(big_png(side, side))
        out[f"{count} PNGs of {side}x{side} held as a batch"] = ("image", [path] * count)
    seconds = max(1, int(20 * scale))
    wide = constant_flac(folder / "wide.flac", 192_000, 8, seconds)
    out[f"FLAC, 8 channels, 192 kHz, {seconds} s"] = ("audio", [wide])
    forged = constant_flac(folder / "forged.flac", 192_000, 8, 1, claim_seconds=590)
    out["FLAC header claiming 8 channels, 192 kHz, 590 s"] = ("audio", [forged])
    for _kind, paths in out.values():
        Image.new("RGB", (8, 8)).save(f"{paths[0]}.small.png")
    return out


def measure(module: str, kind: str, paths: list[Path]) -> dict:
    argv = [sys.executable, "-c", PROBE, str(ROOT), module, kind, *map(str, paths)]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another media.py to measure beside the current one")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the inputs (a smoke run: 0.05)")
    args = parser.parse_args()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, paths) in cases(Path(tmp), args.scale).items():
            row: dict = {"case": name, "current": measure("current", kind, paths)}
            if args.baseline:
                row["baseline"] = measure(str(Path(args.baseline).resolve()), kind, paths)
            rows.append(row)
    lines = ["| case | peak growth now (MB) | refused | baseline (MB) |", "|---|---|---|---|"]
    for row in rows:
        now, base = row["current"], row.get("baseline", {})
        lines.append(
            f"| {row['case']} | {now['growth_mb']} | {now['error'] or '-'} | "
            f"{base.get('growth_mb', '-')}{' (' + base['error'] + ')' if base.get('error') else ''} |"
        )
    write_report(
        "decode_memory",
        {"cases": rows, "baseline": "main before issue 14 (9af7cb5)" if args.baseline else None},
        "\n".join(lines) + "\n",
    )


if __name__ == "__main__":
    main()
