"""A database and each collection's vector folder are a pair that recognises itself.

The folder holds `DATABASE.json`: the database's id, where that database lives (an SQLite file's resolved
path; a server database's URL without its password) and which database it is however it is reached
(`Database.instance`: another role or host alias is the same database). A database whose id matches but
which is another database is either a copy (the recorded database is still there, with the same id: `cp my.db exp.db`) or
the original moved (it is not). A copy never writes into the original's folder and never searches it
(its rows and the original's vectors part ways at the original's next write): it is refused in one line
naming `indexer copy`, which copies a database with its vectors. A moved database is re-pointed by
`indexer relocate`, which prefers a folder moved along with it (beside it) and never takes a folder that its
recorded database still uses (`live_owner`): a file copy would otherwise take over the original's vectors.
"""

from __future__ import annotations

import contextlib
import glob
import json
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from storage.artifacts import write_atomic
from storage.db import Database, default_vector_base, sqlite_path, without_user
from storage.errors import StorageError
from storage.models import Collection, DatabaseIdentity

PAIR_FILE = "DATABASE.json"


class CopiedDatabaseError(StorageError):
    """This database is a copy of the one that owns the collection's vector folder."""


class MovedVectorsError(StorageError):
    """A collection's recorded vector folder is not there, but the database records vectors in it."""


def location_of(url: str) -> str:
    """Where a database lives: an SQLite file's resolved path, or its URL with the password hidden."""
    path = sqlite_path(url)
    return str(path.resolve()) if path is not None else make_url(url).render_as_string(hide_password=True)


