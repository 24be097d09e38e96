"""A database that can only be read (issue 35, item 6): a read-only mount, a shipped snapshot.

Root ignores file modes, so `chmod` reproduces nothing when the tests run as root: the collection's folder is
bind-mounted read-only over itself instead, in a mount namespace of its own (`unshare`), where even root gets
"Read-only file system". SQLite then cannot make the `-shm` file that WAL mode reads through: "unable to open
database file" as root, "attempt to write a readonly database" as a user whose modes say no. The checks run in
that namespace in a child process (this file, run as a script), which reports what it saw as JSON.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _can_mount_read_only(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = where / "probe"
    probe.mkdir()
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount --bind {probe} {probe} && mount -o remount,bind,ro {probe}"],
        capture_output=True,
    )
    probe.rmdir()
    return done.returncode == 0


def _tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its content: what a read must leave as it was."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_a_database_on_a_read_only_mount_is_searched_and_never_written(small_folder: Path, tmp_path: Path) -> None:
    from conftest import mnist_image
    from sqlalchemy import select

    from indexer import Indexer
    from storage import Collection, Database, IndexBuild
    from storage.repository import bump_generation

    if not _can_mount_read_only(tmp_path):
        pytest.skip("no mount namespace here (unshare -rm): a read-only mount cannot be made")
    snap = tmp_path / "snap"
    url = f"sqlite:///{snap}/my.db"
    Indexer(url).run(small_folder)
    db = Database(url)
    with db.session() as session:  # every index stale: a search must rebuild them, and may not record them
        bump_generation(session, session.scalar(select(Collection.id)))
        builds = sorted((b.strategy, b.key, b.generation) for b in session.scalars(select(IndexBuild)))
    db.dispose()
    gc.collect()  # the indexer's connections too: a shipped snapshot has no write-ahead log beside it
    assert not list(snap.glob("my.db-*")), "a connection is still open"
    before = _tree(snap)

    script = f'mount --bind {snap} {snap} && mount -o remount,bind,ro {snap} && exec "$@"'
    child = [sys.executable, __file__, url, str(small_folder), str(mnist_image(3, 0)), str(tmp_path / "out")]
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *child], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])

    assert seen["api"][0] == "d3_george" and seen["cli_search"] == 0
    assert seen["status"] == [0, ""] and "12 items" in seen["status_out"]
    for writer in ("index", "train", "repair"):
        code, err = seen[writer]
        assert code == 2 and err.count("\n") == 1, (writer, err)  # one line, no traceback
        assert f"{snap}/my.db: cannot " in err and "the file is on a read-only file system" in err, err
        assert "nothing was changed" in err and "indexer copy" in err, err
    assert not (tmp_path / "out").exists(), "training is refused before it starts, not after hours of it"
    assert seen["copy"] == 0, "a writable copy can be made from the snapshot"

    assert _tree(snap) == before, "nothing under the read-only folder was written"
    db = Database(url)
    with db.session() as session:
        assert sorted((b.strategy, b.key, b.generation) for b in session.scalars(select(IndexBuild))) == builds
    copied = tmp_path / "copy.db"
    from retrieval import SearchEngine

    assert SearchEngine.open(f"sqlite:///{copied}").search(image=mnist_image(3, 0), k=1).hits[0].key == "d3_george"


def _run(main: Any, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _child(url: str, folder: str, image: str, out: str) -> dict[str, Any]:
    """Inside the read-only mount: search through the API and the CLI, `status`, and the writers."""
    from indexer.__main__ import main as indexer_main
    from retrieval import SearchEngine
    from retrieval.__main__ import main as retrieval_main

    seen: dict[str, Any] = {}
    seen["api"] = [h.key for h in SearchEngine.open(url).search(image=Path(image), strategy="late", k=3).hits]
    seen["cli_search"] = _run(retrieval_main, ["search", "--db", url, "--image", image, "--strategy", "early"])[0]
    code, printed, err = _run(indexer_main, ["status", "--db", url])
    seen["status"], seen["status_out"] = [code, err], printed
    seen["index"] = _run(indexer_main, [folder, "--db", url, "--quiet"])[::2]
    seen["repair"] = _run(indexer_main, ["check", "--db", url, "--repair", "--quiet"])[::2]
    train = ["train", "--db", url, "--strategy", "gated", "--out", f"{out}/g.safetensors", "--epochs", "1"]
    seen["train"] = _run(retrieval_main, train)[::2]
    copy = ["copy", "--db", url, "--to", f"sqlite:///{Path(out).parent}/copy.db", "--quiet"]
    seen["copy"] = _run(indexer_main, copy)[0]
    return seen


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_child(*sys.argv[1:5])))
