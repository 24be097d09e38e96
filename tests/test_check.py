"""`python -m indexer check`: each artefact broken in turn (a table deleted, rows dropped, vectors lost, an
index corrupted, swapped or replaced by an older copy), then the report, the repair, and what search says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_image, recording
from sqlalchemy import delete, select

from indexer import Indexer
from indexer.__main__ import main as indexer_main
from indexer.check import check_collection
from retrieval import SearchEngine
from retrieval.__main__ import main as retrieval_main
from retrieval.profiles import Profile
from storage import Collection, Database, EncoderMismatchError, IndexBuild, Item, VectorStorage, open_backend
from storage.catalog import MissingVectorsError
from storage.repository import ok_ids_by_modality

FAST = {"name": "fast", "encoders": {"image": ["hog"], "audio": ["mfcc"]}}
COSINE = {"normalisation": "none", "weighting": "fixed"}  # late's score is then the cosine itself


@pytest.fixture
def indexed(small_folder: Path, tmp_path: Path) -> tuple[str, Indexer]:
    url = f"sqlite:///{tmp_path}/c.db"
    indexer = Indexer(url, profile=Profile.from_dict(FAST))
    indexer.run(small_folder)
    return url, indexer


def index_location(url: str, strategy: str, key: str) -> str:
    with Database(url).session() as session:
        return session.scalar(select(IndexBuild.file).filter_by(strategy=strategy, key=key))


def index_file(url: str, strategy: str, key: str) -> Path:
    return Path(index_location(url, strategy, key))


def index_ids(url: str, strategy: str, key: str) -> set[int]:
    backend = open_backend("faiss", index_file(url, strategy, key).parent)
    return set(backend.open(str(index_file(url, strategy, key)), {}).ids().tolist())


def ok_ids(url: str) -> dict[str, set[int]]:
    with Database(url).session() as session:
        return ok_ids_by_modality(session, session.scalar(select(Collection.id)))


def run_check(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    code = indexer_main(["check", "--db", url, "--quiet", "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_a_consistent_collection_has_no_differences(indexed: tuple[str, Indexer], capsys) -> None:
    url, _ = indexed
    code, report = run_check(url, capsys)
    assert (code, report["findings"], report["items"], report["tables"]) == (0, [], 12, 2)
    assert report["indexes"] >= 3  # a field index per table and early fusion's, all current
    assert indexer_main(["check", "--db", url, "--quiet"]) == 0
    assert capsys.readouterr().out.endswith("differences: 0, repaired: 0, left: 0\n")


def test_a_deleted_table_is_an_error_in_search_status_and_check(
    indexed: tuple[str, Indexer], small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, indexer = indexed
    table = indexer.storage.path_for("image@hog")
    table.unlink()
    with pytest.raises(MissingVectorsError, match=f"{table}: the vector table of image@hog is missing.* 8 items"):
        SearchEngine.open(url)
    assert retrieval_main(["search", "--db", url, "--audio", str(recording(1))]) == 2
    assert f"error: {table}" in capsys.readouterr().err  # one line naming the file, exit 2: not "no item"

    assert indexer_main(["status", "--db", url]) == 1
    out, err = capsys.readouterr()
    assert "table image@hog: MISSING (8 in the database)" in out and f"{table}: missing" in err

    code, report = run_check(url, capsys, "--repair")
    [finding] = report["findings"]
    assert code == 1 and finding["name"] == "image@hog" and not finding["repaired"]
    assert "missing, but 8 items have image vectors" in finding["problem"]
    assert f"python -m indexer {small_folder}" in finding["fix"] and "cannot be rebuilt" in finding["fix"]

    again = Indexer(url).run(small_folder)  # what check says to do
    assert (again.encoded, again.unchanged) == (8, 12)  # the images; the recordings and texts are kept
    assert run_check(url, capsys)[0] == 0
    hits = SearchEngine.open(url).search(image=mnist_image(2), k=3, **COSINE).hits
    assert hits[0].key == "d2_george" and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_dropped_rows_leave_vectors_that_repair_drops(indexed: tuple[str, Indexer], capsys) -> None:
    url, indexer = indexed
    with Database(url).session() as session:
        gone = session.scalars(select(Item.id).where(Item.key.in_(["d1_george", "d3_jackson"]))).all()
        session.execute(delete(Item).where(Item.id.in_(gone)))  # rows dropped behind the indexer's back
    code, report = run_check(url, capsys)
    problems = {(f["artefact"], f["name"]): f for f in report["findings"]}
    assert code == 1 and set(problems) == {("table", "image@hog"), ("table", "audio@mfcc")}
    assert problems[("table", "image@hog")]["problem"].startswith("2 vectors that no database row backs")
    assert all(f["repairable"] and not f["repaired"] for f in problems.values())

    code, report = run_check(url, capsys, "--repair")
    assert code == 0 and all(f["repaired"] for f in report["findings"])
    ok = ok_ids(url)
    assert set(VectorStorage(indexer.storage.root).load("image@hog").ids.tolist()) == ok["image"]
    assert index_ids(url, "field", "image@hog") == ok["image"] and not set(gone) & ok["image"]
    assert index_ids(url, "early", "image@hog+audio@mfcc") == ok["image"] | ok["audio"]
    assert run_check(url, capsys) == (0, run_check(url, capsys)[1])
    hits = SearchEngine.open(url).search(image=mnist_image(1), strategy="early", k=20).hits
    assert hits and "d1_george" not in {h.key for h in hits} and {h.item_id for h in hits} <= ok["image"]


def test_lost_vectors_are_reported_and_the_index_that_still_has_them_rebuilt(
    indexed: tuple[str, Indexer], small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, indexer = indexed
    storage = VectorStorage(indexer.storage.root)
    table = storage.load("audio@mfcc")
    lost = table.ids[:3].copy()
    table.remove(lost)
    storage.save("audio@mfcc", table)
    code, report = run_check(url, capsys, "--repair")
    problems = {(f["artefact"], f["name"]): f for f in report["findings"]}
    assert code == 1
    assert problems[("table", "audio@mfcc")]["problem"].startswith("3 items have a good audio asset but no vector")
    assert not problems[("table", "audio@mfcc")]["repaired"]
    assert problems[("index", "field/audio@mfcc")]["problem"] == (
        f"holds 8 ids, the tables 5: 3 not in the tables (ids {', '.join(map(str, lost))})"
    )
    assert problems[("index", "field/audio@mfcc")]["repaired"]
    assert index_ids(url, "field", "audio@mfcc") == set(table.ids.tolist())  # never serves what is gone
    assert Indexer(url).run(small_folder).encoded == 3  # the indexer re-encodes exactly the lost ones
    assert run_check(url, capsys)[0] == 0


def test_a_corrupt_index_is_reported_and_rebuilt(indexed: tuple[str, Indexer], capsys) -> None:
    url, _ = indexed
    path = index_file(url, "field", "image@hog")
    path.write_bytes(b"\x00garbage" * 100)
    code, report = run_check(url, capsys)
    [finding] = report["findings"]
    assert code == 1 and finding["name"] == "field/image@hog" and finding["problem"] == "missing or unreadable"
    assert indexer_main(["check", "--db", url, "--quiet", "--repair"]) == 0
    out = capsys.readouterr().out
    assert f"index field/image@hog: missing or unreadable\n  at {path}\n  repaired: rebuild it" in out
    assert out.endswith("differences: 1, repaired: 1, left: 0\n")
    assert index_ids(url, "field", "image@hog") == ok_ids(url)["image"]


def test_a_swapped_index_points_at_a_command_that_exists_and_check_repairs_it(
    indexed: tuple[str, Indexer], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = indexed
    shutil.copy(index_file(url, "field", "image@hog"), index_file(url, "field", "audio@mfcc"))
    with pytest.raises(EncoderMismatchError, match="python -m indexer check --repair") as error:
        SearchEngine.open(url).search(audio=recording(3), k=3)
    command = str(error.value).split("tables: ", 1)[1].split()[:5]
    assert command == ["python", "-m", "indexer", "check", "--repair"]
    code, report = run_check(url, capsys, "--repair")
    [finding] = report["findings"]
    assert finding["name"] == "field/audio@mfcc" and "does not match its record" in finding["problem"]
    assert code == 0 and finding["repaired"]
    hits = SearchEngine.open(url).search(audio=recording(3, "george", 0), k=3, **COSINE).hits
    assert hits[0].key == "d3_george" and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_an_older_copy_of_an_index_is_never_served(
    indexed: tuple[str, Indexer], small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = indexed
    old = index_file(url, "field", "image@hog").read_bytes()
    shutil.copy(mnist_image(9), small_folder / "d9_new.png")
    Indexer(url).run(small_folder)
    index_file(url, "field", "image@hog").write_bytes(old)  # e.g. restored from a backup taken before the run
    code, report = run_check(url, capsys)
    assert code == 1 and "an older copy" in report["findings"][0]["problem"]
    hits = SearchEngine.open(url).search(image=mnist_image(9), k=1).hits
    assert hits[0].key == "d9_new"  # rebuilt by the search, not trusted
    assert run_check(url, capsys)[0] == 0


def test_check_on_an_unknown_collection_is_a_clear_error(indexed: tuple[str, Indexer], capsys) -> None:
    url, _ = indexed
    assert indexer_main(["check", "--db", url, "--collection", "nope"]) == 2
    assert "no collection 'nope'" in capsys.readouterr().err
    assert check_collection(url).left == []


def test_a_relative_vector_dir_is_stored_resolved(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    Indexer(url, profile=Profile.from_dict(FAST), vector_dir=Path("vectors")).run(small_folder)
    with Database(url).session() as session:
        recorded = Path(session.scalar(select(Collection.vector_dir)))
    assert recorded.is_absolute() and recorded.parent == tmp_path / "here" / "vectors"
    monkeypatch.chdir(tmp_path / "elsewhere")  # a search from another folder finds the same vectors
    hits = SearchEngine.open(url).search(image=mnist_image(0), k=1, **COSINE).hits
    assert hits[0].key == "d0_george" and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_a_relative_folder_recorded_by_an_older_version_is_made_absolute_where_it_is_found(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sqlalchemy import update

    from storage import StorageError

    url = f"sqlite:///{tmp_path}/c.db"
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    indexer = Indexer(url, profile=Profile.from_dict(FAST), vector_dir=Path("vectors"))
    indexer.run(small_folder)
    relative = os.path.relpath(indexer.storage.root, here)
    with Database(url).session() as session:  # what an older version recorded
        session.execute(update(Collection).values(vector_dir=relative))

    monkeypatch.chdir(elsewhere)
    with pytest.raises(MissingVectorsError, match="recorded relative to where the indexer ran"):
        SearchEngine.open(url)
    with pytest.raises(StorageError, match=f"relative path {relative}, which is not under {elsewhere}"):
        Indexer(url)
    assert not (elsewhere / "vectors").exists(), "nothing is written where the vectors are not"

    monkeypatch.chdir(here)
    assert Indexer(url).run(small_folder).encoded == 0
    monkeypatch.chdir(elsewhere)
    with Database(url).session() as session:
        assert session.scalar(select(Collection.vector_dir)) == str(indexer.storage.root)
    assert SearchEngine.open(url).search(image=mnist_image(0), k=1).hits[0].key == "d0_george"


def test_status_and_check_say_what_an_interrupted_run_left_unencoded(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 35, item 8: after a killed indexer, status said '12 items' and check 'differences: 0' while
    most items had nothing encoded, so searches silently covered part of the collection."""
    from indexer import pipeline

    url = f"sqlite:///{tmp_path}/c.db"
    flushes = []

    def crash() -> None:
        flushes.append(1)
        if len(flushes) == 2:
            raise RuntimeError("killed")

    monkeypatch.setitem(pipeline.FAULTS, "flush:tables-saved", crash)
    with pytest.raises(RuntimeError, match="killed"):
        Indexer(url, batch_size=2, flush_assets=2).run(small_folder)
    monkeypatch.delitem(pipeline.FAULTS, "flush:tables-saved")
    assert indexer_main(["status", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "items have nothing encoded yet" in err and "run the indexer on the same source again" in err
    assert f"--db {url} --collection default" in err, "the advice names this database, not the default one"
    assert retrieval_main(["search", "--db", url, "--text", "zero"]) == 0  # answers from what is encoded, and says so
    note = capsys.readouterr().err
    assert "items have nothing encoded yet" in note and "cannot be found" in note, note
    report = check_collection(url)  # the crash also left tables ahead of rows: a table finding beside it
    unencoded = [f for f in report.findings if f.artefact == "items"]
    assert len(unencoded) == 1 and not unencoded[0].repairable and str(small_folder) in unencoded[0].fix

    Indexer(url).run(small_folder)
    assert indexer_main(["status", "--db", url]) == 0
    assert check_collection(url).findings == []


def swap_rows(path: Path, a: int, b: int) -> None:
    """Two rows of a table's vectors swapped in place, header untouched: plausible values, silent damage."""
    from storage.artifacts import read_layout

    layout, start = read_layout(path)
    spec = layout["vectors"]
    row, offset = 2 * spec["shape"][1], start + spec["data_offsets"][0]
    data = bytearray(path.read_bytes())
    first, second = slice(offset + a * row, offset + (a + 1) * row), slice(offset + b * row, offset + (b + 1) * row)
    data[first], data[second] = data[second], data[first]
    path.write_bytes(bytes(data))


def item_id(url: str, key: str) -> int:
    with Database(url).session() as session:
        return int(session.scalar(select(Item.id).where(Item.key == key)))


def each_image_finds_its_item(url: str) -> None:
    engine = SearchEngine.open(url)
    for digit in range(4):
        hits = engine.search(image=mnist_image(digit), k=1, **COSINE).hits
        assert hits[0].key == f"d{digit}_george" and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_rows_swapped_in_a_table_are_found_named_and_encoded_again(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 35, item 4: two rows of a table swapped, the index rebuilt from it: an item's own image found
    another item, with exit 0, and check reported no difference."""
    from storage import artifacts
    from storage.repository import bump_generation

    monkeypatch.setattr(artifacts, "BLOCK_BYTES", 1)  # a checksum a row: the damage is told item by item
    url = f"sqlite:///{tmp_path}/c.db"
    indexer = Indexer(url, profile=Profile.from_dict(FAST))
    indexer.run(small_folder)
    path = indexer.storage.path_for("image@hog")
    ids = VectorStorage(indexer.storage.root).load("image@hog").ids
    swapped = sorted(int(i) for i in ids[[0, 5]])
    swap_rows(path, 0, 5)
    with Database(url).session() as session:
        bump_generation(session, session.scalar(select(Collection.id)))  # the next search rebuilds the indexes

    assert retrieval_main(["search", "--db", url, "--image", str(mnist_image(0))]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {path}: 2 rows of vectors changed since the table was written; no index is built from it. "
        "`python -m indexer check --repair` says which items to re-encode and prepares that"
    )
    code, report = run_check(url, capsys)
    [finding] = report["findings"]
    assert code == 1 and finding["name"] == "image@hog" and finding["repairable"]
    assert finding["problem"] == f"2 vectors changed since the table was written (ids {swapped[0]}, {swapped[1]})"

    code, report = run_check(url, capsys, "--repair")
    left = [f["problem"] for f in report["findings"] if not f["repaired"]]
    assert code == 1 and left == [f"2 items have a good image asset but no vector (ids {swapped[0]}, {swapped[1]})"]
    assert Indexer(url).run(small_folder).encoded == 2  # exactly the two, from their media
    assert run_check(url, capsys)[0] == 0
    each_image_finds_its_item(url)


def test_a_table_restored_from_a_backup_is_refused_and_check_names_what_to_encode_again(
    indexed: tuple[str, Indexer], small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 35, item 1: a backup restored over newer vectors is detected, and check says what to re-encode."""
    from storage import TableMismatchError

    url, indexer = indexed
    path = indexer.storage.path_for("image@hog")
    backup = path.read_bytes()
    shutil.copy(mnist_image(7), small_folder / "d1_george.png")  # new content: encoded again
    shutil.copy(mnist_image(9), small_folder / "d9_new.png")
    assert Indexer(url).run(small_folder).encoded == 2
    path.write_bytes(backup)

    with pytest.raises(TableMismatchError, match="not the ones the database recorded"):
        SearchEngine.open(url).search(image=mnist_image(7), k=1)
    with pytest.raises(TableMismatchError):
        Indexer(url).run(small_folder)  # nothing is written over it either
    assert retrieval_main(["search", "--db", url, "--image", str(mnist_image(7))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: the vectors of image@hog are not the ones") and "\n" not in err
    assert indexer_main(["status", "--db", url]) == 1  # probe case 13: status said "problems: 0", exit 0
    out, err = capsys.readouterr()
    assert "skipped files: 0" in out and "problems: 0" not in out  # "problems: 0" beside an error misled
    assert f"error: {path}: not the table the database recorded" in err and "python -m indexer check" in err

    changed, new = item_id(url, "d1_george"), item_id(url, "d9_new")
    code, report = run_check(url, capsys)
    [problem] = [f["problem"] for f in report["findings"] if "not the table the database recorded" in f["problem"]]
    assert code == 1 and problem.endswith(f"items encoded since may hold older vectors here: 1 (ids {changed})")
    code, report = run_check(url, capsys, "--repair")
    left = [f["problem"] for f in report["findings"] if not f["repaired"]]
    assert left == [f"2 items have a good image asset but no vector (ids {changed}, {new})"]
    assert Indexer(url).run(small_folder).encoded == 2
    assert run_check(url, capsys)[0] == 0
    hits = SearchEngine.open(url).search(image=mnist_image(7), k=1, **COSINE).hits
    assert hits[0].key == "d1_george" and hits[0].score == pytest.approx(1.0, abs=2e-3)


def test_a_database_restored_over_newer_tables_is_refused_until_check_repairs_it(
    indexed: tuple[str, Indexer], small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from storage import TableMismatchError

    url, _ = indexed
    live, copy = tmp_path / "c.db", tmp_path / "backup.db"
    with sqlite3.connect(live) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    shutil.copy(mnist_image(9), small_folder / "d9_new.png")
    shutil.copy(mnist_image(8), small_folder / "d8_new.png")
    assert Indexer(url, batch_size=1, flush_assets=1).run(small_folder).encoded == 2  # two writes of each table
    with sqlite3.connect(copy) as source, sqlite3.connect(live) as target:
        source.backup(target)

    with pytest.raises(TableMismatchError):
        SearchEngine.open(url).search(image=mnist_image(1), k=1)
    code, report = run_check(url, capsys, "--repair")
    [restored] = [f for f in report["findings"] if "not the table the database recorded" in f["problem"]]
    assert restored["name"] == "image@hog" and restored["problem"].endswith("no item was encoded since")
    assert code == 0 and all(f["repaired"] for f in report["findings"])  # the two vectors no row backs dropped
    each_image_finds_its_item(url)
    assert Indexer(url).run(small_folder).encoded == 2
    assert run_check(url, capsys)[0] == 0


def test_a_database_restored_over_one_newer_write_has_that_write_encoded_again(
    indexed: tuple[str, Indexer], small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 11: the database backed up, an image changed and indexed (one write of the table), then the
    database and the image restored. The table was one write ahead of the record, which a crash between the
    two writes also leaves, so it was taken as it was: the item's old image found another item for good
    ('unchanged' on every run), and check said nothing. The write now names the items it changed; check
    reports them and the next run encodes them again from their files."""
    import sqlite3

    url, _ = indexed
    live, backup = tmp_path / "c.db", tmp_path / "backup.db"
    with sqlite3.connect(live) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    image = small_folder / "d3_george.png"
    original = image.read_bytes()
    shutil.copy(mnist_image(1, 2), image)
    assert Indexer(url).run(small_folder).encoded == 1
    with sqlite3.connect(backup) as source, sqlite3.connect(live) as target:
        source.backup(target)
    image.write_bytes(original)

    code, report = run_check(url, capsys)
    [ahead] = [f for f in report["findings"] if "never recorded" in f["problem"]]
    assert code == 1 and ahead["name"] == "image@hog" and "changed 1 items' vectors" in ahead["problem"]
    assert Indexer(url).run(small_folder).encoded == 1  # the restored image, encoded again
    each_image_finds_its_item(url)
    assert run_check(url, capsys)[0] == 0


def test_an_index_file_changed_after_it_was_written_is_found_and_rebuilt(
    indexed: tuple[str, Indexer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes inside an index that FAISS still reads (here its stored vectors): only the checksums tell."""
    from storage.artifacts import read_layout

    url, _ = indexed
    path = index_file(url, "field", "image@hog")
    layout, start = read_layout(path)
    end = start + layout["faiss"]["data_offsets"][1]
    data = bytearray(path.read_bytes())
    data[end - 100 : end - 96] = b"\x00\x00\x80\x3f"  # a float of the last vector set to 1.0
    path.write_bytes(bytes(data))
    code, report = run_check(url, capsys, "--repair")
    [finding] = report["findings"]
    assert finding["name"] == "field/image@hog" and "changed since it was written" in finding["problem"]
    assert code == 0 and finding["repaired"] and run_check(url, capsys)[0] == 0
    each_image_finds_its_item(url)


@pytest.mark.slow
def test_check_and_repair_on_milvus_lite_and_a_server(
    small_folder: Path, tmp_path: Path, milvus_uri: str, capsys
) -> None:
    """The end to end check on Milvus: `ids()` reads every row (2.3.5 refused the bound -2**63), an index
    missing rows and a dropped collection are reported, and --repair rebuilds both."""
    url, spec = f"sqlite:///{tmp_path}/m.db", f"milvus:{milvus_uri}"
    Indexer(url, profile=Profile.from_dict(FAST), vector_backend=spec).run(small_folder)
    assert run_check(url, capsys) == (0, run_check(url, capsys)[1])
    field, early = index_location(url, "field", "image@hog"), index_location(url, "early", "image@hog+audio@mfcc")
    backend = open_backend(spec, tmp_path)
    store = backend.open(field, {})
    assert store is not None and set(store.ids().tolist()) == ok_ids(url)["image"]
    store.remove(store.ids()[:2])
    backend.client.drop_collection(early.rpartition("#")[2])
    code, report = run_check(url, capsys)
    problems = {f["name"]: f["problem"] for f in report["findings"]}
    assert code == 1 and problems["field/image@hog"].startswith("holds 6 ids, the tables 8: 2 missing")
    assert problems["early/image@hog+audio@mfcc"] == "missing or unreadable"
    code, report = run_check(url, capsys, "--repair")
    assert code == 0 and len(report["findings"]) == 2 and all(f["repaired"] for f in report["findings"])
    assert run_check(url, capsys)[0] == 0
    hits = SearchEngine.open(url).search(image=mnist_image(1), strategy="early", k=20).hits
    assert len(hits) >= 8 and {h.item_id for h in hits} <= ok_ids(url)["image"] | ok_ids(url)["audio"]


def test_a_truncated_table_is_advised_through_repair_then_indexing(
    indexed: tuple[str, Indexer], small_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 20: check advised indexing again, which the indexer refuses for a table it cannot read;
    only `check --repair` (which moves it aside) unblocks it, so the advice names that first."""
    from storage import CorruptArtifactError

    url, indexer = indexed
    path = indexer.storage.path_for("image@hog")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptArtifactError):
        Indexer(url).run(small_folder)
    code, report = run_check(url, capsys)
    [finding] = [f for f in report["findings"] if f["name"] == "image@hog"]
    assert code == 1 and finding["problem"].startswith("unreadable")
    repair = f"`python -m indexer check --repair --db {url} --collection default` moves it aside, then index"
    assert repair in finding["fix"], finding["fix"]
    run_check(url, capsys, "--repair")
    assert path.with_name(path.name + ".corrupt").exists()
    assert Indexer(url).run(small_folder).encoded == 8
    assert run_check(url, capsys)[0] == 0


def test_lost_vectors_name_the_folder_their_files_are_in(
    indexed: tuple[str, Indexer], small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Probe case 7: check advised indexing the collection's last source again, which held none of the items
    whose vectors were lost; it now says where their files are."""
    url, indexer = indexed
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(mnist_image(5), other / "d5_new.png")
    Indexer(url).run(other)
    storage = indexer.storage
    table = storage.load("image@hog")
    lost = np.array(sorted(set(table.ids.tolist()) - {max(table.ids.tolist())}), np.int64)  # the first folder's
    table.remove(lost)
    storage.save("image@hog", table)
    _, report = run_check(url, capsys)
    [finding] = [f for f in report["findings"] if "no vector" in f["problem"]]
    assert f"their files are under {small_folder}" in finding["fix"], finding["fix"]
    assert f"python -m indexer {other} " not in finding["fix"]
