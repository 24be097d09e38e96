"""Shared fixtures: real media from ../shared/datasets, tiny models, temporary databases."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import synthetic_media

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]

# The media the tests index: the real spoken and handwritten digits (../shared/datasets; DIGITS_DATASETS
# moves them, as for the demo), or, where they are absent or RETRIEVAL_TEST_MEDIA=synthetic, a small collection
# of the same layout made at test time (tests/synthetic_media.py). Tests that judge real media (quality,
# golden rankings, the datasets' checksums) are marked `real_media` and skip on the synthetic one.
REAL_DATASETS = Path(os.environ.get("DIGITS_DATASETS") or ROOT.parent / "shared" / "datasets")
SYNTHETIC = Path(tempfile.gettempdir()) / f"retrieval-test-media-v{synthetic_media.VERSION}"
REAL = os.environ.get("RETRIEVAL_TEST_MEDIA", "real") != "synthetic" and (REAL_DATASETS / "fsdd").is_dir()
DATASETS = REAL_DATASETS if REAL else SYNTHETIC
# What the demo code, the CLIs and the app's server read, in this process and every one it starts (pytest-xdist
# workers too, which then make the same choice).
os.environ["RETRIEVAL_TEST_MEDIA"] = "real" if REAL else "synthetic"
if not REAL:
    os.environ["DIGITS_DATASETS"] = str(SYNTHETIC)
    os.environ["RETRIEVAL_TRANSCRIPTS"] = str(SYNTHETIC / "transcripts.jsonl")
FSDD = DATASETS / "fsdd" / "recordings"
MNIST = DATASETS / "mnist" / "images"


def pytest_configure(config: pytest.Config) -> None:
    """Make the synthetic collection once per machine (under a lock: every pytest-xdist worker asks)."""
    from filelock import FileLock

    if REAL:
        return
    with FileLock(f"{SYNTHETIC}.lock"):
        if not (SYNTHETIC / "complete").exists():
            shutil.rmtree(SYNTHETIC, ignore_errors=True)  # one a killed run left half made
            synthetic_media.build(SYNTHETIC)
            (SYNTHETIC / "complete").touch()


def require_datasets() -> Path:
    """The media folder (real or synthetic): every test that indexes media calls it, so the name stays."""
    return DATASETS


def require_real_media() -> Path:
    """Skip the calling test where the media are synthetic: it judges what real media give."""
    if not REAL:
        pytest.skip(f"needs the real datasets ({REAL_DATASETS}); the synthetic media stand in here")
    return DATASETS


# Seconds the slow tests of each module take in a two-worker run (measured; they only order the suite).
SLOW_SECONDS = {
    "test_bench_smoke.py": 240,  # every benchmark script at a tiny size (~240 CPU-s, one process at a time)
    "test_browser.py": 62,
    "test_scale_out.py": 40,
    "test_browser_first_run.py": 22,
    "test_pretrained_profile.py": 30,
    "test_compare_evaluate.py": 19,
    "test_app.py": 18,
    "test_reliability.py": 16,
    "test_first_run.py": 11,
    "test_scale.py": 10,
    "test_database.py": 7,
    "test_check.py": 35,  # check + repair on Milvus Lite and a server
    "test_vector_backends.py": 45,  # the parity test on Milvus Lite and a server (~30 s: 3 s a collection)
    "test_datasets.py": 5,
    "test_cli_and_demo.py": 3,
}


def deal_slow_tests(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """The run's order for `workers` pytest-xdist workers. Its worksteal scheduler hands each worker a
    contiguous block of the order (then moves tests from the end of a busy worker's block to an idle one), so
    each block starts with its share of the slow tests, dealt module by module (a module's browser or Ray
    cluster is then started once) to the block with the fewest expected seconds so far. Slow-first alone
    put every slow test in the first block: one worker ran 190 s of tests while the other idled after 162 s."""
    slow = [item for item in items if "slow" in item.keywords]
    fast = [item for item in items if "slow" not in item.keywords]
    modules: dict[str, list[pytest.Item]] = {}
    for item in slow:
        modules.setdefault(item.path.name, []).append(item)
    blocks: list[list[pytest.Item]] = [[] for _ in range(workers)]
    load = [0.0] * workers
    for name, group in sorted(modules.items(), key=lambda kv: -SLOW_SECONDS.get(kv[0], 10)):
        lightest = load.index(min(load))
        blocks[lightest] += group
        load[lightest] += SLOW_SECONDS.get(name, 10)
    remaining = len(items)
    for n, block in enumerate(blocks):  # the block sizes worksteal sends: what is left, shared by the workers left
        size = remaining // (workers - n)
        take = max(0, size - len(block))
        block += fast[:take]
        fast = fast[take:]
        remaining -= len(block)
    blocks[-1] += fast
    return [item for block in blocks for item in block]


def pytest_collection_modifyitems(config, items):
    # Slow tests first in every worker's share, so the long ones start while the short ones fill the gaps,
    # instead of one long test running alone at the end of the suite.
    items[:] = deal_slow_tests(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    if not REAL:
        skip = pytest.mark.skip(reason=f"needs the real datasets ({REAL_DATASETS}); the media here are synthetic")
        for item in items:
            if "real_media" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def datasets() -> Path:
    return require_datasets()


def recording(digit: int, speaker: str = "george", take: int = 0) -> Path:
    require_datasets()
    return FSDD / f"{digit}_{speaker}_{take}.wav"


def mnist_image(digit: int, nth: int = 0) -> Path:
    require_datasets()
    return sorted(MNIST.glob(f"*_{digit}.png"))[nth]


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    """A folder collection of real media: 12 items grouped by stem, some with only one modality."""
    folder = tmp_path / "media"
    folder.mkdir()
    for digit in range(4):
        for n, speaker in enumerate(("george", "jackson", "lucas")):
            stem = folder / f"d{digit}_{speaker}"
            if n != 2:
                shutil.copy(mnist_image(digit, n), stem.with_suffix(".png"))
            if n != 1:
                shutil.copy(recording(digit, speaker, n), stem.with_suffix(".wav"))
            if n == 0:
                stem.with_suffix(".txt").write_text(f"the digit {digit} said by {speaker}")
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Names of tiny OpenCLIP and CLAP encoders, built through the production loading code."""
    from tiny_models import register_tiny_clip, save_tiny_clap_dir, save_tiny_clip_dir

    base = tmp_path_factory.mktemp("tiny")
    clip = register_tiny_clip(base / "configs")
    clip_dir = save_tiny_clip_dir(base / "clip-dir")
    clap_dir = save_tiny_clap_dir(base / "clap")
    return {
        "openclip": f"openclip:{clip}",
        "openclip_dir": f"openclip:local-dir:{clip_dir}",
        "clap": f"clap:{clap_dir}",
    }


POSTGRES = os.environ.get("RETRIEVAL_TEST_POSTGRES")  # set by .ci/run: export it from scripts/postgres.sh


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    if not POSTGRES:
        if os.environ.get("RETRIEVAL_REQUIRE_POSTGRES") == "1":
            pytest.fail("RETRIEVAL_REQUIRE_POSTGRES=1 but RETRIEVAL_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL: export RETRIEVAL_TEST_POSTGRES=$(bash scripts/postgres.sh)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on SQLite (a file) and on PostgreSQL: any SQLAlchemy URL must work the same way."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres_url")


MILVUS = os.environ.get("RETRIEVAL_TEST_MILVUS")  # set by .ci/run: export it from scripts/milvus.sh


@pytest.fixture
def milvus_server() -> str:
    """A fresh, empty database on the Milvus test server for one test (dropped afterwards), as the URI the
    product takes (`http://HOST:PORT/DATABASE`): tests share the server, never each other's collections."""
    if not MILVUS:
        if os.environ.get("RETRIEVAL_REQUIRE_MILVUS") == "1":
            pytest.fail("RETRIEVAL_REQUIRE_MILVUS=1 but RETRIEVAL_TEST_MILVUS is not set")
        pytest.skip("no Milvus server: export RETRIEVAL_TEST_MILVUS=$(bash scripts/milvus.sh)")
    from pymilvus import MilvusClient

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = MilvusClient(MILVUS)
    admin.create_database(name)
    yield f"{MILVUS.rstrip('/')}/{name}"
    inside = MilvusClient(MILVUS, db_name=name)
    for collection in inside.list_collections():
        inside.drop_collection(collection)
    inside.close()
    admin.drop_database(name)
    admin.close()


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.server) for kind in ("lite", "server")])
def milvus_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on Milvus Lite (a file) and on a Milvus server: the backend must behave the same."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    return request.getfixturevalue("milvus_server")


