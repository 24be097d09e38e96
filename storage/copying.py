"""Copy a database with its vectors, or re-point a database whose files were moved (`storage.pairing`).

`copy_database` holds every collection's writer lock, shared (no indexer writes meanwhile; other copies
may run), copies the rows into a new, empty database (any SQLAlchemy URL) which gets an id of its own, and copies each collection's vector folder
into a folder of the copy's, every table and index stamped with the copy's id: the two never share a file,
a Milvus collection or a writer lock. Milvus indexes are not copied (their builds are forgotten, and the
copy's first search builds its own). Checkpoint files are shared, as the original shares them: read only.
The source is verified first (every recorded table there, on record, its checksums whole): a copy re-stamps
each file, so anything missing or damaged would otherwise pass for whole in the copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.orm import Session

from storage.artifacts import TEMP_MARKER, damaged_rows, map_arrays, write_streamed
from storage.catalog import collection_storage, owner_of
from storage.db import Database, collection_folder, default_vector_base, sqlite_path
from storage.errors import CorruptArtifactError, StorageError
from storage.lock import LOCK_FILE, CollectionLock
from storage.models import Base, Collection, DatabaseIdentity, IndexBuild, SchemaInfo
from storage.pairing import PAIR_FILE, live_owner, location_of, moved_advice, read_pair, write_pair
from storage.vectors import VectorStorage

ProgressFn = Callable[[str, int, int], None]
_OWN_ROWS = (SchemaInfo.__tablename__, DatabaseIdentity.__tablename__)  # each database makes its own


def copy_database(
    source: str, target: str, vector_base: Path | None = None, progress: ProgressFn | None = None
) -> Database:
    """Copy the database at `source` with every collection's vectors into the new database `target`."""
    src = Database(source)
    with src.session() as session:
        collections = list(session.scalars(select(Collection).order_by(Collection.id)))
    path = sqlite_path(target)
    made = path is not None and not path.exists()  # a file this copy creates, and so may take back
    dst = Database(target)
    try:
        return _copy_into(src, dst, collections, source, target, vector_base, progress)
    except BaseException:
        if made and path is not None:  # a refused or failed copy leaves no empty database behind
            dst.dispose()
            for leftover in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))):
                leftover.unlink(missing_ok=True)
        raise


def _copy_into(
    src: Database,
    dst: Database,
    collections: list[Collection],
    source: str,
    target: str,
    vector_base: Path | None,
    progress: ProgressFn | None,
) -> Database:
    dst.require_writable("copy into it")
    with dst.session() as session:
        if session.scalar(select(func.count()).select_from(Collection)):
            raise StorageError(f"{target} already holds collections: copy into a new, empty database")
    base = Path(vector_base) if vector_base is not None else default_vector_base(target)
    sources = [_source(src, row) for row in collections]  # before a lock would make a missing folder
    with ExitStack() as locks:
        for row, storage in zip(collections, sources, strict=True):
            what, owner = f"collection {row.name!r} of {source}", owner_of(src, row.id)
            locks.enter_context(CollectionLock(storage.root, what, shared=True, db=src, name=owner))
        for row, storage in zip(collections, sources, strict=True):
            _verify(src, row, storage)
        _copy_rows(src, dst)
        for n, (row, storage) in enumerate(zip(collections, sources, strict=True)):
            folder = collection_folder(base, row.name, dst.uid, row.id)
            _copy_folder(storage.root, folder, owner_of(src, row.id), owner_of(dst, row.id), src.uid, dst.uid)
            with dst.session() as session:
                session.execute(update(Collection).where(Collection.id == row.id).values(vector_dir=str(folder)))
                _repoint_indexes(session, row, folder, src.uid, dst.uid)
            write_pair(folder, dst)
            if progress is not None:
                progress("copy collections", n + 1, len(collections))
    return dst


def _source(db: Database, row: Collection) -> VectorStorage:
    """A collection's tables as a reader opens them (a copy of another database refused), every table the
    database records there: a copy without them would be empty, and said to be whole."""
    storage = collection_storage(db, row)
    recorded = sorted(key for key, digest in (storage.recorded or {}).items() if digest)
    if missing := [key for key in recorded if not storage.exists(key)]:
        advice = (
            moved_advice(db, storage.root)
            if not storage.root.is_dir()
            else f"`python -m indexer check --db {db.url} --collection {row.name}` says which items to re-encode"
        )
        raise StorageError(
            f"{db.url}: collection {row.name!r} records vector tables missing from {storage.root} "
            f"({', '.join(missing)}); nothing was copied: {advice}"
        )
    return storage


def _verify(db: Database, row: Collection, storage: VectorStorage) -> None:
    """Refuse to copy a table that is not the one on record or whose bytes changed since it was written: the
    copy re-stamps every file with fresh checksums, so damage copied would pass every later check."""
    fix = f"nothing was copied; `python -m indexer check --repair --db {db.url} --collection {row.name}` first"
    for key in storage.recorded or {}:
        if storage.exists(key):
            storage.load(key)  # a table the database did not record: refused, naming check
    for path in _files(storage.root):
        if path.name.endswith(".safetensors") and (damage := damaged_rows(path)):
            rows = sum(end - start for ranges in damage.values() for start, end in ranges)
            raise CorruptArtifactError(
                f"{path}: {rows} rows of {', '.join(sorted(damage))} changed since it was written; {fix}"
            )


