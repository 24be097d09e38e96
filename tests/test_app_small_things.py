"""Issue 37, item 8, through AppTest: the query kept across pages, and example queries for the demo."""

from __future__ import annotations

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
