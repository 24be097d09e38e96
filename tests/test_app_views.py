"""Issue 37, item 7, through AppTest and the page's own HTML: results a person can look at (a larger picture
and the text in the grid, a panel with a player made for one item), the collection's text escaped."""

from __future__ import annotations

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_app import assert_clean, rendered

from retrieval.results import Hit, SearchResult

HOSTILE = "seven <img src='http://pixel.test/p.png'> ![t](http://pixel.test/t.png) *bold*"


def hostile_hit(tmp_path: Path) -> Hit:
    from PIL import Image

    picture = tmp_path / "seven.png"
    Image.new("L", (28, 28), 200).save(picture)
    return Hit(
        rank=3,
        item_id=7,
        key="<b>evil</b>",
        score=0.5,
        contributions={},
        metadata={"note": "[m](http://pixel.test/m.png)"},
        assets={"image": str(picture)},
        text=HOSTILE,
        transcript={"text": "<script>alert(1)</script>", "language": "en", "confidence": 0.9, "model": "m"},
    )


def test_a_grid_cell_shows_a_larger_picture_and_its_text_escaped(tmp_path: Path) -> None:
    """Pointing at a cell (or Tab to it) shows a pop-up: a 112 px picture (the cell's is 32 px), the text and
    the transcript, as the characters they are; no tag of the collection's reaches the page."""
    from ui.compare_view import grid_html

    hit = hostile_hit(tmp_path)
    page = grid_html({"late": SearchResult("late", [hit], 0.0, {})}, None, 1)
    popup = re.search(r'<div class="cmp-pop[^"]*" role="tooltip">(.*?)</div></td>', page, re.S)
    assert popup, page
    assert re.search(r'<img src="data:image/png;base64,[^"]+" alt="" width="112" height="112">', popup[1])
    assert "seven &lt;img src=&#x27;http://pixel.test/p.png&#x27;&gt; ![t](http://pixel.test/t.png) *bold*" in popup[1]
    assert "heard: “&lt;script&gt;alert(1)&lt;/script&gt;”" in popup[1]
    assert "<img src='http" not in page and "<script>" not in page
    assert ".cmp-cell:hover .cmp-pop,.cmp-cell:focus .cmp-pop{display:block}" in page, "hover and keyboard focus"


def test_a_pop_up_names_the_item_and_what_it_holds() -> None:
    """Walkthrough 4, #11: a recording-only item's pop-up said only "Enter: look closer at it, below"."""
    from ui.detail import popup_html

    clip = Hit(
        rank=1, item_id=3, key="7-george-<7>", score=0.5, contributions={}, metadata={}, assets={"audio": "x.wav"}
    )
    assert popup_html(clip, up=False, end=False).startswith(
        '<div class="cmp-pop" role="tooltip"><div><b>7-george-&lt;7&gt;</b> · audio</div>'
    )


def test_a_card_is_one_element_with_the_collection_s_text_escaped(tmp_path: Path) -> None:
    from ui.cards import card_html

    """The card's key, metadata (on hover), text and transcript, escaped, in one HTML element."""
    page = card_html(hostile_hit(tmp_path), "up 2")
    assert '<b>3. &lt;b&gt;evil&lt;/b&gt;</b> <span style="color:#2b7a0b">▲2</span>' in page, "the grid's own mark"
    assert 'title="note=[m](http://pixel.test/m.png)"' in page
    assert ">seven &lt;img src=&#x27;http://pixel.test/p.png&#x27;&gt; ![t](http://pixel.test/t.png) *bold*<" in page
    assert "<img src='http" not in page and "<script>" not in page


def test_looking_closer_makes_one_player_for_the_chosen_result(app: AppTest, demo: dict[str, str]) -> None:
    """Issue 37, item 7: the cards made an audio player each (50 with five methods, each fetching its clip);
    now none is made until a result is chosen, and then one, for that result, beside its large picture, its
    text shown as text and a button that searches with it."""
    from retrieval import SearchEngine

    app.text_input(key="query_text").set_value("the digit three").run()
    assert_clean(app)
    assert len(app.get("audio")) == 0, "no player until a result is chosen"
    box = app.selectbox(key="look_closer")
    assert box.value is None and box.label == "Look closer at a result"
    engine = SearchEngine.open(demo["url"])
    by_key = {key: item_id for item_id, key in engine.catalogue.item_keys().items()}
    offered = [by_key[label.rsplit(" (", 1)[0]] for label in box.options]
    items = engine.catalogue.items(offered)
    place, chosen = next(
        (n, i)
        for n, i in enumerate(offered)
        if any(a.modality == "audio" and a.status == "ok" for a in items[i].assets)
    )
    box.select_index(place).run()
    assert_clean(app)
    assert len(app.get("audio")) == 1, "one player, for the chosen result"
    item = items[chosen]
    assert any(rendered(m.value).startswith(f"**{item.key}**: ") for m in app.markdown), "the panel names it"
    text = next((a.preview for a in item.assets if a.modality == "text" and a.status == "ok"), None)
    if text:
        assert text in [t.value for t in app.text], "the text is shown as text"
    assert any(h.value.startswith('<img src="data:image/png;base64,') and 'width="224"' in h.value for h in app.html)
    app.button(key=f"look-example-{chosen}").click().run()
    assert any(rendered(m.value).startswith(f"**Query: the item {item.key}**") for m in app.markdown)


def test_a_result_s_places_say_which_methods_did_not_rank_it() -> None:
    """The walkthrough's finding: "7-nicolas-6: late #1, gated #7", with cross_attention silently missing."""
    from retrieval.results import Hit
    from ui.detail import shown_items

    def hit(rank: int, item_id: int) -> Hit:
        return Hit(rank, item_id, f"k{item_id}", 1.0 / rank, {}, {}, {})

    places = shown_items({"late": [hit(1, 7), hit(2, 8)], "gated": [hit(1, 8), hit(2, 9)]})
    assert places[7][1] == ["late #1", "not in gated's top 2"]
    assert places[8][1] == ["gated #1", "late #2"]
    assert places[9][1] == ["gated #2", "not in late's top 2"]


def test_the_index_page_keeps_the_chosen_strategy_across_pages(app: AppTest) -> None:
    """The walkthrough's finding: choose gated on the Index page, visit Search, come back: it was early again."""
    app.sidebar.radio(key="page").set_value("Index").run()
    app.selectbox(key="train_strategy").set_value("gated").run()
    app.sidebar.radio(key="page").set_value("Search").run()
    app.sidebar.radio(key="page").set_value("Index").run()
    assert app.selectbox(key="train_strategy").value == "gated"
