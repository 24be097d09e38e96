"""The Streamlit UI through streamlit.testing's AppTest: every page and the main flows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from conftest import APP, mnist_image, recording
from streamlit.testing.v1 import AppTest


def rendered(markdown: str) -> str:
    """What a markdown string shows once its backslash escapes are read (`ui.plain.md` escapes collection
    text)."""
    return re.sub(r"\\(.)", r"\1", markdown)


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
    assert any(c.value.startswith("Searched 2 method(s) in") for c in app.caption)
    assert any(b.label == "Search with this item" for b in app.button)
    assert app.table[0].value.index.tolist() == ["late vs early"]  # the overlap table, one row per pair


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


@pytest.mark.slow
def test_evaluate_page(app: AppTest) -> None:
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.button(key="eval_run").click().run()
    assert_clean(app)
    assert app.dataframe and "ndcg@10" in next(s.value for s in app.selectbox if s.key == "eval_metric")


@pytest.mark.writes_demo
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
    assert "no item made" in app.dataframe[0].value["reason"][0], "bad.png makes no empty item (issue 37)"
    summary = next(m.value for m in app.markdown if m.value.startswith("**mine**"))
    assert "1 item (1 image)" in summary and "{" not in summary, "a sentence, not a Python dict"
    app.text_input(key="index_path").set_value("/etc")
    app.button(key="index_run").click().run()
    assert "outside the allowed folders" in app.error[0].value
    app.selectbox(key="train_strategy").set_value("gated")
    app.slider(key="train_epochs").set_value(2)
    app.button(key="train_run").click().run()
    assert_clean(app)
    assert "Trained on" in app.success[0].value
    app.sidebar.multiselect(key="methods").set_value(["early", "gated"])
    app.sidebar.radio(key="page").set_value("Search").run()
    app.text_input(key="query_text").set_value("seven").run()
    assert_clean(app)
    captions = [c.value for c in app.caption if " ms · " in c.value]
    assert "trained model" in captions[1] and "blend" not in captions[1], captions
    assert "trained model" not in captions[0], "early's own caption"


def test_item_page(app: AppTest) -> None:
    app.sidebar.radio(key="page").set_value("Item").run()
    assert_clean(app)
    assert [s.value for s in app.subheader] == ["Nearest neighbours"]
    assert any("the item itself, left out, is usually #1" in c.value for c in app.caption), "why ranks start at 2"


def test_oversized_upload_is_refused_in_the_page(app: AppTest) -> None:
    app.file_uploader(key="query_image").set_value(("big.png", b"\x89PNG" + b"0" * (21 * 1024 * 1024), "image/png"))
    app.run()
    assert_clean(app)
    assert "over the limit of 20 MB" in app.error[0].value


@pytest.mark.writes_demo
def test_ui_searches_while_an_indexer_writes_the_database(app: AppTest, demo: dict[str, str]) -> None:
    import threading

    from indexer.demo import DemoSpec, index_demo

    errors: list[BaseException] = []

    def write() -> None:
        try:
            index_demo(
                demo["url"],
                Path(demo["root"]) / "busy",
                spec=DemoSpec(limit=150, seed=1),
                collection="busy",
                train=False,
            )
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


# -- issue 19 -------------------------------------------------------------------------------------------------


def contents(url: str, collection: str) -> dict[str, set[str]]:
    """Each item's key and the modalities it has indexed (status ok)."""
    from storage import Database
    from storage.models import Asset, Collection, Item

    db = Database(url)
    with db.session() as session:
        rows = (
            session.query(Item.key, Asset.modality)
            .join(Collection, Item.collection_id == Collection.id)
            .outerjoin(Asset, (Asset.item_id == Item.id) & (Asset.status == "ok"))
            .filter(Collection.name == collection)
            .all()
        )
    out: dict[str, set[str]] = {}
    for key, modality in rows:
        out.setdefault(key, set()).update({modality} if modality else set())
    return out


def ranked(app: AppTest, method: str) -> list[str]:
    """A method's result ids in rank order, read from its cards' buttons."""
    prefix = f"example-{method}-"
    return [b.key.removeprefix(prefix) for b in app.button if b.key and b.key.startswith(prefix)]


def on_index_page(app: AppTest) -> AppTest:
    return app.sidebar.radio(key="page").set_value("Index").run()


