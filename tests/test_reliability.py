"""Faults: SIGKILL at random moments, a second writer, searching while writing, disk full, read-only."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import FSDD, MNIST, mnist_image, recording
from sqlalchemy import func, select

from indexer import Indexer
from retrieval import SearchEngine
from retrieval.profiles import Profile
from storage import (
    Asset,
    CollectionBusyError,
    CollectionLock,
    Database,
    IndexBuild,
    Item,
    StorageError,
    VectorStorage,
    open_backend,
)
from storage.models import Collection
from storage.repository import ok_ids_by_modality

ROOT = Path(__file__).resolve().parents[1]
FAST = {"name": "fast", "encoders": {"image": ["hog"], "audio": ["mfcc"]}}


def media_manifest(folder: Path, items: int) -> Path:
    """`items` items of one handwritten image and one spoken recording each, from the shared datasets."""
    images, recordings = sorted(MNIST.glob("*.png")), sorted(FSDD.glob("*.wav"))
    rows = [{"id": f"item-{n:04d}", "image": str(images[n]), "audio": str(recordings[n])} for n in range(items)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "fast.json").write_text(json.dumps(FAST))
    return path


def indexer_args(manifest: Path, url: str, *extra: str) -> list[str]:
    """The indexer's arguments as a user gives them for a `media_manifest`, with small batches and flushes so
    that a run writes many times."""
    options = ["--quiet", "--batch-size", "8", "--flush-every", "32", "--profile", str(manifest.parent / "fast.json")]
    allow = ["--allow-root", str(MNIST.parent.parent)]
    return [str(manifest), "--db", url, *options, *allow, *extra]


def indexer_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "indexer", *args]


def check_consistent(url: str, expected_items: int) -> dict[str, int]:
    """Every good item exactly once; the database, the vector tables and every index agree."""
    db = Database(url)
    with db.session() as session:
        collection = session.scalar(select(Collection))
        assert session.scalar(select(func.count()).select_from(Item)) == expected_items
        ok = ok_ids_by_modality(session, collection.id)
        builds = session.scalars(select(IndexBuild)).all()
        generation = collection.generation
        vector_dir = Path(collection.vector_dir)
    storage = VectorStorage(vector_dir)
    tables = {m: storage.load(f"{m}@{e}") for m, (e,) in FAST["encoders"].items()}
    for modality, table in tables.items():
        assert len(np.unique(table.ids)) == len(table.ids), "an id stored twice"
        assert set(table.ids.tolist()) == ok[modality]
    current = [b for b in builds if b.generation == generation]
    assert current, "the last run left current indexes"
    backend = open_backend(collection.vector_backend, vector_dir / "indexes")
    for build in current:
        ids = set(backend.open(build.file, {}).ids().tolist())
        wanted = ok[build.key.split("@")[0]] if build.strategy == "field" else set().union(*ok.values())
        assert ids == wanted, (build.strategy, build.key)
    leftovers = list(vector_dir.rglob("*.tmp"))
    assert not leftovers, leftovers
    return {m: len(v) for m, v in ok.items()}


def kill_mid_run(args: list[str], url: str, rng: random.Random) -> int:
    """Run the indexer with `args` and have it SIGKILL itself in the middle of one of its writes, chosen at
    random: inside the 3rd to 10th artifact write (a vector table or an index) after a random number of bytes,
    or at the 2nd to 5th flush between its tables and its rows (tests/kill_switch.py). Returns the good assets
    in the database after the kill. Each such run writes at most five flushes of 32 assets, so a kill always
    lands mid-run, whatever the machine's speed."""
    if rng.random() < 0.7:
        switch = ["write", str(rng.randint(3, 10)), str(rng.randint(0, 64 * 1024))]
    else:
        switch = ["rows", str(rng.randint(2, 5)), "0"]
    command = [sys.executable, str(ROOT / "tests" / "kill_switch.py"), *switch, "--", *args]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, f"{switch}: the run was not killed mid-write: {run.stderr[-2000:]}"
    return ok_assets(url)


def assert_kills_landed(progress: list[int], assets: int) -> None:
    """Every kill left work to do, and the runs between them made progress (each resumes the last)."""
    assert progress == sorted(progress), f"a killed run lost good assets: {progress}"
    assert progress[-1] < assets, f"kills must land before the last asset is written: {progress}"
    assert progress[-1] > 0, f"the killed runs wrote nothing: {progress}"


