"""Copies and moves of a database: a file copy never touches the original's vectors, `indexer copy` makes
an independent pair, and a database moved with its vectors keeps working (issue 35, item 1)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from conftest import mnist_image
from sqlalchemy import select

from indexer import Indexer
from indexer.__main__ import main as indexer_main
from indexer.check import check_collection
from retrieval import SearchEngine
from storage import Collection, CollectionBusyError, CollectionLock, Database, StorageError
from storage.copying import copy_database
from storage.pairing import PAIR_FILE, CopiedDatabaseError, MovedVectorsError


def vector_folder(url: str) -> Path:
    with Database(url).session() as session:
        return Path(session.scalars(select(Collection)).one().vector_dir)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def file_copy(source: Path, target: Path) -> None:
    """`cp` as a person runs it once the indexer has exited: SQLite has then moved its write-ahead log into
    the file (here the test's own connections are still open, so the log is checkpointed first)."""
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(source, target)


def move_pair(tmp_path: Path, vectors: str = "elsewhere/my.vectors") -> str:
    """`mv my.db elsewhere/`, and the vector folder to `vectors`: the moved database's URL."""
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    file_copy(tmp_path / "my.db", moved / "my.db")
    (tmp_path / "my.db").unlink()
    shutil.move(tmp_path / "my.vectors", tmp_path / vectors)
    return f"sqlite:///{moved}/my.db"


def finds_itself(url: str, image: Path, key: str) -> bool:
    return SearchEngine.open(url).search(image=image, strategy="late", k=1).hits[0].key == key


@pytest.fixture
def original(small_folder: Path, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/my.db"
    Indexer(url).run(small_folder)
    SearchEngine.open(url).search(image=small_folder / "d1_george.png", k=3)  # its indexes built and recorded
    return url


@pytest.mark.parametrize("paired_before", [True, False], ids=["paired", "folder-from-before-pairing"])
def test_a_copied_database_file_is_refused_and_the_original_untouched(
    original: str, small_folder: Path, tmp_path: Path, paired_before: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = vector_folder(original)
    if not paired_before:  # a folder written by a version before pairing: the copy must not claim it first
        (folder / PAIR_FILE).unlink()
    before = snapshot(folder)
    file_copy(tmp_path / "my.db", tmp_path / "experiment.db")
    copy = f"sqlite:///{tmp_path}/experiment.db"
    shutil.copy(mnist_image(9), small_folder / "extra.png")

    with pytest.raises(CopiedDatabaseError, match=r"is a copy of the database at .*my\.db.*indexer copy"):
        Indexer(copy).run(small_folder)
    with pytest.raises(CopiedDatabaseError):
        SearchEngine.open(copy).search(image=small_folder / "d1_george.png", k=3)
    assert indexer_main([str(small_folder), "--db", copy, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "python -m indexer copy" in err, err

    after = snapshot(folder)
    after.pop(PAIR_FILE, None), before.pop(PAIR_FILE, None)
    assert after == before, "the copy wrote into the original's vector folder"
    assert finds_itself(original, small_folder / "d1_george.png", "d1_george")
    assert check_collection(original, "default").findings == []


def test_indexer_copy_makes_a_pair_of_its_own(original: str, small_folder: Path, tmp_path: Path, db_url: str) -> None:
    """Into any SQLAlchemy URL (an SQLite file, a PostgreSQL database), with the copy's vectors where asked."""
    copy = db_url if "postgresql" in db_url else f"sqlite:///{tmp_path}/experiment.db"
    vectors = tmp_path / "copy-vectors"
    assert indexer_main(["copy", "--db", original, "--to", copy, "--vector-dir", str(vectors), "--quiet"]) == 0
    assert Database(copy).uid != Database(original).uid
    assert vector_folder(copy).parent == vectors
    assert finds_itself(copy, small_folder / "d1_george.png", "d1_george")
    assert check_collection(copy, "default").findings == [], "the copy's tables and indexes are its own"

    before = snapshot(vector_folder(original))
    shutil.copy(mnist_image(9), small_folder / "extra.png")
    assert Indexer(copy).run(small_folder).encoded == 1
    assert snapshot(vector_folder(original)) == before, "indexing the copy touched the original"
    assert finds_itself(copy, small_folder / "extra.png", "extra")
    assert not finds_itself(original, small_folder / "extra.png", "extra")
    assert check_collection(original, "default", repair=True).findings == []
    assert check_collection(copy, "default").findings == [], "repairing the original left the copy whole"

    with pytest.raises(StorageError, match="already holds collections: copy into a new, empty database"):
        copy_database(original, copy)
    assert finds_itself(copy, small_folder / "extra.png", "extra"), "a refusal took back a database it had not made"


def test_a_database_moved_with_its_vectors_is_relocated(original: str, small_folder: Path, tmp_path: Path) -> None:
    url = move_pair(tmp_path)
    moved = tmp_path / "elsewhere"
    # probe cases 5 and 16 (a pair shipped on read-only media): read from the folder beside it, nothing made
    folder = moved / "my.vectors" / vector_folder(url).name
    before = snapshot(folder)
    assert finds_itself(url, small_folder / "d1_george.png", "d1_george")
    assert check_collection(url, "default").findings == []
    assert indexer_main(["status", "--db", url]) == 0
    assert not (tmp_path / "my.vectors").exists(), "reading made the recorded folder again"
    after = snapshot(folder)
    after.pop(PAIR_FILE), before.pop(PAIR_FILE)
    assert after == before, "reading wrote into the moved folder (an index built again?)"
    assert indexer_main(["relocate", "--db", url]) == 0
    assert finds_itself(url, small_folder / "d1_george.png", "d1_george")
    assert check_collection(url, "default").findings == []
    shutil.copy(mnist_image(9), small_folder / "extra.png")
    assert Indexer(url).run(small_folder).encoded == 1


def test_a_database_moved_alone_keeps_its_folder(original: str, small_folder: Path, tmp_path: Path) -> None:
    """The folder stays where it was recorded; the database, moved (not copied), is its owner still."""
    file_copy(tmp_path / "my.db", tmp_path / "renamed.db")
    (tmp_path / "my.db").unlink()
    url = f"sqlite:///{tmp_path}/renamed.db"
    assert finds_itself(url, small_folder / "d1_george.png", "d1_george")
    shutil.copy(mnist_image(9), small_folder / "extra.png")
    assert Indexer(url).run(small_folder).encoded == 1


def test_a_copy_keeps_writers_out_and_lets_other_copies_in(original: str, small_folder: Path, tmp_path: Path) -> None:
    folder = vector_folder(original)
    with CollectionLock(folder, "a copy in progress", shared=True):
        copy_database(original, f"sqlite:///{tmp_path}/second.db")  # another copy at the same moment
        with pytest.raises(CollectionBusyError, match=r"is being written by another process \(an indexer, or"):
            Indexer(original).run(small_folder)
    assert finds_itself(f"sqlite:///{tmp_path}/second.db", small_folder / "d1_george.png", "d1_george")
    assert Indexer(original).run(small_folder).unchanged > 0  # the lock is gone with the copy


def test_a_table_whose_bytes_changed_is_never_copied(
    original: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 15: the copy re-stamped a damaged table with fresh checksums, so its check and search
    trusted swapped vectors for good. The source is verified first, and nothing is copied."""
    from test_check import swap_rows

    table = next(vector_folder(original).glob("image_*.vectors.safetensors"))
    swap_rows(table, 0, 1)
    copy = f"sqlite:///{tmp_path}/copy.db"
    assert indexer_main(["copy", "--db", original, "--to", copy, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {table}: ") and "changed since it was written" in err
    assert f"`python -m indexer check --repair --db {original} --collection default` first" in err
    assert not (tmp_path / "copy.db").exists(), "the refused copy left an empty database"
    assert not (tmp_path / "copy.vectors").exists()


def test_a_database_whose_tables_are_missing_is_not_copied(
    original: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 14: `copy` said "copied with its vectors" and made an empty copy. A table deleted is named;
    a folder that is not where it was recorded names `relocate`, and no folder is made there. A refused copy
    leaves no database file where it would have written one."""
    folder = vector_folder(original)
    table = next(folder.glob("image_*.vectors.safetensors"))
    table.unlink()
    copy = f"sqlite:///{tmp_path}/copy.db"
    assert indexer_main(["copy", "--db", original, "--to", copy, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"records vector tables missing from {folder} (image@" in err, err
    assert "nothing was copied" in err and "indexer check" in err
    assert not (tmp_path / "copy.db").exists(), "the refused copy left an empty database"

    shutil.move(tmp_path / "my.vectors", tmp_path / "moved-elsewhere")
    assert indexer_main(["copy", "--db", original, "--to", copy, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the folder {folder} does not exist" in err, err
    assert f"`python -m indexer relocate --db {original}`" in err
    assert not folder.exists(), "the copy made the recorded folder again"


def test_relocate_on_a_file_copy_never_takes_the_originals_folder(
    original: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 3: the refusal's second advice, `relocate` on a file copy, handed the original's folder to
    the copy; the original was then refused as "a copy", and the copy wrote into its tables."""
    folder = vector_folder(original)
    before = snapshot(folder)
    file_copy(tmp_path / "my.db", tmp_path / "experiment.db")
    copy = f"sqlite:///{tmp_path}/experiment.db"
    assert indexer_main(["relocate", "--db", copy]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1 and f"{folder} belongs to the database at {tmp_path / 'my.db'}, which still exists" in err
    )
    assert f"`python -m indexer copy --db {original} --to NEW_URL`" in err
    assert snapshot(folder) == before
    assert finds_itself(original, small_folder / "d1_george.png", "d1_george")
    with pytest.raises(CopiedDatabaseError):
        Indexer(copy).run(small_folder)


def test_relocate_on_a_copied_folder_pairs_with_the_folder_beside_it(
    original: str, small_folder: Path, tmp_path: Path
) -> None:
    """Probe case 9: `cp -a` of a folder holding the database and its vectors; relocate paired the copy with
    the original's recorded folder rather than the one beside it."""
    folder = vector_folder(original)
    copied = tmp_path / "copied"
    copied.mkdir()
    file_copy(tmp_path / "my.db", copied / "my.db")
    shutil.copytree(tmp_path / "my.vectors", copied / "my.vectors")
    copy = f"sqlite:///{copied}/my.db"
    assert indexer_main(["relocate", "--db", copy]) == 0
    assert vector_folder(copy) == copied / "my.vectors" / folder.name
    before = snapshot(folder)
    shutil.copy(mnist_image(9), small_folder / "extra.png")
    assert Indexer(copy).run(small_folder).encoded == 1
    assert snapshot(folder) == before, "indexing the copy touched the original's folder"
    assert finds_itself(copy, small_folder / "extra.png", "extra")
    assert finds_itself(original, small_folder / "d1_george.png", "d1_george")
    assert check_collection(original, "default").findings == []
    assert check_collection(copy, "default").findings == []


def test_a_writer_never_makes_the_folder_of_a_moved_pair_again(
    original: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 6: an indexing run after a move, before `relocate`, made the recorded folder anew with only
    the new item, and relocate then paired the database with that, orphaning the moved vectors."""
    folder = vector_folder(original)
    url = move_pair(tmp_path)
    moved = tmp_path / "elsewhere"
    shutil.copy(mnist_image(9), small_folder / "extra.png")

    assert indexer_main([str(small_folder), "--db", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records vectors in a folder that is not there, so nothing was written" in err
    assert f"a folder holding this database's id is beside the database, at {moved / 'my.vectors' / folder.name}" in err
    assert f"`python -m indexer relocate --db {url}`" in err
    with pytest.raises(MovedVectorsError):
        check_collection(url, "default", repair=True)
    assert not folder.exists() and not (tmp_path / "my.vectors").exists()

    assert indexer_main(["relocate", "--db", url]) == 0
    assert Indexer(url).run(small_folder).encoded == 1
    assert check_collection(url, "default").findings == []


def test_search_on_a_moved_database_names_relocate_not_encoding_again(
    original: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 5: a database whose vectors went elsewhere was told to index everything again; its vectors
    are whole, and `relocate --vector-dir` pairs them."""
    from retrieval.__main__ import main as retrieval_main

    folder = vector_folder(original)
    url = move_pair(tmp_path, "kept-vectors")
    image = small_folder / "d1_george.png"
    assert retrieval_main(["search", "--db", url, "--image", str(image)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the folder {folder} does not exist" in err, err
    assert f"`python -m indexer relocate --db {url}` (with --vector-dir naming where" in err
    assert "index the collection again" not in err

    assert indexer_main(["relocate", "--db", url, "--vector-dir", str(tmp_path / "kept-vectors")]) == 0
    assert finds_itself(url, image, "d1_george")


def test_the_refusal_of_a_file_copy_names_a_command_that_works(
    original: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 2: the advice named the file copy itself as `--to`, which `copy` can never fill (it holds
    collections), and offered `relocate`, which must refuse a copy whose original is there."""
    file_copy(tmp_path / "my.db", tmp_path / "experiment.db")
    copy = f"sqlite:///{tmp_path}/experiment.db"
    assert indexer_main([str(small_folder), "--db", copy, "--quiet"]) == 2
    err = capsys.readouterr().err
    new = f"sqlite:///{tmp_path}/NEW.db"
    assert f"`python -m indexer copy --db {original} --to {new}` (a new file; then delete this one)" in err, err
    assert "relocate" not in err
    assert indexer_main(["copy", "--db", original, "--to", new, "--quiet"]) == 0
    assert finds_itself(new, small_folder / "d1_george.png", "d1_george")