@pytest.fixture(scope="session")
def ui_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The digits demo (200 items) built once per test run for the UI tests (AppTest and browser) and read by
    every pytest-xdist worker (~10 s of indexing per worker saved); a test that writes gets `copy_demo`."""
    from filelock import FileLock

    from indexer.demo import DemoSpec, index_demo

    require_datasets()
    # Under pytest-xdist each worker's temporary folder sits in the run's: the demo goes into a sibling of them,
    # at the depth of `copy_demo`'s copies (the manifest's relative paths into the datasets hold for both).
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent / "shared" if os.environ.get("PYTEST_XDIST_WORKER") else base) / "ui-demo"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not (folder / "built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a build a crashed worker left half done
            url = f"sqlite:///{folder}/demo.db"
            index_demo(url, folder / "digits", spec=DemoSpec(limit=200), train=False)  # trained: test_first_run
            (folder / "built").touch()
    url = f"sqlite:///{folder}/demo.db"
    return {
        "url": url,
        "queries": str(folder / "digits" / "queries.jsonl"),
        "manifest": str(folder / "digits" / "manifest.csv"),
        "root": str(folder),
        # what the Index page may read: the demo's folder and the shared media its manifest points at
        "roots": os.pathsep.join([str(folder), str(DATASETS)]),
    }


def copy_demo(demo: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private copy of a session's demo, for a test that writes to it: no other test sees what it wrote,
    so tests pass in any order and on any pytest-xdist worker. The database is copied with its vectors as a
    person would (`indexer copy`); the manifest and queries beside it are copied at the same depth, so their
    relative paths into the datasets still hold."""
    from storage.copying import copy_database

    source = Path(demo["root"])
    folder = tmp_path_factory.mktemp("own-demo")
    shutil.copytree(source, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("demo.db", "demo.vectors"))
    copy = {k: v.replace(str(source), str(folder)) for k, v in demo.items()}
    copy_database(demo["url"], copy["url"])
    return copy


# The Streamlit app under AppTest (tests/test_app.py, tests/test_app_truth.py)
APP = str(ROOT / "app.py")


@pytest.fixture
def demo(
    ui_demo: dict[str, str], request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The session's demo, read only; a private copy for tests marked `writes_demo`."""
    if request.node.get_closest_marker("writes_demo"):
        return copy_demo(ui_demo, tmp_path_factory)
    return ui_demo


@pytest.fixture
def app(demo: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RETRIEVAL_DB", demo["url"])
    monkeypatch.setenv("RETRIEVAL_QUERIES", demo["queries"])
    monkeypatch.setenv("RETRIEVAL_ROOTS", demo["roots"])
    from streamlit.testing.v1 import AppTest  # here, not at the top: most tests never start the app

    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["compact_view"] = False  # these tests read the result cards, one column per method
    # late vs early even on a copy where a test trained gated (the default would then be late vs gated)
    at.session_state["methods"] = ["late", "early"]
    return at.run()
