"""A corpus of at least twenty kinds of bad or odd files, and hostile strings, paths and checkpoints."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import mnist_image, recording
from PIL import Image

from indexer import Indexer, pipeline
from retrieval import SearchEngine


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes(mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (32, 32), (10, 200, 30, 0)[: len(mode)]).save(buffer, "JPEG")
    return buffer.getvalue()


def build_corpus(folder: Path) -> tuple[dict[str, str], set[str]]:
    """(bad file -> a word its reason must contain, odd-but-good files that must be indexed)."""
    folder.mkdir()
    png = mnist_image(4).read_bytes()
    wav = recording(4).read_bytes()
    bad: dict[str, str] = {}

    def put(name: str, data: bytes, reason: str | None) -> None:
        (folder / name).write_bytes(data)
        if reason:
            bad[name] = reason

    put("truncated.png", png[: len(png) // 2], "truncated")
    put("truncated.jpg", jpeg_bytes()[:300], "truncated")
    put("random.jpg", os.urandom(4096), "not a recognised image")
    put("zero.png", b"", "empty file")
    put("broken-header.wav", b"RIFF\xff\xff\xff\xffWAVEfmt " + os.urandom(64), "not a readable audio")
    put("bomb.png", png_claiming(100_000, 100_000), "decompression bomb")
    put("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8")
    put("huge.txt", b"a" * (50 * 1024 * 1024), "over the limit")
    soundfile.write(folder / "one-sample.wav", np.array([0.5]), 8000, subtype="PCM_U8")
    bad["one-sample.wav"] = "too short"
    soundfile.write(folder / "twenty-minutes.wav", np.zeros(20 * 60 * 8000, np.uint8) + 0.1, 8000, subtype="PCM_U8")
    bad["twenty-minutes.wav"] = "over the limit"
    soundfile.write(folder / "silence.wav", np.zeros(8000, np.float32), 8000)
    bad["silence.wav"] = "silent"
    soundfile.write(folder / "nan.wav", np.full(800, np.nan, np.float32), 8000, subtype="FLOAT")
    bad["nan.wav"] = "NaN or infinite"
    soundfile.write(folder / "inf.wav", np.full(800, np.inf, np.float32), 8000, subtype="FLOAT")
    bad["inf.wav"] = "NaN or infinite"
    os.symlink(folder / "loop-b.wav", folder / "loop-a.wav")
    os.symlink(folder / "loop-a.wav", folder / "loop-b.wav")
    bad["loop-a.wav"] = bad["loop-b.wav"] = "symbolic link"
    os.symlink("/etc/hostname", folder / "escape.txt")  # a link pointing out of the collection
    bad["escape.txt"] = "outside the collection"
    put("vanishing.wav", wav, "not found")
    put("mystery.bin", os.urandom(512), "unsupported file type")

    good = set()
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("cmyk.jpg", jpeg_bytes("CMYK"), None)
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(folder / "sixteen-bit.png")
    shutil.copy(mnist_image(5), folder / "name with spaces.png")
    shutil.copy(recording(5), folder / "ünïcødé ✓.wav")
    shutil.copy(mnist_image(6), folder / "new\nline.png")
    good |= {"animated", "cmyk", "sixteen-bit", "name with spaces", "ünïcødé ✓", "new\nline"}
    return bad, good


def test_twenty_kinds_of_bad_input_each_get_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """17 kinds refused with a reason, 4 odd kinds decoded (animated GIF, CMYK JPEG, 16-bit PNG, odd names);
    with the unreadable file and the three manifest cases below, 25 kinds in all."""
    folder = tmp_path / "corpus"
    bad, good = build_corpus(folder)
    real_scan = pipeline.stream

    def scan_then_delete(path):
        found = real_scan(path)
        (folder / "vanishing.wav").unlink()
        return found

    monkeypatch.setattr(pipeline, "stream", scan_then_delete)
    summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(folder)
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    for name, word in bad.items():
        assert word in reasons.get(name, ""), (name, reasons.get(name))
    assert set(reasons) == set(bad), set(reasons) ^ set(bad)
    engine = SearchEngine.open(f"sqlite:///{tmp_path}/c.db")
    assert good <= set(engine.catalogue.item_keys().values())
    assert summary.assets == {"audio": 1, "image": 5}


def test_unreadable_file_as_an_ordinary_user(tmp_path: Path) -> None:
    """Root reads everything, so the check drops to an ordinary user in a child process where needed."""
    import tempfile

    from indexer.sources import AssetSpec
    from indexer.work import WorkItem, decode_asset

    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    folder.chmod(0o755)  # the folder is open, the file is not
    path = folder / "secret.png"
    shutil.copy(mnist_image(1), path)
    path.chmod(0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            reason = decode_asset(WorkItem(1, AssetSpec("image", path), "x"), 16000).error or "decoded"
        except BaseException as exc:
            reason = f"crashed: {exc!r}"
        os.write(write, reason.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    reason = os.read(read, 1000).decode()
    shutil.rmtree(folder)
    assert reason == "permission denied"


def test_manifest_escapes_missing_columns_and_duplicates(tmp_path: Path) -> None:
    collection = tmp_path / "collection"
    collection.mkdir()
    shutil.copy(mnist_image(2), collection / "two.png")
    (tmp_path / "outside.png").write_bytes(mnist_image(3).read_bytes())
    (collection / "m.csv").write_text(
        "id,image,text,label\n"
        "a,two.png,the digit two,2\n"
        "b,../../../../../../etc/passwd,,x\n"
        "c,../outside.png\n"  # a row with missing columns
        "a,two.png,again,2\n"
    )
    summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(collection / "m.csv")
    reasons = sorted(p.reason for p in summary.problems)
    assert sum("outside the collection" in r for r in reasons) == 2  # /etc/passwd and ../outside.png
    assert "duplicate id 'a'" in reasons
    assert summary.assets == {"image": 1, "text": 1}
    allowed = Indexer(f"sqlite:///{tmp_path}/d.db").run(collection / "m.csv", roots=[tmp_path])
    assert allowed.assets == {"image": 2, "text": 1}  # allowed explicitly: ../outside.png is read


INJECTIONS = ["'; DROP TABLE items; --", '" OR 1=1 --', "x') UNION SELECT * FROM assets --", "%' OR '%'='"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sql_injection_strings_are_only_data(tmp_path: Path, evil: str) -> None:
    from retrieval.results import Method
    from retrieval.train import TrainConfig, select_items
    from storage.repository import item_metadata

    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(mnist_image(1), folder / "one.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": evil, "image": "media/one.png", "label": evil}) + "\n")
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url, collection=evil).run(tmp_path / "m.jsonl")
    engine = SearchEngine.open(url, evil)
    assert list(engine.catalogue.item_keys().values()) == [evil]
    hits = engine.search(image=mnist_image(1), k=1).hits
    assert hits[0].key == evil and hits[0].metadata == {"label": evil}
    engine.save_preset(Method(evil, "late", {"fusion": "rrf"}))
    assert engine.preset(evil).params == {"fusion": "rrf"}
    with engine.db.session() as session:
        metadata = item_metadata(session, engine.collection_id)
    ids, _ = select_items(metadata, engine.space, TrainConfig("gated", where={"label": evil}))
    assert len(ids) == 1
    ids, _ = select_items(metadata, engine.space, TrainConfig("gated", where={"label": "nothing"}))
    assert len(ids) == 0
    with pytest.raises(LookupError):
        SearchEngine.open(url, evil + "x")


def test_checkpoints_are_never_unpickled(tmp_path: Path) -> None:
    import torch

    from retrieval.fusion import create_strategy
    from storage import CorruptArtifactError

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    pickled = tmp_path / "evil.safetensors"
    pickled.write_bytes(pickle.dumps(Boom()))
    torch_file = tmp_path / "evil-torch.safetensors"
    torch.save({"weights": torch.zeros(2)}, torch_file)
    for path in (pickled, torch_file):
        with pytest.raises(CorruptArtifactError, match="not a fusion checkpoint of this program"):
            create_strategy("gated", checkpoint=str(path)).checkpoint  # noqa: B018
    assert not (tmp_path / "pwned").exists()


def test_the_ui_binds_to_localhost_by_default() -> None:
    config = (Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    assert 'address = "localhost"' in config and "maxUploadSize = 20" in config