def read_pair(folder: Path) -> dict[str, Any] | None:
    try:
        pair = json.loads((folder / PAIR_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return pair if isinstance(pair, dict) else None


def write_pair(folder: Path, db: Database) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pair = {"uid": db.uid, "database": location_of(db.url), "instance": db.instance}
    write_atomic(folder / PAIR_FILE, json.dumps(pair).encode())


def _same_database(pair: dict[str, Any], db: Database) -> bool:
    """Whether the folder's pair names `db`: by its instance, or (a pair written by 0.14 and earlier) by its
    location, whichever role the URL names."""
    if "instance" in pair:
        return bool(pair["instance"] == db.instance)
    recorded, here = str(pair.get("database")), location_of(db.url)
    if sqlite_path(db.url) is not None:
        return recorded == here
    with contextlib.suppress(ValueError, SQLAlchemyError):
        return without_user(recorded) == without_user(db.url)
    return False


def _uid_at(location: str) -> str | None:
    """The id of the SQLite database at `location`, if one is there (opened read-only, never created)."""
    record = _record_at(location)
    return record[0] if record is not None else None


def _record_at(location: str) -> tuple[str | None, set[str]] | None:
    """The id of the SQLite database at `location` and its collections' vector folders, if one is there
    (opened read-only, never created)."""
    path = Path(location)
    if not path.is_file():
        return None
    engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with engine.connect() as conn:
            uid = conn.execute(select(DatabaseIdentity.uid)).scalar()
            return uid, set(conn.execute(select(Collection.vector_dir)).scalars())
    except SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def live_owner(db: Database, folder: Path) -> str | None:
    """The other database that `folder` is still the vector folder of (it still exists, holds `db`'s id and
    records that folder): `db` is its copy, and taking the folder would orphan the original's vectors."""
    pair = read_pair(folder)
    if pair is None or _same_database(pair, db):
        return None
    location = str(pair.get("database"))
    record = _record_at(location)
    if record is None or record[0] != db.uid or str(folder.resolve()) not in record[1]:
        return None
    return location


def check_pair(db: Database, folder: Path, collection: str, write: bool = False) -> None:
    """Refuse a copy of the database that owns `folder`. Otherwise pair the folder with `db` where it is not
    yet (a folder made before pairing, or one whose database moved away from where it was recorded): always
    with `write` (the folder is made if need be), and where the folder can be written to without it."""
    pair = read_pair(folder)
    here = location_of(db.url)
    if pair is not None and _same_database(pair, db):
        if "instance" not in pair:  # written by 0.14 or earlier: recorded the new way where it can be
            with contextlib.suppress(OSError):
                write_pair(folder, db)
        return
    if pair is not None and pair.get("uid") != db.uid:
        raise StorageError(f"{folder} belongs to another database ({pair.get('database')}), not to {here}")
    original = _original(db, folder, pair)
    if original is not None:
        raise CopiedDatabaseError(copy_message(db.url, original, folder, collection))
    if write:
        write_pair(folder, db)
    elif folder.is_dir():
        with contextlib.suppress(OSError):  # a read-only folder (a mount, a snapshot): searched as it is
            write_pair(folder, db)


def _original(db: Database, folder: Path, pair: dict[str, Any] | None) -> str | None:
    """Where the database lives whose copy `db` is, or None where `db` is the folder's own (or the
    original moved here). Unpaired, a folder under another SQLite file's default vector folder
    (`my.db` -> `my.vectors/`) belongs to that file when it holds the same id."""
    if pair is not None:
        original = str(pair.get("database"))
        if sqlite_path(db.url) is None or _uid_at(original) == db.uid:
            return original  # a server database elsewhere cannot be looked at: `indexer relocate` says so
        return None
    base, own = folder.parent, sqlite_path(db.url)
    if own is None or not base.name.endswith(".vectors") or base == default_vector_base(db.url):
        return None
    for candidate in base.parent.glob(glob.escape(base.name.removesuffix(".vectors")) + ".*"):
        if candidate.is_file() and candidate.resolve() != own.resolve() and _uid_at(str(candidate)) == db.uid:
            return str(candidate.resolve())
    return None


def beside_folder(db: Database, recorded: Path) -> Path | None:
    """The folder of the recorded one's name beside the database (`my.db` -> `my.vectors/NAME`, where the
    indexer makes it), where it is not the recorded one and holds this database's id: a pair moved together."""
    folder = default_vector_base(db.url) / recorded.name
    pair = read_pair(folder)
    if folder == recorded or not folder.is_dir() or pair is None or pair.get("uid") != db.uid:
        return None
    return folder


def moved_advice(db: Database, folder: Path) -> str:
    """What to say where a collection's recorded vector folder is not there: the pair was moved."""
    beside = beside_folder(db, folder)
    found = f"; a folder holding this database's id is beside the database, at {beside}" if beside is not None else ""
    elsewhere = "" if beside is not None else " (with --vector-dir naming where the vector folders went)"
    return (
        f"the folder {folder} does not exist{found}: if the database was moved with its vectors, "
        f"`python -m indexer relocate --db {db.url}`{elsewhere} pairs them again"
    )


def vector_folder(db: Database, name: str, recorded: Path, records_tables: bool, write: bool = False) -> Path:
    """Where collection `name`'s vectors are: the recorded folder, or, where it is not there, a folder moved
    beside the database holding this database's id (a pair moved together, a snapshot shipped on read-only
    media), read as it is. A writer is refused instead (`indexer relocate` pairs the folder first): it would
    make the recorded folder anew and orphan the vectors the database records."""
    if recorded.is_dir():
        return recorded
    beside = beside_folder(db, recorded)
    if write and (records_tables or beside is not None):
        raise MovedVectorsError(
            f"{db.url}: collection {name!r} records vectors in a folder that is not there, so nothing was written: "
            + moved_advice(db, recorded)
        )
    return beside if beside is not None else recorded


def copy_message(url: str, original: str, folder: Path, collection: str) -> str:
    """The refusal of a copy: the command that makes a proper one, into a new file (the copy itself is not
    empty, so it cannot be the target). An SQLite original is there still (that is how the copy is told),
    so `relocate` could not help; a server database elsewhere cannot be looked at, so it may have moved."""
    here = location_of(url)
    if sqlite_path(url) is not None:
        command = f"python -m indexer copy --db sqlite:///{original} --to sqlite:///{Path(here).with_name('NEW.db')}"
        advice = f"`{command}` (a new file; then delete this one)"
    else:
        advice = (
            f"`python -m indexer copy --db ORIGINAL_URL --to NEW_URL` (a new, empty database); if the database "
            f"was moved here rather than copied: `python -m indexer relocate --db {url}`"
        )
    return (
        f"{here} is a copy of the database at {original}: collection {collection!r}'s vectors in {folder} belong "
        f"to that one, and this copy would mix them up. Copy a database with its vectors: {advice}"
    )
