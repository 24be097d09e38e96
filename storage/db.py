"""One place that turns an SQLAlchemy URL into a ready database: pragmas, schema, version check."""

from __future__ import annotations

import functools
import hashlib
import os
import resource
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import DatabaseUnavailableError, ReadOnlyDatabaseError, SchemaError, StorageError
from storage.models import SCHEMA_VERSION, Base, DatabaseIdentity, SchemaInfo
from storage.names import slug


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects are untyped
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_read_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects are untyped
    cursor = dbapi_connection.cursor()  # no journal mode: setting one is a write
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def unwritable_reason(path: Path) -> str | None:
    """Why this process cannot write the SQLite file at `path` (None when it can, or when it does not exist):
    the file itself, or its folder, where SQLite must create the `-wal` and `-shm` files beside it. `os.access`
    answers for the file system too, so a read-only mount is caught even as root."""
    if not path.is_file():
        return None
    for what, where in (("the file", path), ("its folder", path.parent)):
        if not os.access(where, os.W_OK):
            try:
                mount = bool(os.statvfs(where).f_flag & os.ST_RDONLY)
            except OSError:
                mount = False
            why = "is on a read-only file system" if mount else "is not writable by this user"
            extra = f" ({where})" if what == "its folder" else ""
            return f"{what}{extra} {why}" + (" (SQLite writes its -wal and -shm files there)" if extra else "")
    return None


def read_only_url(path: Path) -> str:
    """The URL that reads an SQLite file without writing anything. In a folder this process cannot write,
    SQLite cannot make the shared-memory file that WAL mode reads through: with no write-ahead log left
    there (a snapshot, a read-only mount), the file is opened immutable, so nothing beside it is needed;
    where a log is there, it is read through the files its writer left."""
    path = path.resolve()
    wal = path.with_name(path.name + "-wal")
    snapshot = not os.access(path.parent, os.W_OK) and not (wal.is_file() and wal.stat().st_size)
    return f"sqlite:///file:{path}?mode=ro{'&immutable=1' if snapshot else ''}&uri=true"


DEFAULT_URL = "sqlite:///data/demo.db"  # the demo's database: what the CLIs and the UI open unless told otherwise


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL, or None for other back ends and in-memory databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _refused_write(exc: DBAPIError) -> bool:
    """PostgreSQL's insufficient privilege (SQLSTATE 42501), or SQLite's read-only file."""
    if getattr(exc.orig, "sqlstate", None) == "42501":
        return True
    return "attempt to write a readonly database" in str(exc.orig)


def unusable_message(url: str | None, exc: BaseException) -> str:
    """One line for a database that the driver cannot use now: its reason, what may cause an SQLite 'disk I/O
    error' here (a full disk, a file-size limit), and that running again is safe."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())  # the driver's lines, as one
    path = sqlite_path(url) if url else None
    if path is not None and "disk I/O error" in reason:
        folder = path.expanduser().resolve().parent
        if folder.exists() and shutil.disk_usage(folder).free < 1 << 20:
            reason += f"; the disk holding {folder} is full"
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            reason += f"; a file-size limit (ulimit -f) of {limit} bytes is set"
    shown = make_url(url).render_as_string(hide_password=True) if url else "database"
    return f"{shown}: cannot use this database ({reason}); nothing half-written stays: run it again once the database answers"


# each lost race means another process created something: tries bounded by tables x processes opening at once
RACE_TRIES = 20


def _lost_creation_race(exc: BaseException) -> bool:
    """Another process created a table, or the schema's row, between our look and our write."""
    text = str(getattr(exc, "orig", None) or exc.__cause__ or exc)
    return isinstance(exc, IntegrityError) or "already exists" in text


def without_user(url: str) -> str:
    """A server database's URL without its user and password: the same database for every role."""
    return make_url(url)._replace(username=None, password=None).render_as_string()  # `set` keeps a None


def default_vector_base(url: str) -> Path:
    """Vectors live beside an SQLite file (`demo.db` -> `demo.vectors/`), else under ./data/."""
    path = sqlite_path(url)
    if path is not None:
        return path.with_suffix(".vectors").resolve()
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    name = make_url(url).database or "db"
    return (Path("data") / f"{Path(name).name}-{digest}.vectors").resolve()


def collection_folder(base: Path, name: str, database_uid: str, collection_id: int) -> Path:
    """A collection's own folder under `base` (`--vector-dir`, or beside the database): named after the
    database's id and the collection's, so collections and databases sharing one base never meet."""
    return Path(base).expanduser().resolve() / f"{slug(name, 40)}-{database_uid[:12]}-{collection_id}"


# what SQLAlchemy's pysqlite dialect reads from an SQLite URL's query string; anything else was meant as a name
SQLITE_OPTIONS = frozenset(
    {"timeout", "check_same_thread", "isolation_level", "detect_types", "cached_statements", "uri"}
    | {"mode", "cache", "nolock", "immutable", "vfs", "modeof"}
)


def check_sqlite_url(url: str) -> None:
    """Refuse an SQLite URL whose query string is not options: `sqlite:///q?x=1.db` would use the file `q`."""
    parsed = make_url(url)
    unknown = sorted(set(parsed.query) - SQLITE_OPTIONS) if parsed.get_backend_name() == "sqlite" else []
    if unknown:
        raise StorageError(
            f"{url}: {', '.join(unknown)} after '?' is not an SQLite option, so the file would be {parsed.database}; "
            "write a '?' in a file name as %3F"
        )


