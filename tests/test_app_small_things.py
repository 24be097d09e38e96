"""Issue 37, item 8, through AppTest: the query kept across pages, and example queries for the demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import assert_clean, method_headers


def test_the_typed_query_survives_a_page_switch(app: AppTest) -> None:
    """Search -> Strategies -> Search lost the text: Streamlit drops a widget's state on a page without it."""
    app.text_input(key="query_text").input("the digit three").run()
    assert method_headers(app) == ["late", "early"]
    app.sidebar.radio(key="page").set_value("Strategies").run()
    app.sidebar.radio(key="page").set_value("Search").run()
    assert_clean(app)
    assert app.text_input(key="query_text").value == "the digit three"
    assert method_headers(app) == ["late", "early"], "the text is still the query"
    app.text_input(key="query_text").input("").run()
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.sidebar.radio(key="page").set_value("Search").run()
    assert app.text_input(key="query_text").value == "", "an emptied box stays empty"


def test_the_demo_offers_example_queries_that_fill_the_box(app: AppTest) -> None:
    """An empty Search page on the demo offered nothing to try: a few of its labelled queries' texts are now
    buttons; one fills the Text box and searches."""
    examples = [b for b in app.button if str(b.key).startswith("example_query_")]
    assert 2 <= len(examples) <= 4, [b.label for b in app.button]
    label = examples[0].label
    examples[0].click().run()
    assert_clean(app)
    assert app.text_input(key="query_text").value == label.replace("\\", "")
    assert method_headers(app) == ["late", "early"]
    assert not [b for b in app.button if str(b.key).startswith("example_query_")], "shown only while empty"


def test_no_examples_from_another_collections_queries(
    app: AppTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A queries file whose queries name none of this collection's items is another collection's: no examples
    from it (the demo's default file stays put when a person indexes their own media)."""
    other = tmp_path / "queries.jsonl"
    other.write_text(
        json.dumps({"id": "q1", "text": "elsewhere", "exclude": "not-here"})
        + "\n"
        + json.dumps({"id": "q2", "text": "somewhere", "exclude": "not-here-either"})
        + "\n"
    )
    monkeypatch.setenv("RETRIEVAL_QUERIES", str(other))
    app.run()
    assert not [b for b in app.button if str(b.key).startswith("example_query_")]


def test_example_texts_prefer_phrases_and_show_as_text(tmp_path: Path) -> None:
    """Distinct text-only queries, phrases before bare digits; a file's markdown is escaped in the label."""
    from ui.examples import example_texts

    rows = [
        {"id": "a", "text": "4", "exclude": "k1"},
        {"id": "b", "text": "*bold* ![x](http://h/p.png)", "exclude": "k2"},
        {"id": "c", "text": "*bold* ![x](http://h/p.png)", "exclude": "k3"},
        {"id": "d", "text": "with an image", "image": "x.png", "exclude": "k4"},
    ]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert example_texts(path, {"k1"}) == ["*bold* ![x](http://h/p.png)", "4"]
    assert example_texts(path, {"elsewhere"}) == []
    assert example_texts(tmp_path / "missing.jsonl", {"k1"}) == []

    def page(path: str) -> None:
        from pathlib import Path

        from ui import examples

        examples.render(Path(path), {"k1"})

    at = AppTest.from_function(page, args=(str(path),)).run()
    label = at.button(key="example_query_0").label
    assert label.startswith("\\*bold\\* \\!\\[x\\]"), label
