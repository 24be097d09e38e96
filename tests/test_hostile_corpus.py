"""The hostile-input corpus (issue 14, part B): each case ends in a clear one-line error naming the input
and the reason, or in a skipped file with its reason; never a hang, a traceback, or a lost item.

One collection is indexed per module and reused by every search and CLI case; fixtures are built at test
time (nothing big in the repository). Special files are guarded by an alarm, so a regression fails
instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import mnist_image, recording

from indexer import Indexer
from indexer.__main__ import main as indexer_main
from indexer.sources import scan
from retrieval import SearchEngine
from retrieval.__main__ import main as retrieval_main
from retrieval.errors import USER_ERRORS, MediaError, RetrievalError
from storage import CorruptArtifactError, StorageError

BIG_NOTE = "n" * 2_000_000  # a 2 MB metadata value: search's text output must not print it


@contextmanager
def deadline(seconds: int = 20) -> Iterator[None]:
    """Fail (TimeoutError) instead of hanging: SIGALRM interrupts a blocking open() of a FIFO."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six items (image, audio, text), one with a 2 MB metadata value; indexed once for the module."""
    base = tmp_path_factory.mktemp("hostile")
    rows = []
    for digit in range(6):
        shutil.copy(mnist_image(digit), base / f"d{digit}.png")
        shutil.copy(recording(digit), base / f"d{digit}.wav")
        row = {"id": f"d{digit}", "image": f"d{digit}.png", "audio": f"d{digit}.wav", "text": f"digit {digit}"}
        rows.append(row | ({"note": BIG_NOTE} if digit == 3 else {"note": "short"}))
    (base / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = f"sqlite:///{base}/c.db"
    summary = Indexer(url).run(base / "m.jsonl")
    assert summary.items == 6 and summary.assets == {"audio": 6, "image": 6, "text": 6}
    png = base / "picture.db"
    shutil.copy(mnist_image(1), png)
    truncated = base / "truncated.db"
    with sqlite3.connect(base / "c.db") as db:  # everything into the main file, then cut it mid-page
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = (base / "c.db").read_bytes()
    truncated.write_bytes(data[:100] + b"\xff" * 8000)  # header kept, pages overwritten
    fifo = base / "pipe.png"
    os.mkfifo(fifo)
    return {
        "url": url,
        "base": base,
        "engine": SearchEngine.open(url),
        "png": png,
        "truncated": truncated,
        "fifo": fifo,
    }


# -- the Python API: every bad value is a RetrievalError with its reason ------------------------------------
def _search(**kwargs: Any) -> Callable[[SearchEngine], Any]:
    return lambda engine: engine.search(**({"text": "digit"} | kwargs))


API_CASES: list[tuple[str, Callable[[SearchEngine], Any], str]] = [
    ("k-fraction", _search(k=2.5), "whole number"),
    ("k-zero", _search(k=0), "between 1"),
    ("k-negative", _search(k=-1), "between 1"),
    ("k-bool", _search(k=True), "whole number"),
    ("k-string", _search(k="3"), "whole number"),
    ("k-nan", _search(k=float("nan")), "whole number"),
    ("k-huge", _search(k=10**9), "between 1 and 10000"),
    ("weight-nan", _search(weights={"text": float("nan")}), "finite"),
    ("weight-inf", _search(weights={"text": float("inf")}), "finite"),
    ("weight-1e308", _search(weights={"text": 1e308}), "between"),
    ("weight-unknown-modality", _search(weights={"smell": 1.0}), "not a modality"),
    ("weight-string", _search(weights={"text": "x"}), "must be a number"),
    ("weights-not-a-dict", _search(weights=[1, 2]), "must map"),
    ("fusion-bogus", _search(fusion="bogus"), "late.fusion must be one of"),
    ("fusion-list", _search(fusion=[1]), "late.fusion must be one of"),
    ("normalisation-bogus", _search(normalisation="max"), "late.normalisation must be one of"),
    ("rrf-k-negative", _search(fusion="rrf", rrf_k=-1), "late.rrf_k must be between"),
    ("rrf-k-inf", _search(rrf_k=float("inf")), "late.rrf_k must be a finite"),
    ("candidates-zero", _search(candidates=0), "late.candidates must be between"),
    ("candidates-fraction", _search(candidates=2.5), "late.candidates must be a whole number"),
    ("centre-string", _search(centre="yes"), "late.centre must be true or false"),
    ("rescore-int", _search(rescore=1), "late.rescore must be true or false"),
    ("hybrid-groups-number", _search(strategy="hybrid", groups=5), "hybrid.groups must be"),
    ("hybrid-groups-empty", _search(strategy="hybrid", groups=[]), "hybrid.groups must be"),
    ("hybrid-groups-unknown", _search(strategy="hybrid", groups=[["image", "smell"]]), "'smell' is not a modality"),
    ("hybrid-rrf-k-nan", _search(strategy="hybrid", rrf_k=float("nan")), "hybrid.rrf_k must be a finite"),
    ("learned-early-blend-inf", _search(strategy="learned_early", blend=float("inf")), "learned_early.blend must"),
    ("unknown-parameter", _search(bogus=1), "has no parameter"),
    ("unknown-strategy", _search(strategy="bogus"), "unknown fusion strategy"),
    ("image-7-channels", _search(text=None, image=np.zeros((8, 8, 7), np.uint8)), "C = 1, 3 or 4"),
    ("image-complex", _search(text=None, image=np.zeros((8, 8), complex)), "real numbers"),
    ("image-nan", _search(text=None, image=np.full((8, 8), np.nan)), "NaN or infinite"),
    ("image-4d", _search(text=None, image=np.zeros((2, 8, 8, 3))), "HxW or HxWxC"),
    ("image-empty-array", _search(text=None, image=np.zeros((0, 0))), "non-empty"),
    ("image-object-array", _search(text=None, image=np.array([[None]])), "real numbers"),
    ("image-a-dict", _search(text=None, image={"a": 1}), "an image must be"),
    ("image-garbage-bytes", _search(text=None, image=b"\x00" * 100), "not a recognised image"),
    ("image-missing-file", _search(text=None, image="/nonexistent/x.png"), "file not found"),
    ("image-a-directory", _search(text=None, image="/tmp"), "directory"),
    ("image-dev-zero", _search(text=None, image="/dev/zero"), "not a regular file (a device)"),
    ("audio-rate-zero", _search(text=None, audio=(np.ones(1600), 0)), "sample rate"),
    ("audio-rate-negative", _search(text=None, audio=(np.ones(1600), -8000)), "sample rate"),
    ("audio-rate-fraction", _search(text=None, audio=(np.ones(1600), 2.5)), "sample rate"),
    ("audio-rate-huge", _search(text=None, audio=(np.ones(1600), 10**9)), "sample rate"),
    ("audio-complex", _search(text=None, audio=(np.ones(1600, complex), 16000)), "real numbers"),
    ("audio-3d", _search(text=None, audio=(np.ones((10, 10, 10)), 16000)), "(samples, channels)"),
    ("audio-nan", _search(text=None, audio=(np.full(1600, np.nan), 16000)), "NaN or infinite"),
    ("audio-too-many-channels", _search(text=None, audio=(np.ones((1600, 64)), 16000)), "channels"),
    ("audio-too-long", _search(text=None, audio=(np.ones(601 * 100), 100)), "over the limit"),
    ("audio-silent", _search(text=None, audio=(np.zeros(16000), 16000)), "silent"),
    ("audio-garbage-bytes", _search(text=None, audio=b"RIFF" + b"\x00" * 60), "not a readable audio"),
    ("audio-a-list", _search(text=None, audio=[0.1, 0.2]), "audio must be"),
    ("audio-tuple-of-three", _search(text=None, audio=(np.ones(1600), 16000, "extra")), "not 3 values"),
    ("audio-a-text-file", _search(text=None, audio=__file__), "not a readable audio file (Format not recognised"),
    ("text-lone-surrogate", _search(text="seven \udc80"), "lone surrogate"),
    ("text-empty", _search(text="   "), "empty text"),
    ("text-huge", _search(text="a" * 2_000_000), "over the limit"),
    ("text-a-number", _search(text=7), "a text must be"),
    ("negative-unknown", _search(negative={"smell": "x"}), "negative terms"),
    ("negative-surrogate", _search(negative={"text": "\udc80"}), "lone surrogate"),
    ("empty-query", _search(text=None), "empty query"),
    ("preset-unknown", _search(preset="nothing"), "no preset"),
]


@pytest.mark.parametrize("call, fragment", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_refuses_with_a_reason(collection: dict[str, Any], call: Callable, fragment: str) -> None:
    with deadline(), pytest.raises(USER_ERRORS) as caught:  # ours or storage's: both are the user's to fix
        call(collection["engine"])
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_api_fifo_query_is_refused_without_blocking(collection: dict[str, Any]) -> None:
    with deadline(), pytest.raises(MediaError, match="not a regular file \\(a FIFO\\)"):
        collection["engine"].search(image=collection["fifo"])


def test_k_beyond_the_collection_gives_every_item_once(collection: dict[str, Any]) -> None:
    hits = collection["engine"].search(text="digit 3", k=5000).hits
    assert sorted(h.key for h in hits) == [f"d{n}" for n in range(6)]
    assert hits[0].key == "d3"  # still a ranking, not a dump


# -- the search CLI: one line "error: ..." (exit 2) or argparse's usage error; valid JSON ---------------------
def _cli(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    with deadline(60):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refuses a bad value before anything runs
            code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


CLI_CASES: list[tuple[str, list[str], str]] = [
    ("k-zero", ["--k", "0"], "argument --k"),
    ("k-negative", ["--k", "-1"], "argument --k"),
    ("k-fraction", ["--k", "2.5"], "argument --k"),
    ("k-billion", ["--k", "1000000000"], "between 1 and 10000"),
    ("weight-nan", ["--weight", "text=nan"], "finite"),
    ("weight-inf", ["--weight", "text=inf"], "finite"),
    ("weight-1e308", ["--weight", "text=1e308"], "between"),
    ("weight-word", ["--weight", "text=heavy"], "not a number"),
    ("weight-modality", ["--weight", "smell=1"], "--weight expects"),
    ("nprobe-zero", ["--nprobe", "0"], "argument --nprobe"),
    ("nprobe-fraction", ["--nprobe", "1.5"], "argument --nprobe"),
    ("rescore-bytes-zero", ["--rescore-bytes", "0"], "argument --rescore-bytes"),
    ("rescore-bytes-word", ["--rescore-bytes", "1MB"], "argument --rescore-bytes"),
    ("rrf-k-negative", ["--rrf-k", "-1"], "argument --rrf-k"),
    ("rrf-k-nan", ["--rrf-k", "nan"], "argument --rrf-k"),
    ("param-fusion-list", ["--param", "late.fusion=[1]"], "late.fusion must be one of"),
    ("param-fusion-bogus", ["--param", "late.fusion=bogus"], "late.fusion must be one of"),
    ("param-groups-number", ["--strategy", "hybrid", "--param", "hybrid.groups=5"], "hybrid.groups must be"),
    ("param-unknown", ["--param", "late.nope=1"], "has no parameter"),
    ("param-malformed", ["--param", "late"], "STRATEGY.NAME=VALUE"),
    ("collection-300", ["--collection", "c" * 300], "at most 200"),
    ("collection-unknown", ["--collection", "nope"], "no collection 'nope'"),
    ("text-surrogate", ["--text", "seven \udc80"], "lone surrogate"),
    ("image-missing", ["--image", "/nonexistent.png"], "file not found"),
    ("audio-directory", ["--audio", "/tmp"], "directory"),
    ("no-query", [], "give at least one of"),
]


@pytest.mark.parametrize("argv, fragment", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_search_cli_one_line_error(
    collection: dict[str, Any], capsys: pytest.CaptureFixture, argv: list[str], fragment: str
) -> None:
    query = [] if any(a in ("--text", "--image", "--audio") for a in argv) or argv == [] else ["--text", "digit"]
    code, out, err = _cli(retrieval_main, ["search", "--db", collection["url"], *query, *argv], capsys)
    assert code == 2, (out, err)
    assert fragment in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(("error:", "usage:", "python -m retrieval search: error:"))


@pytest.mark.parametrize("which", ["png", "truncated"])
def test_db_that_is_not_a_database_is_one_line(
    collection: dict[str, Any], capsys: pytest.CaptureFixture, which: str
) -> None:
    url = f"sqlite:///{collection[which]}"
    code, _, err = _cli(retrieval_main, ["search", "--db", url, "--text", "x"], capsys)
    assert code == 2 and err.startswith(f"error: {url}: cannot use this database"), err
    assert len(err.strip().splitlines()) == 1
    code, _, err = _cli(indexer_main, ["status", "--db", url], capsys)
    assert code == 2 and "cannot use this database" in err and len(err.strip().splitlines()) == 1


def test_fifo_query_cli_does_not_hang(collection: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    code, _, err = _cli(
        retrieval_main, ["search", "--db", collection["url"], "--image", str(collection["fifo"])], capsys
    )
    assert code == 2 and "not a regular file (a FIFO)" in err


def test_json_output_is_strict_json(collection: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in JSON output")

    for command in ("search", "compare"):
        argv = [command, "--db", collection["url"], "--text", "digit 2", "--strategy", "late", "--json"]
        argv += ["--strategy", "early"] if command == "compare" else ["--weight", "text=0"]
        code, out, _ = _cli(retrieval_main, argv, capsys)
        assert code == 0
        data = json.loads(out, parse_constant=refuse)
        assert data["query"]["text"] == "digit 2"


def test_nprobe_and_rescore_bytes_reach_the_search(
    collection: dict[str, Any], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search with --nprobe and --rescore-bytes answers like one without (the test collection's indexes are
    exact), the CLI hands both to the engine, and the engine's space carries them to every index it opens."""
    from retrieval.engine import SearchEngine

    opened: list[dict[str, Any]] = []
    original = SearchEngine.open.__func__  # type: ignore[attr-defined]

    def spy(cls: type[SearchEngine], *args: Any, **kwargs: Any) -> SearchEngine:
        opened.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(SearchEngine, "open", classmethod(spy))
    argv = ["search", "--db", collection["url"], "--text", "digit 3", "--k", "6", "--json"]
    tuned = ["--nprobe", "3", "--rescore-bytes", "4096"]
    plain, probed = (_cli(retrieval_main, argv + extra, capsys) for extra in ([], tuned))
    assert plain[0] == probed[0] == 0 and json.loads(plain[1])["results"] == json.loads(probed[1])["results"]
    assert (opened[-1]["nprobe"], opened[-1]["rescore_bytes"]) == (3, 4096)
    space = SearchEngine.open(collection["url"], nprobe=3, rescore_bytes=4096).space
    assert (space.nprobe, space.rescore_bytes) == (3, 4096)
    index = space.field_index(space.fields[0])
    assert index.rescore_bytes == 4096


def test_search_text_output_truncates_huge_metadata(collection: dict[str, Any], capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _cli(retrieval_main, ["search", "--db", collection["url"], "--text", "digit 3", "--k", "6"], capsys)
    assert code == 0 and "d3" in out and "note=nnnn" in out
    assert max(len(line) for line in out.splitlines()) < 400  # the 2 MB value is cut, not printed


def test_compare_with_a_huge_k_prints_only_filled_rows(
    collection: dict[str, Any], capsys: pytest.CaptureFixture
) -> None:
    argv = ["compare", "--db", collection["url"], "--text", "digit", "--strategy", "late", "--strategy", "early"]
    code, out, _ = _cli(retrieval_main, [*argv, "--k", "10000"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == 6 and rows[-1].split()[0] == "6"


# -- manifests and folders: a reason per bad row or file, the rest indexed ----------------------------------
MANIFEST_CASES: list[tuple[str, str, str]] = [
    ("jsonl-null-line", "null\n", "a row must be a JSON object, not null"),
    ("jsonl-number-line", "42\n", "a row must be a JSON object, not a number"),
    ("jsonl-list-line", "[1, 2]\n", "a row must be a JSON object, not a list"),
    ("jsonl-string-line", '"hello"\n', "a row must be a JSON object, not a string"),
    ("jsonl-bool-line", "true\n", "a row must be a JSON object, not true/false"),
    ("jsonl-invalid", "{nope\n", "invalid JSON"),
    ("jsonl-deep", "[" * 100_000 + "]" * 100_000 + "\n", "JSON"),
    ("jsonl-id-list", '{"id": [1], "text": "x"}\n', "id must be a string or a whole number"),
    ("jsonl-id-float", '{"id": 1.5, "text": "x"}\n', "id must be a string or a whole number"),
    ("jsonl-id-bool", '{"id": true, "text": "x"}\n', "id must be a string or a whole number"),
    ("jsonl-id-null", '{"id": null, "text": "x"}\n', "row has no id"),
    ("jsonl-id-long", json.dumps({"id": "k" * 600, "text": "x"}) + "\n", "over the limit of 500"),
    ("jsonl-id-surrogate", '{"id": "a\\udc80", "text": "x"}\n', "not valid UTF-8"),
    ("jsonl-image-number", '{"id": "a", "image": 5}\n', "image must be a path, not a number"),
    ("jsonl-audio-dict", '{"id": "a", "audio": {"x": 1}}\n', "audio must be a path"),
    ("jsonl-nul-path", '{"id": "a", "image": "a\\u0000b.png"}\n', "NUL"),
    ("jsonl-dev-null", '{"id": "a", "audio": "/dev/null"}\n', "not a regular file (a device)"),
    ("csv-extra-fields", "id,text\na,one,two,three\n", "more field(s) than the header"),
    ("csv-field-over-1mb", "id,text\na," + "x" * 1_100_000 + "\n", "unreadable CSV row"),
]


@pytest.mark.parametrize("content, fragment", [c[1:] for c in MANIFEST_CASES], ids=[c[0] for c in MANIFEST_CASES])
def test_manifest_row_refused_with_reason_and_the_rest_kept(tmp_path: Path, content: str, fragment: str) -> None:
    suffix = ".csv" if content.startswith("id,") else ".jsonl"
    manifest = tmp_path / f"m{suffix}"
    good = "id,text\nfine,a good row\n" if suffix == ".csv" else '{"id": "fine", "text": "a good row"}\n'
    manifest.write_text(good + content.removeprefix("id,text\n"), errors="surrogatepass")
    with deadline():
        found = scan(manifest)
    assert [i.key for i in found.items] == ["fine"]
    assert any(fragment in p.reason for p in found.problems), [p.reason for p in found.problems]
    assert all(p.path.startswith(str(manifest)) for p in found.problems)


def test_manifest_oddities_that_are_fine(tmp_path: Path) -> None:
    """JSONL id 0 is an id; a CSV column named __error__ is metadata; a 200k-character CSV text is a text."""
    (tmp_path / "a.jsonl").write_text('{"id": 0, "text": "zero"}\n{"id": 7, "text": 7}\n')
    found = scan(tmp_path / "a.jsonl")
    assert [(i.key, i.assets["text"].inline_text) for i in found.items] == [("0", "zero"), ("7", "7")]
    long_text = "y" * 200_000
    (tmp_path / "b.csv").write_text(f"id,text,__error__\na,hello,oops\nb,{long_text},\n")
    found = scan(tmp_path / "b.csv")
    assert [i.key for i in found.items] == ["a", "b"] and not found.problems
    assert found.items[0].metadata == {"__error__": "oops"}
    assert found.items[1].assets["text"].inline_text == long_text
    assert "null" not in json.dumps([i.metadata for i in found.items])


def test_special_files_in_a_folder_are_skipped_never_opened(tmp_path: Path) -> None:
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(mnist_image(1), folder / "one.png")
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(folder / "pipe")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock.wav"))
    os.symlink("/dev/zero", folder / "zero.png")
    (folder / os.fsdecode(b"bad\xffname.png")).write_bytes(mnist_image(2).read_bytes())
    try:
        with deadline():
            summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(folder, roots=[Path("/dev")])
    finally:
        listener.close()
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    assert "a FIFO" in reasons["pipe.png"] and "a FIFO" in reasons["pipe"]
    assert "a socket" in reasons["sock.wav"] and "a device" in reasons["zero.png"]
    assert "not valid UTF-8" in reasons["bad\\xffname.png"]
    assert summary.items == 1 and summary.assets == {"image": 1}


def test_fifo_named_in_a_manifest_is_skipped(tmp_path: Path) -> None:
    shutil.copy(mnist_image(1), tmp_path / "one.png")
    os.mkfifo(tmp_path / "pipe.wav")
    os.mkfifo(tmp_path / "pipe.txt")
    rows = [{"id": "a", "image": "one.png", "audio": "pipe.wav", "text": "pipe.txt"}, {"id": "b", "audio": "pipe.wav"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with deadline():
        summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(tmp_path / "m.jsonl")
    reasons = [p.reason for p in summary.problems]
    assert sum("not a regular file (a FIFO)" in r for r in reasons) == 3, reasons
    assert summary.items == 1 and summary.assets == {"image": 1}


# -- pruning never removes what could not be seen ------------------------------------------------------------
@pytest.fixture
def indexed_folder(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    for n in range(2):
        shutil.copy(mnist_image(n), folder / f"top{n}.png")
        shutil.copy(mnist_image(n + 2), folder / "sub" / f"inner{n}.png")
    url = f"sqlite:///{tmp_path}/c.db"
    assert Indexer(url).run(folder).items == 4
    return folder, url


def _unlistable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """As if `folder` could not be listed (tests run as root, which reads everything)."""
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.mark.parametrize("where", ["subfolder", "root"])
def test_prune_keeps_items_of_a_folder_that_could_not_be_listed(
    indexed_folder: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    folder, url = indexed_folder
    _unlistable(monkeypatch, folder / "sub" if where == "subfolder" else folder)
    (folder / "top1.png").unlink()  # really gone: pruned when its folder was listed
    summary = Indexer(url).run(folder, prune=True)
    kept = set(SearchEngine.open(url).catalogue.item_keys().values())
    if where == "subfolder":
        assert summary.removed == 1 and summary.unseen == 2
        assert kept == {"top0", "sub/inner0", "sub/inner1"}
    else:
        assert summary.removed == 0 and summary.unseen == 4
        assert kept == {"top0", "top1", "sub/inner0", "sub/inner1"}
    assert any("cannot list folder" in p.reason for p in summary.problems)


def test_prune_after_an_unreadable_manifest_row_removes_nothing(tmp_path: Path) -> None:
    shutil.copy(mnist_image(1), tmp_path / "one.png")
    shutil.copy(mnist_image(2), tmp_path / "two.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "image": "one.png"}\n{"id": "b", "image": "two.png"}\n')
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(manifest)
    manifest.write_text('{"id": "a", "image": "one.png"}\n{"id": "b", "image": "two.png"\n')  # a broken line
    summary = Indexer(url).run(manifest, prune=True)
    assert summary.removed == 0 and summary.unseen == 1
    assert set(SearchEngine.open(url).catalogue.item_keys().values()) == {"a", "b"}


# -- the indexer: refused before anything is written; tracebacks only for bugs ---------------------------------
def test_three_hundred_character_collection_name_writes_no_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(mnist_image(1), tmp_path / "one.png")
    url = f"sqlite:///{tmp_path}/c.db"
    with pytest.raises(RetrievalError, match="at most 200"):
        Indexer(url, collection="c" * 300)
    code, _, err = _cli(indexer_main, [str(tmp_path), "--db", url, "--collection", "c" * 300], capsys)
    assert code == 2 and "at most 200" in err
    if (tmp_path / "c.db").exists():
        assert sqlite3.connect(tmp_path / "c.db").execute("select count(*) from collections").fetchone() == (0,)


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--batch-size", "-1"], ["--flush-every", "0"]])
def test_indexer_cli_refuses_non_positive_sizes(tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str]) -> None:
    code, _, err = _cli(indexer_main, [str(tmp_path), "--db", f"sqlite:///{tmp_path}/c.db", *argv], capsys)
    assert (code == 2 and "must be between 1" in err) or "must be at least 1" in err, err
    assert not (tmp_path / "c.db").exists()


def test_batch_size_zero_in_python_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match="batch_size must be at least 1"):
        Indexer(f"sqlite:///{tmp_path}/c.db", batch_size=0)


def test_disk_full_on_the_lock_file_is_a_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from storage import lock

    shutil.copy(mnist_image(1), tmp_path / "one.png")

    def full(self: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(lock.CollectionLock, "__enter__", full)
    with pytest.raises(StorageError, match="No space left on device"):
        Indexer(f"sqlite:///{tmp_path}/c.db").run(tmp_path)


def test_manifest_absolute_paths_from_the_cli_but_not_the_api(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "list").mkdir()
    manifest = tmp_path / "list" / "m.csv"
    manifest.write_text(f"id,image\na,{mnist_image(1)}\n")  # an absolute path outside the manifest's folder
    assert Indexer(f"sqlite:///{tmp_path}/api.db").run(manifest).assets == {}  # the API confines by default
    code, out, _ = _cli(indexer_main, [str(manifest), "--db", f"sqlite:///{tmp_path}/cli.db", "--quiet"], capsys)
    assert code == 0 and "image: 1" in out  # its author wrote it: read where it points
    argv = [str(manifest), "--db", f"sqlite:///{tmp_path}/conf.db", "--quiet", "--confine"]
    code, out, _ = _cli(indexer_main, argv, capsys)
    assert code == 0 and "outside the collection" in out


def test_safetensors_without_our_header_is_a_clear_error(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from retrieval.fusion import create_strategy

    path = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    with pytest.raises(CorruptArtifactError, match="not a fusion checkpoint of this program"):
        create_strategy("gated", checkpoint=str(path)).checkpoint  # noqa: B018


def test_a_bug_is_not_a_user_error() -> None:
    from retrieval.errors import user_message

    assert user_message(ValueError("operands could not be broadcast together")) is None
    assert user_message(KeyError("module")) is None
    assert user_message(RetrievalError("a reason")) == "a reason"
    assert all(issubclass(e, Exception) for e in USER_ERRORS)


@pytest.mark.parametrize("line", ["null", "42", "[1]", '{"id": "q", "text": 7}', '{"id": "q", "image": ["a"]}'])
def test_query_file_lines_that_are_not_queries(
    collection: dict[str, Any], capsys: pytest.CaptureFixture, tmp_path: Path, line: str
) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "ok", "text": "digit 1", "label": "1"}\n' + line + "\n")
    argv = ["evaluate", "--db", collection["url"], "--queries", str(queries), "--label-field", "note"]
    code, _, err = _cli(retrieval_main, argv, capsys)
    assert code == 2 and err.startswith(f"error: {queries}:2: ") and len(err.strip().splitlines()) == 1, err


def test_a_file_swapped_for_a_link_after_the_scan_is_not_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35, item 2: confinement is checked on the file actually opened, not only when the folder is
    scanned. Between the scan and the reads, an allowed file is replaced by a link to a file outside."""
    from indexer import pipeline
    from indexer.sources import confine
    from indexer.work import WorkItem, decode_asset

    folder, outside = tmp_path / "media", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "note.txt").write_text("a harmless note")
    (folder / "kept.txt").write_text("stays as it was")
    (outside / "secret.txt").write_text("the neighbour's secret")

    def swap_after(found, roots=None):
        confined = confine(found, roots)
        (folder / "note.txt").unlink()
        (folder / "note.txt").symlink_to(outside / "secret.txt")
        return confined

    monkeypatch.setattr(pipeline, "confine", swap_after)
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url).run(folder)
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    assert "outside the allowed folders (it changed after the scan); refused" in reasons["note.txt"]
    assert summary.assets == {"text": 1}
    hits = SearchEngine.open(url).search(text="the neighbour's secret", k=5).hits
    assert [h.key for h in hits] == ["kept"] and all("secret" not in (h.text or "") for h in hits)

    # the decode step checks too (the hash step ran before a swap that comes later)
    spec = next(a for item in confine(scan(folder)).items for a in item.assets.values())
    (folder / "kept.txt").unlink()
    (folder / "kept.txt").symlink_to(outside / "secret.txt")
    spec.within = (str(folder.resolve()),)
    decoded = decode_asset(WorkItem(1, spec, None), 16000)
    assert decoded.value is None and "outside the allowed folders" in str(decoded.error)


def test_numpy_integers_are_whole_numbers(collection: dict[str, Any]) -> None:
    hits = collection["engine"].search(text="seven", k=np.int64(3), weights={"text": np.float32(0.5)}).hits
    assert len(hits) == 3


def test_a_file_that_is_not_a_checkpoint_is_refused_without_advising_to_delete_it(tmp_path: Path) -> None:
    from retrieval.fusion.checkpoint import FusionCheckpoint

    notes = tmp_path / "my-notes.safetensors"
    notes.write_text("my own notes, not a model")
    with pytest.raises(CorruptArtifactError) as caught:
        FusionCheckpoint.load(notes)
    assert "not a fusion checkpoint" in str(caught.value) and "delete" not in str(caught.value)


def tiny_checkpoint(folder: Path) -> Path:
    from retrieval.fusion.checkpoint import FusionCheckpoint
    from retrieval.fusion.modules import GatedNet
    from retrieval.profiles import Field

    module = GatedNet([4, 6], out_dim=8, hidden=16).eval()
    checkpoint = FusionCheckpoint("gated", [Field("image", "a"), Field("audio", "b")], [4, 6], module, None, {}, None)
    return checkpoint.save(folder / "tiny.safetensors")


def test_a_checkpoint_of_the_wrong_shapes_is_one_line(tmp_path: Path) -> None:
    from retrieval.fusion.checkpoint import FusionCheckpoint
    from storage.artifacts import load_arrays, save_arrays

    path = tiny_checkpoint(tmp_path)
    arrays, header = load_arrays(path)
    save_arrays(path, {k: (v[..., :1] if k.startswith("module.") else v) for k, v in arrays.items()}, header)
    with pytest.raises(CorruptArtifactError) as caught:
        FusionCheckpoint.load(path)
    message = str(caught.value)
    assert "\n" not in message and "size mismatch" in message and "more)" in message, message


def test_a_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from retrieval.fusion.checkpoint import FusionCheckpoint
    from storage import artifacts

    checkpoint = FusionCheckpoint.load(tiny_checkpoint(tmp_path))

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts, "write_atomic", full)
    with pytest.raises(StorageError, match=r"cannot write the checkpoint .*No space left on device; nothing was saved"):
        checkpoint.save(tmp_path / "new.safetensors")
    assert not (tmp_path / "new.safetensors").exists()


def test_control_characters_from_a_collection_are_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Probe cases 25-26: a file name, key or metadata value carrying ESC sequences (clear the screen, set the
    window title) or a newline (a forged report line) is printed escaped by the indexer, `status` and
    `search`, never sent raw to the terminal."""
    source = tmp_path / "src"
    source.mkdir()
    hostile = "key\x1b[2J\x1b]0;TITLE\x07\u202e"
    (source / f"{hostile}.txt").write_text("the digit seven", encoding="utf-8")
    (source / "bad\x1b[31mRED\nall fine.png").write_bytes(b"not a png")
    url = f"sqlite:///{tmp_path}/c.db"
    assert indexer_main([str(source), "--db", url, "--quiet"]) == 0
    assert indexer_main(["status", "--db", url]) == 0
    assert retrieval_main(["search", "--db", url, "--text", "seven", "--strategy", "late"]) == 0
    printed = capsys.readouterr()
    shown = printed.out + printed.err
    for raw in ("\x1b", "\x07", "\u202e", "\nall fine.png"):
        assert raw not in shown, repr(raw)
    assert "bad\\x1b[31mRED\\nall fine.png" in shown  # skipped, named as it is
    assert "key\\x1b[2J\\x1b]0;TITLE\\x07\\u202e" in shown  # the search result's key
