from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import mnist_image, recording

from indexer.sources import scan
from retrieval.errors import NotFoundError


def test_folder_groups_by_stem_and_types_by_content(tmp_path: Path) -> None:
    shutil.copy(mnist_image(1), tmp_path / "cat_01.jpg")  # a PNG named .jpg: still an image
    shutil.copy(recording(1), tmp_path / "cat_01.wav")
    (tmp_path / "cat_01.txt").write_text("a cat")
    shutil.copy(recording(2), tmp_path / "dog.bin")  # a WAV with an odd extension: audio
    (tmp_path / "notes.xyz").write_bytes(bytes(range(256)))  # unknown type
    (tmp_path / "sub").mkdir()
    shutil.copy(mnist_image(2), tmp_path / "sub" / "cat_01.png")  # same stem in another folder: another item
    shutil.copy(mnist_image(3), tmp_path / "cat_01.png")  # second image for one item
    found = scan(tmp_path)
    items = {i.key: i for i in found.items}
    assert set(items) == {"cat_01", "dog", "sub/cat_01"}
    assert set(items["cat_01"].assets) == {"image", "audio", "text"}
    assert set(items["dog"].assets) == {"audio"}
    reasons = {Path(p.path).name: p.reason for p in found.problems}
    assert reasons["notes.xyz"] == "unsupported file type"
    assert "already has a image" in reasons["cat_01.png"] or "already has a image" in reasons["cat_01.jpg"]


def test_csv_manifest_keeps_metadata_and_resolves_paths(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(mnist_image(7), media / "seven.png")
    (media / "caption.txt").write_text("a handwritten seven")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,image,audio,text,label\n"
        "a,media/seven.png,,media/caption.txt,7\n"
        "b,,media/nowhere.wav,the digit two,2\n"
        ",media/seven.png,,,1\n"
        "a,media/seven.png,,,7\n"
        "c,,,,3\n"
    )
    found = scan(manifest)
    items = {i.key: i for i in found.items}
    assert set(items) == {"a", "b"}
    assert items["a"].metadata == {"label": "7"}
    assert items["a"].assets["image"].path == (media / "seven.png").resolve()
    assert items["a"].assets["text"].inline_text is None  # an existing file
    assert items["b"].assets["text"].inline_text == "the digit two"
    assert items["b"].assets["audio"].path == (media / "nowhere.wav").resolve()  # decoding will record why
    reasons = sorted(p.reason for p in found.problems)
    assert reasons == ["duplicate id 'a'", "item 'c' names no image, audio or text", "row has no id"]


def test_jsonl_manifest_with_a_broken_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "text": "hello", "label": 3}) + "\n{not json\n")
    found = scan(manifest)
    assert [i.key for i in found.items] == ["x"] and found.items[0].metadata == {"label": 3}
    assert "invalid JSON" in found.problems[0].reason


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    assert scan(tmp_path).items == []
    with pytest.raises(NotFoundError, match="no such folder"):
        scan(tmp_path / "absent")