def ok_assets(url: str) -> int:
    try:
        with Database(url).session() as session:
            return session.scalar(select(func.count()).select_from(Asset).where(Asset.status == "ok")) or 0
    except Exception:
        return 0


@pytest.mark.slow
@pytest.mark.datasets
def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    items = 500
    manifest = media_manifest(tmp_path / "collection", items)
    url = f"sqlite:///{tmp_path}/kill.db"
    rng = random.Random(7)
    progress = [kill_mid_run(indexer_args(manifest, url), url, rng) for _ in range(3)]
    assert_kills_landed(progress, assets=2 * items)
    print(f"good assets after each of {len(progress)} kills: {progress}")
    final = subprocess.run(
        indexer_command(indexer_args(manifest, url)), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert final.returncode == 0, final.stderr[-2000:]
    counts = check_consistent(url, expected_items=items)
    assert counts == {"image": items, "audio": items}


def test_a_second_writer_is_refused(small_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    indexer = Indexer(url)
    with (
        CollectionLock(indexer.storage.root, "test"),
        pytest.raises(CollectionBusyError, match="is being written by pid"),
    ):
        Indexer(url).run(small_folder)
    assert Indexer(url).run(small_folder).encoded == 20  # the lock is gone with its holder


@pytest.mark.datasets
def test_searching_while_an_indexer_writes(tmp_path: Path) -> None:
    manifest = media_manifest(tmp_path / "collection", 200)
    url = f"sqlite:///{tmp_path}/c.db"
    profile = Profile.from_dict(FAST)
    Indexer(url, profile=profile, batch_size=16).run(manifest, roots=[MNIST.parent.parent])  # a first version
    more = media_manifest(tmp_path / "more", 400)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            Indexer(url, batch_size=16).run(more, roots=[MNIST.parent.parent], prune=True)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    searches = 0
    while not done.is_set() or searches < 5:
        engine = SearchEngine.open(url)
        for strategy in ("late", "early"):
            hits = engine.search(image=mnist_image(3), audio=recording(3), strategy=strategy, k=10).hits
            assert hits and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            assert len({h.item_id for h in hits}) == len(hits)
        searches += 1
    writer.join()
    assert not errors, errors
    check_consistent(url, expected_items=400)
    assert searches >= 5


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_full_or_read_only_keeps_the_previous_index(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    import shutil

    from storage import artifacts

    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(small_folder)
    before = SearchEngine.open(url).search(audio=recording(1, "george", 0), k=5)
    shutil.copy(mnist_image(7), small_folder / "d0_george.png")  # a change that must be written

    real = artifacts.os.fdopen

    def failing_fdopen(fd, *args, **kwargs):
        handle = real(fd, *args, **kwargs)
        handle.write(b"partial")
        handle.close()
        raise OSError(code, os.strerror(code), "vectors.safetensors")

    monkeypatch.setattr(artifacts.os, "fdopen", failing_fdopen)
    with pytest.raises(StorageError, match="previous index and database are intact"):
        Indexer(url).run(small_folder)
    monkeypatch.undo()
    after = SearchEngine.open(url).search(audio=recording(1, "george", 0), k=5)
    assert [h.key for h in after.hits] == [h.key for h in before.hits]
    assert not list(tmp_path.rglob("*.tmp")), "the temporary file is removed"
    assert Indexer(url).run(small_folder).changed == 1  # with room again, the next run finishes the job


def test_files_are_read_with_no_write_transaction_open(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing reads every file; while it does, another writer of the same database must get the write
    lock at once (a slow or never-ending file must not stall every other collection's indexer)."""
    import sqlite3

    from indexer.sources import AssetSpec

    db_file = tmp_path / "c.db"
    url = f"sqlite:///{db_file}"
    real = AssetSpec.sha256
    blocked: list[str] = []

    def sha256_while_probing(self: AssetSpec) -> str:
        probe = sqlite3.connect(db_file, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")  # fails at once when another connection holds the write lock
            probe.rollback()
        except sqlite3.OperationalError as exc:
            blocked.append(f"{self.display}: {exc}")
        finally:
            probe.close()
        return real(self)

    monkeypatch.setattr(AssetSpec, "sha256", sha256_while_probing)
    for _ in range(2):  # a first run (new items inserted) and a second one (rows already there)
        Indexer(url, profile=Profile.from_dict(FAST)).run(small_folder)
    assert not blocked, blocked[:3]


def other_folder(folder: Path) -> Path:
    """Six items that are not in `small_folder`: digits 5 to 7, image and recording each."""
    import shutil

    folder.mkdir(parents=True)
    for digit in (5, 6, 7):
        for n, speaker in enumerate(("nicolas", "lucas")):
            shutil.copy(mnist_image(digit, n + 3), folder / f"other{digit}_{speaker}.png")
            shutil.copy(recording(digit, speaker, n + 5), folder / f"other{digit}_{speaker}.wav")
    return folder


def finds_its_own_items(url: str, collection: str, folder: Path) -> None:
    """Each item's own image finds that item first, exactly (cosine 1), and no key from elsewhere."""
    engine = SearchEngine.open(url, collection)
    keys = {p.stem for p in folder.iterdir()}
    for image in sorted(folder.glob("*.png"))[::3]:
        hits = engine.search(image=image, strategy="late", k=5, normalisation="none", weighting="fixed").hits
        assert hits[0].key == image.stem and hits[0].score == pytest.approx(1.0, abs=2e-3), (collection, image)
        assert {h.key for h in hits} <= keys


def test_collections_and_databases_sharing_a_vector_dir_never_mix(small_folder: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared-vectors"
    other = other_folder(tmp_path / "other")
    first, second = f"sqlite:///{tmp_path}/first.db", f"sqlite:///{tmp_path}/second.db"
    runs = [(first, "a", small_folder), (first, "b", other), (second, "a", other), (second, "b", small_folder)]

    def index(url: str, name: str, folder: Path) -> Indexer:
        indexer = Indexer(url, name, profile=Profile.from_dict(FAST), vector_dir=shared)
        indexer.run(folder)
        return indexer

    indexers = [index(*run) for run in runs]
    again = [Indexer(url, name, vector_dir=shared).run(folder) for url, name, folder in runs]  # re-index each
    assert [(s.encoded, s.changed) for s in again] == [(0, 0)] * 4, "nothing of another collection was lost"
    for (url, name, folder), indexer in zip(runs, indexers):
        finds_its_own_items(url, name, folder)
        with Database(url).session() as session:
            collection = session.scalar(select(Collection).where(Collection.name == name))
            ok = ok_ids_by_modality(session, collection.id)
        assert set(indexer.storage.load("image@hog").ids.tolist()) == ok["image"]
    # each collection has its own folder under the shared one
    assert len({i.storage.root for i in indexers}) == 4 and all(i.storage.root.parent == shared for i in indexers)


def test_a_folder_shared_the_old_way_is_refused_not_mixed(small_folder: Path, tmp_path: Path) -> None:
    """Collections made by older versions may record one folder between them: the first to write stamps
    its tables, and the other is refused with a message instead of emptying them."""
    from sqlalchemy import update

    from storage import ForeignArtifactError

    url = f"sqlite:///{tmp_path}/c.db"
    a = Indexer(url, "a", profile=Profile.from_dict(FAST))
    a.run(small_folder)
    b = Indexer(url, "b", profile=Profile.from_dict(FAST))
    with Database(url).session() as session:  # what an older version recorded for both
        session.execute(update(Collection).where(Collection.name == "b").values(vector_dir=str(a.storage.root)))
    with pytest.raises(ForeignArtifactError, match="belongs to another collection or database"):
        Indexer(url, "b").run(other_folder(tmp_path / "other"))
    with pytest.raises(ForeignArtifactError, match=str(a.storage.root)):
        SearchEngine.open(url, "b")
    from indexer.status import collection_status

    problems = collection_status(url, "b")["vector_problems"]
    assert len(problems) == 2 and all("written by another collection or database" in p for p in problems)
    assert collection_status(url, "a")["vector_problems"] == []
    assert b.storage.root != a.storage.root
    finds_its_own_items(url, "a", small_folder)