@pytest.mark.writes_demo
def test_reindexing_the_demo_from_the_index_page_loses_nothing(app: AppTest, demo: dict[str, str]) -> None:
    """Item 1: the demo's own manifest points into the shared datasets, an allowed folder."""
    before = contents(demo["url"], "default")
    on_index_page(app)
    app.text_input(key="index_path").set_value(demo["manifest"])
    app.text_input(key="index_collection").set_value("default")
    app.checkbox(key="index_prune").check()
    app.button(key="index_run").click().run()
    assert_clean(app)
    assert contents(demo["url"], "default") == before, "an item or one of its media was lost"
    assert not any("skipped" in w.value for w in app.warning), [w.value for w in app.warning]
    assert any("adds to the existing collection" in w.value for w in app.warning)


@pytest.mark.writes_demo
def test_refused_files_are_reported_and_never_pruned(app: AppTest, demo: dict[str, str], tmp_path: Path) -> None:
    """Item 1: a file outside the allowed folders is a failure to read, not a removal; removal needs a yes."""
    folder = Path(demo["root"]) / "refusals"
    folder.mkdir(exist_ok=True)
    outside = tmp_path / "outside.png"
    shutil.copy(mnist_image(4), outside)
    shutil.copy(mnist_image(5), folder / "five.png")
    shutil.copy(mnist_image(6), folder / "six.png")
    manifest = folder / "manifest.csv"
    manifest.write_text(f"id,image\nfour,{outside}\nfive,five.png\nsix,six.png\n")
    from indexer import Indexer

    Indexer(demo["url"], "refusals").run(manifest, roots=[tmp_path])  # indexed once while that folder was allowed
    assert set(contents(demo["url"], "refusals")) == {"four", "five", "six"}
    manifest.write_text(f"id,image\nfour,{outside}\nfive,five.png\n")  # six is no longer listed
    on_index_page(app)
    app.text_input(key="index_path").set_value(str(manifest))
    app.text_input(key="index_collection").set_value("refusals")
    app.checkbox(key="index_prune").check()
    app.button(key="index_run").click().run()
    assert_clean(app)
    assert any("1 file(s) were skipped" in w.value for w in app.warning)
    reasons = app.dataframe[0].value["reason"].tolist()
    assert reasons == ["outside the allowed folders; refused (add its folder to RETRIEVAL_ROOTS to allow it)"]
    assert set(contents(demo["url"], "refusals")) == {"four", "five", "six"}, "nothing removed without a yes"
    assert any("1 item(s) of **refusals** are no longer listed" in w.value for w in app.warning)
    app.button(key="index_confirm_removal").click().run()
    assert_clean(app)
    assert set(contents(demo["url"], "refusals")) == {"four", "five"}, "only the unlisted item goes; four stays"


@pytest.mark.writes_demo
def test_new_media_goes_into_a_new_collection_named_after_its_folder(app: AppTest, demo: dict[str, str]) -> None:
    """Item 2."""
    before = contents(demo["url"], "default")
    folder = Path(demo["root"]) / "holiday-photos"
    folder.mkdir(exist_ok=True)
    shutil.copy(mnist_image(2), folder / "two.png")
    on_index_page(app)
    assert app.text_input(key="index_collection").value == "", "no collection pre-filled"
    said = " ".join(rendered(c.value) for c in app.caption)
    assert "Creates the new collection" not in said and "named after the folder or manifest" in said, said
    app.text_input(key="index_path").set_value(str(folder)).run()
    assert "Creates the new collection **holiday-photos**" in rendered([c.value for c in app.caption][1])
    app.button(key="index_run").click().run()
    assert_clean(app)
    assert set(contents(demo["url"], "holiday-photos")) == {"two"}
    assert contents(demo["url"], "default") == before


@pytest.mark.writes_demo
def test_tied_scores_are_not_reported_as_movement(app: AppTest, demo: dict[str, str]) -> None:
    """Item 3: items with the same text score the same under late and early; neither moved them."""
    from indexer import Indexer

    folder = Path(demo["root"]) / "ties"
    folder.mkdir(exist_ok=True)
    for n in range(12):
        (folder / f"t{n:02d}.txt").write_text("the digit seven")
    Indexer(demo["url"], "ties").run(folder)
    from ui.state import collections

    collections.clear()  # the sidebar's list is cached for 30 s
    app.run()
    app.sidebar.selectbox(key="collection").set_value("ties").run()
    app.text_input(key="query_text").set_value("the digit seven").run()
    assert_clean(app)
    summary = next(m.value for m in app.markdown if "keeps" in m.value)
    assert "promoted 0 and demoted 0" in summary and "Kendall" not in summary, summary
    assert not any("▲" in m.value or "▼" in m.value for m in [*app.markdown, *app.html]), "the cards say no move"
    table = app.table[0].value
    assert table["Kendall's tau"].tolist() == ["undefined"], "every shared item is tied: tau is undefined"
    why = next(c.value for c in app.caption if c.value.startswith("Kendall's tau compares"))
    assert "every shared item the same score" in why, "the reason it is undefined here (walkthrough 2, #5)"
    assert ranked(app, "late") == ranked(app, "early"), "both methods break the tie the same way"


