"""The Streamlit UI through streamlit.testing's AppTest: every page and the main flows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import mnist_image, recording, require_datasets
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from indexer.demo import DemoSpec, index_demo

    require_datasets()
    folder = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{folder}/demo.db"
    index_demo(url, folder / "digits", spec=DemoSpec(limit=200))
    return {"url": url, "queries": str(folder / "digits" / "queries.jsonl"), "root": str(folder)}


@pytest.fixture
def app(demo: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RETRIEVAL_DB", demo["url"])
    monkeypatch.setenv("RETRIEVAL_QUERIES", demo["queries"])
    monkeypatch.setenv("RETRIEVAL_ROOTS", demo["root"])
    return AppTest.from_file(APP, default_timeout=180).run()


def upload(at: AppTest, key: str, path: Path, mime: str) -> None:
    at.file_uploader(key=key).set_value((path.name, path.read_bytes(), mime))


def method_headers(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader if s.value != "How the methods differ"]


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_empty_query_explains_what_to_do(app: AppTest) -> None:
    assert_clean(app)
    assert "any mix works" in app.info[0].value


@pytest.mark.parametrize("modalities", [("text",), ("image",), ("audio",), ("text", "image", "audio")])
def test_search_shows_a_column_per_method(app: AppTest, modalities: tuple[str, ...]) -> None:
    if "text" in modalities:
        app.text_input(key="query_text").set_value("the digit three")
    if "image" in modalities:
        upload(app, "query_image", mnist_image(3), "image/png")
    if "audio" in modalities:
        upload(app, "query_audio", recording(3), "audio/wav")
    app.run()
    assert_clean(app)
    assert method_headers(app) == ["late", "early"]
    assert app.caption[0].value.startswith("Searched 2 method(s) in")
    assert any(b.label == "Search with this item" for b in app.button)
    assert app.get("arrow_data_frame") or app.dataframe  # the overlap table


def test_several_methods_and_an_untrained_one(app: AppTest) -> None:
    app.sidebar.multiselect(key="methods").set_value(["late", "early", "hybrid", "gated"])
    app.text_input(key="query_text").set_value("seven").run()
    assert_clean(app)
    assert method_headers(app) == ["late", "early", "hybrid", "gated"]
    assert any("train it first" in w.value for w in app.warning)


def test_bad_upload_is_a_message_not_a_traceback(app: AppTest) -> None:
    app.file_uploader(key="query_image").set_value(("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")).run()
    assert_clean(app)
    assert "cannot be used" in app.error[0].value and "image" in app.error[0].value


def test_query_by_example(app: AppTest) -> None:
    app.text_input(key="query_text").set_value("five").run()
    button = next(b for b in app.button if b.label == "Search with this item")
    button.click().run()
    assert_clean(app)
    assert any("Searching with item" in i.value for i in app.info)


def test_evaluate_page(app: AppTest) -> None:
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.button(key="eval_run").click().run()
    assert_clean(app)
    assert app.dataframe and "ndcg@10" in next(s.value for s in app.selectbox if s.key == "eval_metric")


def test_index_page_indexes_and_trains(app: AppTest, demo: dict[str, str], tmp_path: Path) -> None:
    folder = Path(demo["root"]) / "upload-me"
    folder.mkdir(exist_ok=True)
    shutil.copy(mnist_image(1), folder / "one.png")
    (folder / "bad.png").write_bytes(b"nope")
    app.sidebar.radio(key="page").set_value("Index").run()
    app.text_input(key="index_path").set_value(str(folder))
    app.text_input(key="index_collection").set_value("mine")
    app.button(key="index_run").click().run()
    assert_clean(app)
    assert app.dataframe, "skipped files are listed"
    app.text_input(key="index_path").set_value("/etc")
    app.button(key="index_run").click().run()
    assert "outside the allowed folders" in app.error[0].value
    app.slider(key="train_epochs").set_value(2)
    app.button(key="train_run").click().run()
    assert_clean(app)
    assert "Trained on" in app.success[0].value


def test_item_page(app: AppTest) -> None:
    app.sidebar.radio(key="page").set_value("Item").run()
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["Nearest neighbours"]


def test_oversized_upload_is_refused_in_the_page(app: AppTest) -> None:
    app.file_uploader(key="query_image").set_value(("big.png", b"\x89PNG" + b"0" * (21 * 1024 * 1024), "image/png"))
    app.run()
    assert_clean(app)
    assert "over the limit of 20 MB" in app.error[0].value


def test_ui_searches_while_an_indexer_writes_the_database(app: AppTest, demo: dict[str, str]) -> None:
    import threading

    from indexer.demo import DemoSpec, index_demo

    errors: list[BaseException] = []

    def write() -> None:
        try:
            index_demo(demo["url"], Path(demo["root"]) / "busy", spec=DemoSpec(limit=150, seed=1), collection="busy")
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    for text in ("one", "two", "three", "four"):
        app.text_input(key="query_text").set_value(text).run()
        assert_clean(app)
        assert method_headers(app) == ["late", "early"]
    writer.join()
    assert not errors, errors
