"""The metadata layer on every database the tests can reach: SQLite always, PostgreSQL where
RETRIEVAL_TEST_POSTGRES names a server (.ci/run starts one). Same tests, same assertions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError

from indexer import Indexer
from retrieval import SearchEngine
from storage import Asset, Collection, Database, Item, SchemaError
from storage.models import SCHEMA_VERSION, SchemaInfo
from storage.repository import items_by_ids


def add_collection(db: Database, tmp_path: Path, items: int = 20) -> int:
    with db.session() as session:
        collection = Collection(name="c", vector_dir=str(tmp_path))
        session.add(collection)
        session.flush()
        for n in range(items):
            item = Item(collection_id=collection.id, key=f"k{n}", meta={"n": n, "label": str(n % 3), "ü": [1, 2]})
            item.assets = [Asset(modality=m, path=f"{n}.{m}", status="ok") for m in ("image", "audio")]
            session.add(item)
        return collection.id


def test_newer_schema_is_refused(db_url: str) -> None:
    db = Database(db_url)
    with db.session() as session:
        session.get(SchemaInfo, 1).version = SCHEMA_VERSION + 1
    db.dispose()
    with pytest.raises(SchemaError, match="newer"):
        Database(db_url)


def test_version_1_database_gains_the_backend_column(db_url: str) -> None:
    db = Database(db_url)
    with db.session() as session:
        session.add(Collection(name="old", vector_dir="/v"))
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE collections DROP COLUMN vector_backend"))
        conn.execute(text("UPDATE schema_info SET version = 1"))
    db.dispose()
    db = Database(db_url)
    assert "vector_backend" in {c["name"] for c in inspect(db.engine).get_columns("collections")}
    with db.session() as session:
        assert session.scalar(select(Collection.vector_backend).filter_by(name="old")) == "faiss"
        assert session.get(SchemaInfo, 1).version == SCHEMA_VERSION


def test_result_metadata_is_one_sql_query(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    add_collection(db, tmp_path)
    statements: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with db.session() as session:
        first = sorted(session.scalars(select(Item.id)).all())[:10]
    statements.clear()
    with db.session() as session:
        items = items_by_ids(session, first)
        assert len(items) == 10 and all(len(i.assets) == 2 for i in items.values())
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_json_metadata_unique_keys_and_cascades(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    collection_id = add_collection(db, tmp_path, items=5)
    with db.session() as session:
        item = session.scalar(select(Item).filter_by(key="k4"))
        assert item.meta == {"n": 4, "label": "1", "ü": [1, 2]}
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(Item(collection_id=collection_id, key="k1", meta={}))
    with db.session() as session:  # the failed transaction was rolled back, nothing else lost
        assert session.query(Item).count() == 5
        session.delete(session.get(Collection, collection_id))
    with db.session() as session:
        assert session.query(Item).count() == 0 and session.query(Asset).count() == 0


def test_item_ids_are_64_bit(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url)
    collection_id = add_collection(db, tmp_path, items=0)
    big = 2**40 + 7  # FAISS and Milvus ids are int64: the database must keep them whole
    with db.session() as session:
        session.add(Item(id=big, collection_id=collection_id, key="big", meta={}))
    with db.session() as session:
        assert session.scalar(select(Item.id).filter_by(key="big")) == big


@pytest.mark.slow
@pytest.mark.datasets
def test_index_reindex_and_search(db_url: str, small_folder: Path, tmp_path: Path) -> None:
    from conftest import mnist_image

    from indexer.pipeline import Indexer
    from indexer.status import collection_status
    from retrieval import SearchEngine

    first = Indexer(db_url, vector_dir=tmp_path / "vectors").run(small_folder)
    assert first.items == 12 and first.encoded > 0
    again = Indexer(db_url).run(small_folder)  # the collection remembers where its vectors are
    assert again.encoded == 0 and again.unchanged == first.encoded
    result = SearchEngine.open(db_url).search(image=mnist_image(3, 0), strategy="late", k=3)
    assert result.hits[0].key == "d3_george"
    status = collection_status(db_url, "default")
    assert status["items"] == 12 and all(b["current"] for b in status["indexes"])


@pytest.mark.server
def test_a_long_lived_engine_survives_its_connections_being_closed_by_the_server(
    postgres_url: str, small_folder: Path, tmp_path: Path
) -> None:
    """Issue 35, item 8: a server restart or failover ends every connection ("terminating connection due to
    administrator command"); the next search of a long-lived SearchEngine must still answer."""
    from sqlalchemy import create_engine, text

    Indexer(postgres_url, vector_dir=tmp_path / "v").run(small_folder)
    engine = SearchEngine.open(postgres_url)
    before = [h.key for h in engine.search(text="the digit 1", k=3).hits]
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    admin.dispose()
    assert ended >= 1, "the engine's pooled connection was open and is now closed"
    assert [h.key for h in engine.search(text="the digit 1", k=3).hits] == before


def test_two_first_runs_of_one_collection_at_once_are_one_clear_refusal(
    db_url: str, small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 35, item 8: both runs find no collection; the second to insert it meets the unique name."""
    from indexer import target
    from storage import CollectionBusyError

    first = Indexer(db_url, vector_dir=tmp_path / "v")  # made the collection's row
    monkeypatch.setattr(target, "get_collection", lambda session, name: None)  # the second looked just before
    with pytest.raises(CollectionBusyError, match="is being created by another indexer at this moment"):
        Indexer(db_url, vector_dir=tmp_path / "v")
    monkeypatch.undo()
    assert first.run(small_folder).items == 12


@pytest.fixture
def reader_url(postgres_url: str) -> Iterator[str]:
    """The same PostgreSQL database reached as a role that may only read it."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))  # the grants in this database; the role owns nothing
    server = create_engine(make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()
    server.dispose()


@pytest.mark.server
def test_a_role_that_may_only_read_searches_records_nothing_and_writes_are_one_line(
    postgres_url: str, reader_url: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 35, item 8: indexing as a role without write rights, and a search that must record an index
    rebuild as a read-only role (or `check --repair`), ended in ProgrammingError tracebacks. Reached as
    another role, the same database was also taken for a copy of itself (its folder records the URL)."""
    from conftest import mnist_image
    from sqlalchemy import create_engine

    from indexer.__main__ import main as indexer_main
    from storage import IndexBuild
    from storage.repository import bump_generation

    Indexer(postgres_url, vector_dir=tmp_path / "v").run(small_folder)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {make_role(reader_url)}"))
    admin.dispose()
    owner = Database(postgres_url)
    with owner.session() as session:
        bump_generation(session, session.scalar(select(Collection.id)))  # every index stale: a search rebuilds
        builds = sorted((b.strategy, b.key, b.generation) for b in session.scalars(select(IndexBuild)))

    hits = SearchEngine.open(reader_url).search(image=mnist_image(3, 0), strategy="late", k=3).hits
    assert hits[0].key == "d3_george"
    with owner.session() as session:  # built in the reader's memory, recorded nowhere
        assert sorted((b.strategy, b.key, b.generation) for b in session.scalars(select(IndexBuild))) == builds

    for command in ([str(small_folder), "--db", reader_url], ["check", "--db", reader_url, "--repair"]):
        assert indexer_main([*command, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert "the database refused to write (permission denied for table" in err and "\n" not in err, err
        assert "nothing was changed" in err

    # probe case 35: training as such a role trained every epoch, then refused, and left the file behind
    from retrieval.train import TrainConfig
    from storage.errors import ReadOnlyDatabaseError

    out = tmp_path / "gated.safetensors"
    with pytest.raises(ReadOnlyDatabaseError, match="permission denied"):
        SearchEngine.open(reader_url).models.train(TrainConfig("gated", epochs=1), out)
    assert not out.exists(), "refused before training: no checkpoint is written"


def make_role(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).username)


@pytest.mark.server
def test_two_hosts_that_share_a_database_but_not_a_folder_never_write_at_once(
    postgres_url: str, small_folder: Path, tmp_path: Path
) -> None:
    """Issue 35, item 8: the writer's lock was a file in the vector folder only."""
    from storage import CollectionBusyError, CollectionLock
    from storage.catalog import owner_of

    indexer = Indexer(postgres_url, vector_dir=tmp_path / "v")
    db = Database(postgres_url)
    with db.session() as session:
        collection = session.scalar(select(Collection.id))
    # the other host's indexer: the same database, its own view of the folder
    other_host = CollectionLock(tmp_path / "other-host", "the other host", db=db, name=owner_of(db, collection))
    with other_host, pytest.raises(CollectionBusyError, match="a process on another host"):
        indexer.run(small_folder)
    assert indexer.run(small_folder).items == 12


def test_a_server_that_does_not_answer_is_one_line_that_says_running_again_is_safe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 35, item 8: the driver's report ran over several lines and never said whether to run again."""
    import socket

    from retrieval.__main__ import main as retrieval_main

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql+psycopg://nobody@127.0.0.1:{port}/none"
    assert retrieval_main(["search", "--db", url, "--text", "seven"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {url}: cannot use this database (connection failed:") and "\n" not in err
    assert err.endswith("nothing half-written stays: run it again once the database answers")


def test_a_database_that_stops_answering_is_a_user_error_in_the_api(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe cases 29, 33: a long-lived engine whose database stops answering (a server stopped, a full disk
    under SQLite) raised the driver's OperationalError, which USER_ERRORS did not catch; and 'disk I/O error'
    never said the disk was full."""
    import shutil
    import sqlite3

    from retrieval.errors import USER_ERRORS

    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(small_folder)
    engine = SearchEngine.open(url)
    assert engine.search(text="zero", k=1).hits

    def fail(*_args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    event.listen(engine.db.engine, "before_cursor_execute", fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: shutil._ntuple_diskusage(10**9, 10**9, 0))  # type: ignore[attr-defined]
    with pytest.raises(USER_ERRORS) as raised:
        engine.search(text="zero", k=1)
    message = str(raised.value)
    assert message.startswith(f"{url}: cannot use this database (disk I/O error; the disk holding {tmp_path} is full")
    assert message.endswith("run it again once the database answers")
    event.remove(engine.db.engine, "before_cursor_execute", fail)
    assert engine.search(text="zero", k=1).hits, "and it answers again"


def test_the_loser_of_a_race_to_create_a_new_database_uses_the_winners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probe case 41: two first runs on one new SQLite file; one said 'cannot use this database (table items
    already exists)' or 'UNIQUE constraint failed: schema_info.id', though the database was fine."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from storage.models import Base

    url = f"sqlite:///{tmp_path}/new.db"
    create_all = Base.metadata.create_all

    def another_process_first(*args: object, **kwargs: object) -> None:
        monkeypatch.setattr(Base.metadata, "create_all", create_all)
        Database(url)  # the winner creates every table, the schema row and the identity
        raise OperationalError("CREATE TABLE items", {}, sqlite3.OperationalError("table items already exists"))

    monkeypatch.setattr(Base.metadata, "create_all", another_process_first)
    assert Database(url).uid == Database(url).uid


def test_a_question_mark_in_an_sqlite_file_name_is_not_taken_for_options(tmp_path: Path) -> None:
    """Probe case 48: `sqlite:///DIR/q?x=1.db` silently made a database named `DIR/q` (SQLAlchemy read `x=1.db`
    as an option, with a warning). Options it knows still work, and %3F names the file."""
    from storage import StorageError

    with pytest.raises(StorageError, match=r"x after '\?' is not an SQLite option, so the file would be .*/q;"):
        Database(f"sqlite:///{tmp_path}/q?x=1.db")
    assert not (tmp_path / "q").exists()
    Database(f"sqlite:///{tmp_path}/timed.db?timeout=5")
    Database(f"sqlite:///{tmp_path}/q%3Fx=1.db")
    assert (tmp_path / "q?x=1.db").is_file()