def chart_rows(app: AppTest) -> list[dict]:
    """The rows of the page's bump chart (its vega-lite datasets)."""
    import json

    import pyarrow as pa

    chart = app.get("vega_lite_chart")[0].proto
    rows = []
    for dataset in chart.datasets:
        rows += pa.ipc.open_stream(dataset.data.data).read_all().to_pylist()
    if chart.data.data:
        rows += pa.ipc.open_stream(chart.data.data).read_all().to_pylist()
    for values in json.loads(chart.spec).get("datasets", {}).values():
        rows += values  # data left inline in the spec
    assert rows, "no data in the chart"
    return rows


def test_bump_chart_keeps_every_rank_of_every_method(app: AppTest) -> None:
    """Item 4: three methods, k = 8 (up to 24 items): every method's ranks 1..8 are drawn, labelled in a dark
    colour instead of a legend that gets cut off."""
    import json

    app.sidebar.multiselect(key="methods").set_value(["late", "early", "hybrid"])
    app.sidebar.slider(key="k").set_value(8)
    upload(app, "query_image", mnist_image(3), "image/png")
    app.text_input(key="query_text").set_value("a recording by george").run()
    assert_clean(app)
    rows = chart_rows(app)
    for method in ("late", "early", "hybrid"):
        assert sorted(r["rank"] for r in rows if r["method"] == method) == list(range(1, 9)), method
    spec = json.loads(app.get("vega_lite_chart")[0].proto.spec)
    line, *labels = spec["layer"]  # labels left of the first method, right of the last
    assert line["encoding"]["color"]["legend"] is None, "no legend to cut off: each line is labelled"
    assert all(layer["encoding"]["color"] == {"value": "#222"} for layer in labels), "dark, whatever the line's"


def test_query_by_example_shows_the_example_and_gives_way_to_typing(app: AppTest) -> None:
    """Item 5: the example is the query on show; typing afterwards searches with the text."""
    app.text_input(key="query_text").set_value("five").run()
    first = next(b for b in app.button if b.label == "Search with this item")
    first.click().run()
    assert_clean(app)
    shown = [m.value for m in app.markdown if m.value.startswith("**Query: the item")]
    assert shown, "the example item is shown as the query"
    assert app.get("image"), "with its thumbnail"
    app.text_input(key="query_text").set_value("seven").run()
    assert_clean(app)
    assert not any(m.value.startswith("**Query: the item") for m in app.markdown), "typing ends the example"
    assert any(m.value == "> seven" for m in app.markdown), "the typed text is the query"
    first = next(b for b in app.button if b.label == "Search with this item")
    first.click().run()
    app.button(key="clear_example").click().run()
    assert any(m.value == "> seven" for m in app.markdown), "the way back restores one's own query"


def test_an_empty_audio_upload_gets_a_message(app: AppTest) -> None:
    """Item 6."""
    app.file_uploader(key="query_audio").set_value(("silence.wav", b"", "audio/wav")).run()
    assert_clean(app)
    assert (
        app.error
        and "empty (0 bytes)" in rendered(app.error[0].value)
        and "silence.wav" in rendered(app.error[0].value)
    )


@pytest.mark.slow
def test_evaluation_names_the_best_method_and_significance(app: AppTest) -> None:
    """Item 7: progress by stage, p-values people can read, the best method marked."""
    app.sidebar.multiselect(key="methods").set_value(["late", "early", "hybrid"])
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.button(key="eval_run").click().run()
    assert_clean(app)
    assert app.get("progress"), "a progress bar per stage"
    # "Best" only when significantly better than every other method, else "Highest" (issue 37, item 5)
    best = next(m.value for m in app.markdown if m.value.startswith(("Best on ndcg@10", "Highest on ndcg@10")))
    assert any(f"**{name}**" in best for name in ("late", "early", "hybrid")), best
    table = app.dataframe[-1].value
    assert set(table["significant (p < 0.05)"]) <= {"yes", "no"} and len(table) == 2
    assert all(p == "< 0.001" or float(p) > 0 for p in table["p-value"]), "no p-value prints as 0"
    app.selectbox(key="eval_metric").set_value("mrr").run()
    assert any(m.value.startswith(("Best on mrr", "Highest on mrr")) for m in app.markdown), "results survive"