class Database:
    """An engine plus a session factory; the schema is created or checked on open."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        check_sqlite_url(url)
        path = sqlite_path(url)
        # Why this database can only be read (an SQLite file or folder this process may not write), or None.
        # It is then opened read-only: searching and `status` work, and every write is a ReadOnlyDatabaseError.
        self.read_only_reason = unwritable_reason(path) if path is not None else None
        if path is not None and self.read_only_reason is None:
            path.parent.mkdir(parents=True, exist_ok=True)
        opened = read_only_url(path) if path is not None and self.read_only_reason else url
        # pre-ping: a pooled connection a server restart or failover closed is replaced before use, so a
        # long-lived engine (the API's, the UI's) does not fail its first query after one
        self.engine: Engine = create_engine(opened, echo=echo, pool_pre_ping=path is None)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_read_pragmas if self.read_only_reason else _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._ensure_schema()
        except DatabaseError as exc:  # an SQLite URL naming a PNG, a truncated or overwritten file, ...
            if self.engine.dialect.name != "sqlite":
                raise
            if self.read_only_reason and _refused_write(exc):  # a table added since: the schema is older
                self.require_writable("upgrade it to this version's schema first")
            raise StorageError(f"{self.url}: cannot use this database ({exc.orig})") from None
        except ReadOnlyDatabaseError:  # an older schema, or one without its id yet: both are written on open
            self.require_writable("upgrade it to this version's schema first")
            raise

    def _ensure_schema(self) -> None:
        for attempt in range(RACE_TRIES):  # first opens of one new database race to create it: losers read it
            try:
                self._create_schema()
                break
            except (IntegrityError, OperationalError, DatabaseUnavailableError) as exc:
                if attempt == RACE_TRIES - 1 or not _lost_creation_race(exc):
                    raise
        self.uid = self._identity()

    def _create_schema(self) -> None:
        Base.metadata.create_all(self.engine)
        with self.session() as session:
            info = session.scalar(select(SchemaInfo))
            if info is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
            elif info.version > SCHEMA_VERSION:
                raise SchemaError(
                    f"database {self.url} has schema version {info.version}, newer than this code "
                    f"({SCHEMA_VERSION}); upgrade the application"
                )
            elif info.version < SCHEMA_VERSION:
                self._upgrade(session, info)

    @functools.cached_property
    def instance(self) -> str:
        """Which database this is, however it is reached: an SQLite file's resolved path; on PostgreSQL the
        server's system identifier and the database's oid (a copy on the same server or another has another
        one; a role, host alias or password does not change it); elsewhere the URL without its user."""
        path = sqlite_path(self.url)
        if path is not None:
            return str(path.resolve())
        if self.engine.dialect.name == "postgresql":
            try:
                with self.engine.connect() as conn:
                    system = conn.execute(text("SELECT system_identifier FROM pg_control_system()")).scalar()
                    oid = conn.execute(text("SELECT oid FROM pg_database WHERE datname = current_database()")).scalar()
                return f"postgresql:{system}:{oid}"
            except DatabaseError:  # a server that does not tell: its address names it
                pass
        return without_user(self.url)

    def _identity(self) -> str:
        """The database's random id, made on first open (or on the first open by this version)."""
        for _ in range(2):
            try:
                with self.session() as session:
                    row = session.get(DatabaseIdentity, 1)
                    if row is None:
                        row = DatabaseIdentity(id=1, uid=uuid.uuid4().hex)
                        session.add(row)
                    return row.uid
            except IntegrityError:  # another process made it at the same moment: read theirs
                continue
        raise SchemaError(f"database {self.url}: cannot record its identity")

    def _upgrade(self, session: Session, info: SchemaInfo) -> None:
        """Older databases gain the columns added since, in the same transaction as the version bump."""
        columns = {c["name"] for c in inspect(session.connection()).get_columns("collections")}
        if "vector_backend" not in columns:
            session.execute(
                text("ALTER TABLE collections ADD COLUMN vector_backend VARCHAR(500) NOT NULL DEFAULT 'faiss'")
            )
        if "tables" not in columns:  # NULL: no digest on record yet, the next write records one
            session.execute(text("ALTER TABLE collections ADD COLUMN tables JSON"))
        info.version = SCHEMA_VERSION

    def require_writable(self, doing: str) -> None:
        """Refuse, before any work, to `doing` (e.g. "index") a database this process can only read."""
        if self.read_only_reason is not None:
            raise ReadOnlyDatabaseError(
                f"{sqlite_path(self.url)}: cannot {doing}: {self.read_only_reason}, so this database can only be "
                "read (searching and `status` work); nothing was changed. A writable copy with its vectors: "
                f"`python -m indexer copy --db {self.url} --to NEW_URL`"
            )
        if sqlite_path(self.url) is None:  # a server: ask with a write of nothing whether this role may write
            with self.session() as session:
                session.execute(text("UPDATE schema_info SET version = version WHERE 1 = 0"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error; a write the database refuses for
        want of rights is a `ReadOnlyDatabaseError` (one line for the user), not a driver's traceback."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except DBAPIError as exc:
            session.rollback()
            if _refused_write(exc):
                raise ReadOnlyDatabaseError(
                    f"{make_url(self.url).render_as_string(hide_password=True)}: the database refused to write "
                    f"({str(exc.orig).splitlines()[0]}); nothing was changed. This needs a role (or a file) "
                    "that may write; searching needs only reading"
                ) from exc
            if isinstance(exc, OperationalError):  # the server or file, not our SQL: the caller may try again
                raise DatabaseUnavailableError(unusable_message(self.url, exc)) from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
