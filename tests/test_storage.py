from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from storage import (
    CorruptArtifactError,
    Database,
    EncoderMismatchError,
    FaissStore,
    StorageError,
    VectorStorage,
    VectorTable,
    default_factory,
)


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_sqlite_has_wal_and_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/sub/dir/x.db")
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert (tmp_path / "sub" / "dir" / "x.db").exists()


def test_vector_table_upsert_remove_lookup() -> None:
    table = VectorTable(dim=3)
    assert 7 not in table
    table.upsert(np.array([7, 2]), np.array([[1, 0, 0], [0, 1, 0]]))
    assert 7 in table and 2 in table and 3 not in table and 8 not in table
    table.upsert(np.array([2, 5]), np.array([[0, 0, 1], [1, 1, 0]]))  # 2 replaced, 5 added
    assert table.ids.tolist() == [2, 5, 7]
    vectors, present = table.lookup(np.array([2, 9, 7]))
    assert present.tolist() == [True, False, True]
    assert vectors[0].tolist() == [0, 0, 1] and vectors[1].tolist() == [0, 0, 0]
    assert table.remove(np.array([5, 100])) == 1
    assert table.ids.tolist() == [2, 7]
    with pytest.raises(EncoderMismatchError):
        table.upsert(np.array([1]), np.ones((1, 4)))


def test_vector_storage_round_trip_is_float16_and_guarded(tmp_path: Path) -> None:
    storage = VectorStorage(tmp_path)
    table = storage.load("image@hog", dim=4, encoder="hog")
    table.upsert(np.arange(3), unit(3, 4))
    storage.save("image@hog", table)
    again = storage.load("image@hog", dim=4, encoder="hog")
    assert again.vectors.dtype == np.float16 and again.ids.tolist() == [0, 1, 2]
    np.testing.assert_allclose(again.vectors, table.vectors)
    with pytest.raises(EncoderMismatchError, match="dimension 4"):
        storage.load("image@hog", dim=8)
    with pytest.raises(EncoderMismatchError, match="made by encoder 'hog'"):
        storage.load("image@hog", encoder="openclip:x")
    assert not list(tmp_path.glob("*.tmp")), "no temporary file may be left behind"


def test_corrupt_vector_file_is_reported(tmp_path: Path) -> None:
    storage = VectorStorage(tmp_path)
    storage.path_for("audio@mfcc").write_bytes(b"garbage" * 10)
    with pytest.raises(CorruptArtifactError, match="cannot be read"):
        storage.load("audio@mfcc")


def test_vector_store_search_remove_and_persist(tmp_path: Path) -> None:
    x = unit(200, 16)
    ids = np.arange(200) + 1000
    store = FaissStore.build(ids, x, header={"encoders": ["e1"]})
    scores, found = store.search(x[:3], 1)
    assert found[:, 0].tolist() == [1000, 1001, 1002]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    assert store.remove(np.array([1000])) == 1
    assert store.search(x[:1], 1)[1][0, 0] != 1000
    store.save(tmp_path / "i.safetensors")
    loaded = FaissStore.load(tmp_path / "i.safetensors", expect={"encoders": ["e1"]})
    assert len(loaded) == 199
    with pytest.raises(EncoderMismatchError, match="built with encoders"):
        FaissStore.load(tmp_path / "i.safetensors", expect={"encoders": ["other"]})
    with pytest.raises(EncoderMismatchError, match="dimension 8 given to an index of dimension 16"):
        loaded.search(unit(1, 8), 3)


def test_compressed_factories_keep_2_bits_a_dimension_at_every_width() -> None:
    ten_million = 10_000_000
    assert default_factory(ten_million, 512) == "IVF2048,PQ256x4fs"  # 128 B
    assert default_factory(ten_million, 1536) == "IVF2048,PQ768x4fs"  # early's fields together (384 B)
    assert default_factory(ten_million, 384) == "IVF2048,PQ192x4fs"  # MiniLM (96 B)
    assert default_factory(ten_million, 768) == "IVF2048,PQ384x4fs"
    assert default_factory(ten_million, 1000) == "IVF2048,PQ500x4fs"
    assert default_factory(ten_million, 1002) == "IVF2048,PQ334x4fs"  # the most codes within 2 bits that divide 1,002
    assert default_factory(ten_million, 1031) == "IVF16384,Flat"  # a prime: no code size fits
    assert default_factory(1_000_000, 512) == "IVF4096,Flat"  # below COMPRESS_FROM: whole vectors


