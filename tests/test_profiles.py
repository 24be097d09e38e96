"""Profile versions: a collection made with `offline` v1 keeps searching, and `--migrate` moves it to the
current version re-encoding only the modality whose encoder changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import mnist_image, recording
from sqlalchemy import select

from indexer import Indexer
from indexer.__main__ import main as indexer_main
from indexer.status import collection_status
from retrieval import SearchEngine
from retrieval.profiles import PAST_PROFILES, PROFILES, Profile, migration_hint, newer_profile
from storage import Collection, Database, EncoderMismatchError, EncoderRecord, IndexBuild, VectorStorage

V1 = PAST_PROFILES[("offline", 1)]


def stored(url: str) -> tuple[dict, set[str], set[str], Path]:
    with Database(url).session() as session:
        row = session.scalar(select(Collection))
        encoders = {r.name for r in session.scalars(select(EncoderRecord))}
        builds = {e for b in session.scalars(select(IndexBuild)) for e in b.encoders}
        return row.profile, encoders, builds, Path(row.vector_dir)


def test_only_an_earlier_builtin_version_is_offered_a_move() -> None:
    assert newer_profile(V1) == PROFILES["offline"] and PROFILES["offline"].version == 2
    assert newer_profile(PROFILES["offline"]) is None
    assert newer_profile(Profile("offline", {"audio": ("clap:x",)})) is None  # a custom profile of that name
    assert Profile.from_dict({"name": "offline", "encoders": {"audio": ["mfcc"]}}).version == 1  # stored by 0.13
    hint = migration_hint(V1, "mine")
    assert hint is not None and "--collection mine --migrate" in hint and "only its audio" in hint


def test_a_v1_collection_searches_then_migrates_re_encoding_only_its_audio(small_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    first = Indexer(url, profile=V1).run(small_folder)
    before = SearchEngine.open(url).search(audio=recording(2, "george", 0), k=3).hits
    assert before[0].key == "d2_george"  # the clip itself is in the collection
    note = collection_status(url)["profile_note"]
    assert "offline v1" in note and "--migrate" in note

    with pytest.raises(EncoderMismatchError, match="Add --migrate"):
        Indexer(url, profile=PROFILES["offline"])
    summary = Indexer(url, migrate=True).run(small_folder)
    assert summary.encoded == first.assets["audio"]  # images and texts kept their vectors
    profile, encoders, builds, folder = stored(url)
    assert profile["version"] == 2 and profile["encoders"]["audio"] == ["speech"]
    assert "mfcc" not in encoders | builds and "speech" in encoders
    assert not VectorStorage(folder).exists("audio@mfcc") and VectorStorage(folder).exists("audio@speech")
    assert collection_status(url)["profile_note"] is None

    after = SearchEngine.open(url)
    assert after.search(audio=recording(2, "george", 0), k=3).hits[0].key == "d2_george"
    assert after.search(text="the digit 3 said by george", k=1).hits[0].key == "d3_george"
    assert Indexer(url).run(small_folder).encoded == 0  # moved for good: the next run re-encodes nothing


def test_the_migrate_flag_from_the_command_line(small_folder: Path, tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url, profile=V1).run(small_folder)
    assert indexer_main(["status", "--db", url]) == 0
    assert "note: collection 'default' was made with profile offline v1" in capsys.readouterr().out
    assert indexer_main([str(small_folder), "--db", url, "--migrate", "--quiet"]) == 0
    assert indexer_main(["status", "--db", url]) == 0
    out = capsys.readouterr().out
    assert "profile: offline v2" in out and "note:" not in out and "audio@speech" in out


def test_an_encoder_that_now_encodes_differently_is_refused_then_migrated(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0.16.0's speech encoder reads each clip's bands alone (they depended on the clips batched with it): a
    collection encoded before is refused by search with the command that fixes it, and `--migrate` encodes
    that modality again, keeping the rest."""
    from retrieval.encoders.features import HogImageEncoder

    url = f"sqlite:///{tmp_path}/c.db"
    first = Indexer(url, profile=Profile("fast", {"image": ("hog",), "audio": ("mfcc",)})).run(small_folder)
    monkeypatch.setattr(HogImageEncoder, "preprocessing", "hog-changed")
    with pytest.raises(EncoderMismatchError, match="--collection default --migrate` encodes its image again"):
        SearchEngine.open(url).search(image=mnist_image(2), k=1)
    with pytest.raises(EncoderMismatchError, match="--migrate"):
        Indexer(url).run(small_folder)
    summary = Indexer(url, migrate=True).run(small_folder)
    assert summary.encoded == first.assets["image"]  # the recordings kept their vectors
    with Database(url).session() as session:
        assert session.scalar(select(EncoderRecord.preprocessing).where(EncoderRecord.name == "hog")) == "hog-changed"
    engine = SearchEngine.open(url)
    assert engine.search(audio=recording(2, "george", 0), k=1).hits[0].key == "d2_george"
    assert engine.search(image=mnist_image(3), k=1).hits[0].key == "d3_george"
    assert Indexer(url).run(small_folder).encoded == 0