def test_untrained_method_points_to_the_train_form(app: AppTest) -> None:
    """Item 8: the Train form on the Index page, not a CLI command."""
    app.sidebar.multiselect(key="methods").set_value(["late", "cross_attention"])
    app.text_input(key="query_text").set_value("seven").run()
    warning = next(w.value for w in app.warning if "train it first" in w.value)
    assert "Index page" in warning and "python -m" not in warning, warning
    app.button(key="train-cross_attention").click().run()
    assert app.sidebar.radio(key="page").value == "Index"


def test_uploads_survive_a_page_switch(app: AppTest) -> None:
    """Item 8."""
    upload(app, "query_image", mnist_image(3), "image/png")
    app.run()
    assert method_headers(app) == ["late", "early"]
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.sidebar.radio(key="page").set_value("Search").run()
    assert_clean(app)
    assert method_headers(app) == ["late", "early"], "the image is still the query"
    assert any("uploaded before you changed page" in c.value for c in app.caption)
    app.button(key="forget_query_image").click().run()
    assert "any mix works" in app.info[0].value


def test_the_page_shows_the_query_and_consistent_numbers(app: AppTest) -> None:
    """Item 8: the query above the results; overlap as a count matching the summary; readable summaries."""
    upload(app, "query_image", mnist_image(3), "image/png")
    app.text_input(key="query_text").set_value("three").run()
    assert_clean(app)
    assert any(m.value == "> three" for m in app.markdown)
    assert app.get("image"), "the uploaded image is shown"
    summary = next(m.value for m in app.markdown if "keeps" in m.value)
    shared = app.table[0].value["shared in top 10"].tolist()[0]
    assert f"keeps {shared.split(' of ')[0]} of late's top 10" in summary, (shared, summary)
    on_index_page(app)
    assert "manifest.csv" in app.text_input(key="index_path").proto.placeholder, "an example of a path to index"


def test_item_page_neighbours_are_cards_that_open(app: AppTest) -> None:
    """Item 8: thumbnails and a way to open each neighbour."""
    app.sidebar.radio(key="page").set_value("Item").run()
    assert_clean(app)
    first = app.selectbox(key="item_key").value
    buttons = [b for b in app.button if b.label == "Open this item"]
    assert len(buttons) >= 10 and app.get("image")
    buttons[0].click().run()
    assert_clean(app)
    assert app.selectbox(key="item_key").value != first


def test_the_queries_file_is_read_at_each_run(demo: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """RETRIEVAL_QUERIES is read when the Evaluate page renders: read once at import, the first app in a
    process decided for every later one (a fresh checkout without data/digits then had no Run button)."""

    def evaluate_page(queries: str) -> AppTest:
        monkeypatch.setenv("RETRIEVAL_QUERIES", queries)
        at = AppTest.from_file(APP, default_timeout=180).run()
        return at.sidebar.radio(key="page").set_value("Evaluate").run()

    monkeypatch.setenv("RETRIEVAL_DB", demo["url"])
    missing = evaluate_page(str(Path(demo["root"]) / "no-such-queries.jsonl"))
    assert any("Upload a JSONL file" in i.value for i in missing.info)
    assert not [b for b in missing.button if b.key == "eval_run"]
    present = evaluate_page(demo["queries"])
    assert [b.label for b in present.button if b.key == "eval_run"] == ["Run the evaluation"]


def test_channel_weights_are_a_sidebar_choice_that_the_methods_follow(app: AppTest, demo: dict[str, str]) -> None:
    """Adaptive (the default) or fixed channel weights: late and early rank as the API does with that
    choice, the caption names it, and the choice changes a ranking (an image of a 3 with a recording of a 7)."""
    from retrieval import SearchEngine

    upload(app, "query_image", mnist_image(3), "image/png")
    upload(app, "query_audio", recording(7), "audio/wav")
    app.run()
    engine = SearchEngine.open(demo["url"])
    query = {"image": mnist_image(3), "audio": recording(7)}
    seen = {}
    for weighting in ("adaptive", "fixed"):
        app.sidebar.selectbox(key="weighting").set_value(weighting).run()
        assert_clean(app)
        for method in ("late", "early"):
            searched = engine.search(strategy=method, weighting=weighting, **query)
            expected = [str(h.item_id) for h in searched.hits]
            assert ranked(app, method) == expected, (method, weighting)
            seen[(method, weighting)] = expected
        assert sum(f"weighting={weighting}" in c.value for c in app.caption) == 2
    from conftest import REAL

    if not REAL:  # a synthetic recording is a tone, screened out either way: both rank the image alone
        return
    assert seen[("late", "adaptive")] != seen[("late", "fixed")]