def test_ivf_factory_above_flat_limit_keeps_recall() -> None:
    assert default_factory(9_999) == "Flat" and default_factory(10_000) == "IVF512,Flat"
    assert default_factory(100_000).startswith("IVF")
    centres = unit(100, 32, seed=1)  # media vectors cluster; uniform noise is no model of them
    x = centres[np.random.default_rng(3).integers(0, 100, 5000)] + 0.3 * unit(5000, 32, seed=4)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = FaissStore.build(np.arange(5000), x, "Flat")
    ivf = FaissStore.build(np.arange(5000), x, "IVF64,Flat")
    q = x[:50] + 0.05 * unit(50, 32, seed=2)
    _, a = exact.search(q, 10)
    _, b = ivf.search(q, 10)
    recall = np.mean([len(set(a[i]) & set(b[i])) / 10 for i in range(50)])
    assert recall >= 0.9


def test_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    import subprocess

    from storage import remove_stale_temporaries

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "indexes").mkdir()
    stale = tmp_path / f".x.vectors.safetensors.retrieval-{dead.pid}-abc.tmp"
    legacy = tmp_path / "indexes" / f".z.faiss.safetensors.{dead.pid}.abc.tmp"  # named by earlier versions
    live = tmp_path / "indexes" / f".y.faiss.safetensors.retrieval-{os.getppid()}-def.tmp"
    for path in (stale, legacy, live):
        path.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == 2
    assert not stale.exists() and not legacy.exists() and live.exists()


def test_the_sweep_never_touches_a_users_own_temporary_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only names that write_atomic makes are ours: a user's `.*.tmp` files (in the folder, below it,
    even ones with a dead pid in a similar place) stay, and so does anything outside indexes/."""
    import subprocess

    from storage import remove_stale_temporaries
    from storage.artifacts import write_atomic

    dead = subprocess.Popen(["true"])
    dead.wait()
    users = [
        tmp_path / ".notes.tmp",
        tmp_path / f".draft.{dead.pid}.abc.tmp",
        tmp_path / "indexes" / ".editor-swap.tmp",
        tmp_path / "photos" / f".x.vectors.safetensors.retrieval-{dead.pid}-abc.tmp",  # not a folder we write
    ]
    for path in users:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"mine")
    ours = tmp_path / f".t.vectors.safetensors.retrieval-{dead.pid}-q1.tmp"
    ours.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not ours.exists()
    assert all(p.read_bytes() == b"mine" for p in users)
    from storage.lock import _TEMPORARY

    named: list[str] = []

    def crash(src: str, dst: str) -> None:
        named.append(Path(src).name)
        raise OSError("killed here")

    monkeypatch.setattr("storage.artifacts.os.replace", crash)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "a.vectors.safetensors", b"data")
    assert named and _TEMPORARY.match(named[0]), f"the writer's own temporary {named} must be recognised"


def test_the_python_api_refuses_a_file_that_is_not_a_database(tmp_path) -> None:
    from storage import Database, StorageError

    png = tmp_path / "picture.db"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2048))
    with pytest.raises(StorageError, match=r"picture\.db: cannot use this database \(file is not a database\)"):
        Database(f"sqlite:///{png}")


def test_a_table_s_digest_names_its_content_however_it_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checksums are computed as chunks stream out: any chunking gives the same blocks and digest, another
    owner's stamp keeps it, one changed value changes it, and the block holding it is the one reported."""
    from storage import artifacts
    from storage.artifacts import damaged_rows, read_layout

    monkeypatch.setattr(artifacts, "BLOCK_BYTES", 64 * 32)  # 64 rows of 16-d float16 a block

    ids, vectors = np.arange(1, 301, dtype=np.int64), unit(300, 16).astype(np.float16)
    whole = VectorStorage(tmp_path / "a", owner="db/1").write("f", ids, 16, [vectors], {})
    parts = VectorStorage(tmp_path / "b", owner="db/2").write("f", ids, 16, np.array_split(vectors, 7), {})
    changed = vectors.copy()
    changed[200, 3] += 1
    other = VectorStorage(tmp_path / "c").write("f", ids, 16, [changed], {})
    assert whole == parts != other

    path = VectorStorage(tmp_path / "a").path_for("f")
    layout, start = read_layout(path)
    data = bytearray(path.read_bytes())
    at = start + layout["vectors"]["data_offsets"][0] + 200 * 32  # row 200 of 16-d float16 (32 bytes a row)
    data[at] ^= 1
    path.write_bytes(bytes(data))
    assert damaged_rows(path) == {"vectors": [(192, 256)]}


def test_a_table_written_before_checksums_is_read_and_has_nothing_to_compare(tmp_path: Path) -> None:
    from storage.artifacts import damaged_rows, save_arrays

    storage = VectorStorage(tmp_path, owner="db/1", recorded={})
    header = {"field": "f", "dim": 16, "count": 3, "owner": "db/1"}
    save_arrays(storage.path_for("f"), {"ids": np.arange(3, dtype=np.int64), "vectors": unit(3, 16)}, header)
    table = storage.load("f")
    assert len(table) == 3 and table.digest is None and damaged_rows(storage.path_for("f")) == {}
    storage.recorded = {"f": "0" * 32}  # a record that names another table: this one is not it
    with pytest.raises(StorageError, match="not the ones the database recorded"):
        storage.load("f")