def _copy_rows(src: Database, dst: Database) -> None:
    """Every row of every table, parents first, ids kept (vector tables and indexes are keyed by them)."""
    with src.engine.connect() as reading, dst.engine.begin() as writing:
        for table in Base.metadata.sorted_tables:
            if table.name in _OWN_ROWS:
                continue
            batch = []
            for row in reading.execute(select(table)).mappings():
                batch.append(dict(row))
                if len(batch) == 5000:
                    writing.execute(insert(table), batch)
                    batch = []
            if batch:
                writing.execute(insert(table), batch)
        if dst.engine.dialect.name == "postgresql":  # ids were given: move each sequence past them
            for table in Base.metadata.sorted_tables:
                if "id" in table.c and table.c.id.autoincrement is True and table.name not in _OWN_ROWS:
                    writing.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
                        )
                    )


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if (
            path.is_file()
            and not path.is_symlink()
            and TEMP_MARKER not in path.name
            and path.name not in (LOCK_FILE, PAIR_FILE)
        ):
            yield path


def _copy_folder(old: Path, new: Path, old_owner: str, new_owner: str, old_uid: str, new_uid: str) -> None:
    """Each artifact stamped with `old_owner` is written again stamped with `new_owner` (and, for an index,
    renamed: its name carries the database's id); anything else is copied as it is."""
    if new.exists():
        raise StorageError(f"{new} already exists: copy into a new folder (--vector-dir)")
    for path in _files(old):
        relative = path.relative_to(old)
        target = new / Path(str(relative).replace(old_uid[:12], new_uid[:12]))
        target.parent.mkdir(parents=True, exist_ok=True)
        arrays, header = map_arrays(path) if path.name.endswith(".safetensors") else ({}, {})
        if header.get("owner") == old_owner:
            shapes = {name: (array.dtype, array.shape) for name, array in arrays.items()}
            write_streamed(target, shapes, list(arrays.items()), {**header, "owner": new_owner})
        else:
            shutil.copy2(path, target)


def _repoint_indexes(session: Session, row: Collection, folder: Path, old_uid: str, new_uid: str) -> None:
    """Index builds name their files: the copy's are in its own folder, under its own id. A Milvus index
    is forgotten instead (the copy builds its own on its first search)."""
    builds = list(session.scalars(select(IndexBuild).where(IndexBuild.collection_id == row.id)))
    old = Path(row.vector_dir)
    for build in builds:
        path = Path(build.file)
        if row.vector_backend == "faiss" and path.is_relative_to(old):
            build.file = str(folder / Path(str(path.relative_to(old)).replace(old_uid[:12], new_uid[:12])))
        else:
            session.delete(build)


def relocate(url: str, vector_base: Path | None = None) -> list[tuple[str, str]]:
    """Pair the database at `url` with its collections' folders again after a move: a folder moved into
    `vector_base` (default: beside the database) under its own name, else one still where it was recorded,
    holding this database's id. Returns (collection, folder) for each; a folder not found is an error, and so
    is one another database still uses (`db` is its file copy: `storage.pairing.live_owner`)."""
    db = Database(url)
    db.require_writable("re-point it")
    base = Path(vector_base) if vector_base is not None else default_vector_base(url)
    done = []
    with db.session() as session:
        for row in session.scalars(select(Collection).order_by(Collection.id)):
            recorded = Path(row.vector_dir)
            folder = _relocation(db, row.name, recorded, base / recorded.name)
            if folder != recorded:
                row.vector_dir = str(folder)
                for build in session.scalars(select(IndexBuild).where(IndexBuild.collection_id == row.id)):
                    if Path(build.file).is_relative_to(recorded):
                        build.file = str(folder / Path(build.file).relative_to(recorded))
            write_pair(folder, db)
            done.append((row.name, str(folder)))
    return done


def _relocation(db: Database, name: str, recorded: Path, moved: Path) -> Path:
    """The folder a moved collection is paired with: the one moved beside it first (a whole folder copied with
    `cp -a` has the original's recorded), never one that its recorded database still uses."""
    for folder in dict.fromkeys((moved, recorded)):
        if not _holds(db, folder):
            continue
        if (owner := live_owner(db, folder)) is not None:
            raise StorageError(
                f"collection {name!r}: {folder} belongs to the database at {owner}, which still exists, so "
                f"{location_of(db.url)} is its copy and nothing was changed; make a proper copy with its own "
                f"vectors: `python -m indexer copy --db sqlite:///{owner} --to NEW_URL`"
            )
        return folder
    raise StorageError(
        f"collection {name!r}: its vector folder is neither at {recorded} nor at {moved}; pass --vector-dir "
        "with the folder it was moved into"
    )


def _holds(db: Database, folder: Path) -> bool:
    pair = read_pair(folder)
    return folder.is_dir() and (pair is None or pair.get("uid") == db.uid) and os.access(folder, os.W_OK)
