"""The demo's datasets for someone who has only the repository: fetched from a mirror standing in for their
public homes, every file checked; with no network, one line saying what to fetch and where to put it."""

from __future__ import annotations

import gzip
import io
import socket
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FSDD, MNIST, require_real_media
from PIL import Image

from indexer import datasets
from indexer.__main__ import main
from indexer.datasets import MIRROR_NAMES, DatasetsMissingError, datasets_dir, fetch_datasets


def idx_gz(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes(), compresslevel=1)


def write_mirror(
    folder: Path, recordings: dict[str, bytes], images: np.ndarray, labels: np.ndarray, extra: dict[str, bytes]
) -> Path:
    """A mirror laid out as `indexer.datasets` expects: FSDD's repository archive (its recordings, plus
    `extra` members) and MNIST's two idx files."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / MIRROR_NAMES["fsdd"], "w:gz", compresslevel=1) as tar:
        members = {f"free-spoken-digit-dataset-26eb9aa/recordings/{n}": d for n, d in recordings.items()} | extra
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (folder / MIRROR_NAMES["mnist-images"]).write_bytes(idx_gz(images, 2051))
    (folder / MIRROR_NAMES["mnist-labels"]).write_bytes(idx_gz(labels, 2049))
    return folder


@pytest.mark.slow
def test_the_datasets_are_fetched_from_a_mirror_file_for_file(tmp_path: Path) -> None:
    """A mirror built from the shared copies (what the public homes serve): the fetched tree is the shared
    one, recording for recording and pixel for pixel, and nothing outside the listed names is written."""
    require_real_media()
    recordings = {p.name: p.read_bytes() for p in sorted(FSDD.glob("*.wav"))}
    recordings["0_theo_0.wav"] = b"another speaker, not used by the demo"
    pngs = sorted(MNIST.glob("*.png"))
    images = np.stack([np.asarray(Image.open(p)) for p in pngs])
    labels = np.array([int(p.stem.split("_")[1]) for p in pngs], np.uint8)
    hostile = {"free-spoken-digit-dataset-26eb9aa/../../escaped.wav": b"x", "/tmp/absolute.wav": b"x"}
    mirror = write_mirror(tmp_path / "mirror", recordings, images, labels, hostile)

    fetched = fetch_datasets(tmp_path / "data" / "datasets", mirror=str(mirror))
    assert sorted(p.name for p in (fetched / "fsdd" / "recordings").iterdir()) == sorted(
        p.name for p in FSDD.glob("*.wav")
    )
    for path in FSDD.glob("*.wav"):
        assert (fetched / "fsdd" / "recordings" / path.name).read_bytes() == path.read_bytes(), path.name
    assert sorted(p.name for p in (fetched / "mnist" / "images").iterdir()) == [p.name for p in pngs]
    for path in pngs[::97]:
        assert np.array_equal(
            np.asarray(Image.open(fetched / "mnist" / "images" / path.name)), np.asarray(Image.open(path))
        )
    assert "CC BY-SA 4.0" in (fetched / "ATTRIBUTION.txt").read_text()
    assert not (tmp_path / "escaped.wav").exists() and not list(tmp_path.glob(".datasets.fetch-*"))


def tiny_mirror(folder: Path, wav: bytes) -> Path:
    return write_mirror(folder, {"0_george_0.wav": wav}, np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8), {})


def test_a_file_that_differs_from_the_pinned_copy_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    mirror = tiny_mirror(tmp_path / "mirror", b"RIFF a recording that is not the one the demo was built with")
    dest = tmp_path / "data" / "datasets"
    with pytest.raises(DatasetsMissingError, match=r"0_george_0\.wav differs from the copy the demo was built with"):
        fetch_datasets(dest, mirror=str(mirror))
    assert list((tmp_path / "data").iterdir()) == [], "no half-fetched folder"


def test_a_mirror_that_is_not_an_archive_is_one_clear_error(tmp_path: Path) -> None:
    mirror = tiny_mirror(tmp_path / "mirror", b"")
    (mirror / MIRROR_NAMES["fsdd"]).write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DatasetsMissingError, match=r"free-spoken-digit-dataset\.tar\.gz: not a readable \.tar\.gz"):
        fetch_datasets(tmp_path / "dest", mirror=str(mirror))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_with_no_network_the_demo_says_what_to_fetch_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the repository, no ../shared and no network (a closed port stands in): `indexer demo` exits 2
    with one line naming the sources and the folder to put them in, not a traceback."""
    monkeypatch.setattr(datasets, "SHARED", tmp_path / "shared" / "datasets")
    monkeypatch.setattr(datasets, "FETCHED", tmp_path / "checkout" / "data" / "datasets")
    monkeypatch.delenv("DIGITS_DATASETS", raising=False)
    monkeypatch.setenv("DIGITS_MIRROR", f"http://127.0.0.1:{closed_port()}/mirror")
    status = main(["demo", "--db", f"sqlite:///{tmp_path}/demo.db", "--out", str(tmp_path / "digits"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "fetching http://127.0.0.1" in lines[0] and datasets.SOURCES["fsdd"] in lines[0]
    assert str(tmp_path / "checkout" / "data" / "datasets") in lines[0]
    assert not (tmp_path / "checkout" / "data" / "datasets").exists()


def test_datasets_named_explicitly_are_never_fetched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetsMissingError, match=r"nowhere: expected fsdd/recordings and mnist/images"):
        datasets_dir(fetch=True)
