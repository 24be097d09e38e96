"""Issue 37, the second walkthrough's findings (a new user in Chromium), through AppTest where it suffices."""

from __future__ import annotations

import re

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest
from test_app import assert_clean

MORE_THAN_THREE_DECIMALS = re.compile(r"\d\.\d{4,}")


def shown_cells(element) -> pd.DataFrame:
    """A table's cells as the browser's grid draws them: a Styler's display values where it has one, else each
    value as text; but a missing value as the element's placeholder, "None" when it sets none, whatever the
    Styler says (Streamlit's grid draws a missing cell so; the walkthrough saw "None" in Chromium)."""
    data = element.proto.arrow_data
    values = element.value
    shown = values.astype(str)
    if data.HasField("styler"):
        shown = pa.ipc.open_stream(data.styler.display_values).read_all().to_pandas()
        shown.index, shown.columns = values.index, values.columns
    placeholder = element.proto.placeholder if element.proto.HasField("placeholder") else "None"
    return shown.mask(values.isna(), placeholder)


def unreadable(frame: pd.DataFrame) -> list[str]:
    """The cells that say "None"/"nan" or give a number to more than three decimals."""
    cells = [str(v) for v in frame.to_numpy().ravel()]
    return [c for c in cells if c in ("None", "nan", "NaN", "<NA>") or MORE_THAN_THREE_DECIMALS.search(c)]


@pytest.mark.slow
def test_strategies_and_evaluate_tables_show_three_decimals_and_dashes(app: AppTest) -> None:
    """#12: the Strategies table said "None" for a method's training time and Evaluate's read 0.857000."""
    app.sidebar.radio(key="page").set_value("Strategies").run()
    app.button(key="run_report").click().run()
    assert_clean(app)
    table = shown_cells(app.dataframe[0])
    print(table.to_string())
    assert "—" in set(table["training s"]), "late trains nothing: a dash"
    assert not unreadable(table), unreadable(table)
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.button(key="eval_run").click().run()
    assert_clean(app)
    for element in app.dataframe:
        shown = shown_cells(element)
        print(shown.to_string())
        assert not unreadable(shown), unreadable(shown)


def test_a_short_clip_s_length_is_said_beside_its_player(app: AppTest) -> None:
    """#20: the browser's player read 0:00 for a 0.37 s digit; the panel says the clip's length to the
    hundredth, as soundfile reads it."""
    from ui.detail import LOOK_KEY
    from ui.players import length_text

    app.session_state["compact_view"] = True
    app.text_input(key="query_text").set_value("the digit three").run()
    for n in range(10):
        app.selectbox(key=LOOK_KEY).select_index(n).run()
        if app.get("audio"):
            break
    assert_clean(app)
    assert app.get("audio"), "one of the first ten items has a clip"
    lengths = [c.value for c in app.caption if c.value.startswith("clip length ")]
    assert lengths and re.fullmatch(r"clip length \d+\.\d\d s", lengths[0]), lengths
    assert float(lengths[0].split()[2]) < 1.5, "the demo's digits are short"
    assert length_text(0.37) == "0.37 s" and length_text(12.44) == "12.4 s"


def test_the_index_page_suggests_a_path_without_filling_one_in(app: AppTest) -> None:
    """#20: the path box came filled with data/digits/manifest.csv, which read as a choice already made; now
    it is a placeholder, and Index with an empty box says what to do."""
    app.sidebar.radio(key="page").set_value("Index").run()
    box = app.text_input(key="index_path")
    assert box.value == "" and "manifest.csv" in box.proto.placeholder
    app.button(key="index_run").click().run()
    assert_clean(app)
    assert "Type the folder or manifest to index first" in app.error[0].value


def test_a_negative_term_is_drawn_below_zero_not_as_a_share() -> None:
    """#8: the cards drew |v| of each modality as a share of the bar, so a term that lowered the score looked
    like one that raised it, under a chart titled "Share of the score"."""
    import json

    from retrieval.results import Hit, SearchResult
    from ui.cards import contribution_bar
    from ui.explain import contribution_chart

    bar = contribution_bar({"text": 0.5, "image": -0.2})
    lowers = bar.split('class="lowers"')[1].split('class="raises"')[0]
    assert 'title="image -0.200"' in lowers and "text" not in lowers, bar
    assert "width:28.6%" in bar, "the negative side is 0.2 of 0.7 of the bar"
    assert 'class="lowers"' not in contribution_bar({"text": 0.5, "image": 0.2}), "no zero mark without a negative"
    hit = Hit(1, 1, "a", 0.3, {"text": 0.5, "image": -0.2}, {}, {})
    spec = json.dumps(contribution_chart(SearchResult("gated", [hit], 0.1)))
    assert "Share of the score" not in spec and "adds to the score" in spec
    assert '"mark": {"type": "rule"' in spec or '"type": "rule"' in spec, "a line at zero"


@pytest.mark.writes_demo
def test_gated_scores_keep_their_scale_when_a_weight_moves(demo: dict[str, str], tmp_path) -> None:
    """#1: gated's top score went 0.994 -> 2.809 when the text weight moved from 1.00 to 0.95: unequal weights
    fused each input alone and summed the vectors. They are averaged now, so the score stays a cosine's size;
    the ranking at equal weights is untouched (tests/golden)."""
    from conftest import mnist_image, recording
    from test_checkpoints import trained_twice

    from retrieval import SearchEngine
    from retrieval.results import Method, QueryInput

    trained_twice(demo["url"], tmp_path)
    engine = SearchEngine.open(demo["url"])
    query = QueryInput(text="the digit seven", image=mnist_image(7), audio=recording(7))
    tops = {}
    for text_weight in (1.0, 0.95, 0.5):
        method = Method("gated", "gated", {"screen": False}, {} if text_weight == 1.0 else {"text": text_weight})
        hits = engine.search_many(query, [method], k=10)["gated"].hits
        tops[text_weight] = hits[0].score
    print(f"\ngated's top score by text weight: {tops}")
    assert tops[1.0] <= 1.0 + 1e-4 and tops[0.95] <= 1.0 + 1e-4 and tops[0.5] <= 1.0 + 1e-4, tops
    assert abs(tops[0.95] - tops[1.0]) < 0.25, "a 5 % change of one weight moves the score a little, not 3x"


def test_each_method_says_what_its_score_means_in_grid_cards_and_item_page(app: AppTest) -> None:
    """#2: a score without a meaning (late 2.180 beside early 6.079): each method's rule, written once
    (`ui.scores`), is said beside the grid, in each column of cards and on the Item page."""
    from test_app import rendered

    from ui.scores import score_meaning

    late = score_meaning("late", {"normalisation": "zscore", "fusion": "sum"})
    early = score_meaning("early", {})
    assert "z-scored over the candidates" in late and "spread" in early
    assert "cosine between the query and the item in the space gated learned" in score_meaning("gated", {})
    assert "rank" in score_meaning("late", {"fusion": "rrf", "rrf_k": 60})
    app.text_input(key="query_text").set_value("the digit three").run()
    cards = [rendered(c.value) for c in app.caption if c.value.startswith("score: ")]
    assert cards == [f"score: {late}", f"score: {early}"], cards
    app.session_state["compact_view"] = True
    app.run()
    grid = " ".join(rendered(c.value) for c in app.caption)
    assert f"late score: {late}" in grid.replace("**", "") and f"early score: {early}" in grid.replace("**", "")
    app.sidebar.radio(key="page").set_value("Item").run()
    assert_clean(app)
    item = [rendered(c.value) for c in app.caption if c.value.startswith("score: ")]
    assert item == [f"score: {late}", f"score: {early}"], item


@pytest.mark.slow
def test_strategies_and_evaluate_measure_one_query_set_with_one_test(app: AppTest) -> None:
    """#11: Strategies took the first 10 queries of each kind and Evaluate all of them, so their numbers and
    p-values disagreed. Both now measure every query of the labelled file with the same randomisation test,
    say so, and agree on each method's nDCG@10 and on the p of late against early."""
    from test_app import rendered

    app.sidebar.radio(key="page").set_value("Strategies").run()
    app.button(key="run_report").click().run()
    assert_clean(app)
    report = app.session_state["strategy_report"]
    said = " ".join(rendered(c.value) for c in app.caption)
    assert f"Queries: all {report.queries['all']} of " in said and "Fisher" in said, said
    assert any("significantly better" in rendered(m.value) or "significant" in m.value for m in app.markdown)
    app.sidebar.radio(key="page").set_value("Evaluate").run()
    app.button(key="eval_run").click().run()
    assert_clean(app)
    evaluation = app.session_state["eval_result"]
    assert evaluation.queries["all"] == report.queries["all"], (evaluation.queries, report.queries)
    for method in ("late", "early"):
        assert evaluation.table[method]["all"]["ndcg@10"] == pytest.approx(
            report.evaluation.table[method]["all"]["ndcg@10"]
        )
    p_evaluate = evaluation.p_value("ndcg@10", "late", "early")
    p_strategies = report.evaluation.p_value("ndcg@10", "late", "early")
    print(f"\np late vs early: Evaluate {p_evaluate}, Strategies {p_strategies}")
    assert p_evaluate == pytest.approx(p_strategies)
    said = " ".join(rendered(c.value) for c in app.caption)
    assert "Fisher" in said and f"all {evaluation.queries['all']} evaluated" in said, said


def test_the_bump_chart_writes_its_labels_outside_its_lines() -> None:
    """#16: every point's label was written right of it, so the lines leaving the first and middle methods
    ran through their labels. Labels now sit left of the first method and right of the last, where no line
    goes; the middle methods' items keep their tooltips."""
    from retrieval.compare import compare_results
    from retrieval.plots import bump_layout, bump_rows
    from retrieval.results import Hit, SearchResult

    def result(keys: list[str], strategy: str) -> SearchResult:
        hits = [Hit(n + 1, int(k), f"item-{k}", 1.0 - n / 10, {}, {}, {}) for n, k in enumerate(keys)]
        return SearchResult(strategy, hits, 0.01)

    results = {"late": result(["1", "2", "3"], "late"), "gated": result(["3", "1", "4"], "gated")}
    results["cross_attention"] = result(["4", "3", "5"], "cross_attention")
    rows = bump_rows(compare_results(results, 3))
    sides = {(r["method"], r["item"]): r["side"] for r in rows}
    assert {s for (m, _), s in sides.items() if m == "late"} == {"left"}
    assert {s for (m, _), s in sides.items() if m == "gated"} == {""}, "no label beside a middle method's points"
    assert {s for (m, _), s in sides.items() if m == "cross_attention"} == {"right"}
    import pandas as pd

    chart = bump_layout(3, pd.DataFrame(rows)).to_dict()
    texts = [layer for layer in chart["layer"] if layer["mark"]["type"] == "text"]
    drawn = {(t["mark"]["align"], t["transform"][0]["filter"]) for t in texts}
    assert drawn == {("right", "datum.side == 'left'"), ("left", "datum.side == 'right'")}, drawn


def test_rrf_k_reads_as_a_whole_number_and_only_counts_with_rrf(app: AppTest) -> None:
    """Walkthrough 2, #16: the sidebar showed "RRF k 60.00" even with fusion "sum", where it changes nothing."""
    box = app.sidebar.number_input(key="rrf_k")
    assert box.proto.format == "%g" and box.disabled, "inactive under the default fusion"
    app.sidebar.selectbox(key="fusion").set_value("rrf").run()
    assert_clean(app)
    assert not app.sidebar.number_input(key="rrf_k").disabled


def test_the_search_time_says_why_it_can_be_shorter_than_a_method_s(app: AppTest) -> None:
    """Walkthrough 2, #6: "Searched 5 method(s) in 7 ms" beside methods that took 15-23 ms each: the results
    came from memory, which the page did not say."""
    asked = "the digit three, timed"  # a query no other test asks: a server's cache is shared across sessions
    app.text_input(key="query_text").set_value(asked).run()
    [first] = [c.value for c in app.caption if c.value.startswith("Searched ")]
    assert "memory" not in first and "own search time is beside its name" in first, first  # walkthrough 4, #13
    app.text_input(key="query_text").set_value(asked + " ").run()  # the same query again, from memory
    assert_clean(app)
    [timing] = [c.value for c in app.caption if c.value.startswith("Searched ")]
    assert "answered from memory" in timing and "own search time is beside its name" in timing, timing


def test_a_strategies_measurement_kept_by_the_server_is_shown_in_a_new_session(app: AppTest) -> None:
    """Walkthrough 2, #11: the page said measurements are kept, yet a new session saw only the button."""
    from conftest import APP

    app.sidebar.radio(key="page").set_value("Strategies").run()
    app.button(key="run_report").click().run()
    assert_clean(app)
    measured = shown_cells(app.dataframe[0])
    fresh = AppTest.from_file(APP, default_timeout=180)
    fresh.session_state["methods"] = ["late", "early"]
    fresh.run()
    fresh.sidebar.radio(key="page").set_value("Strategies").run()
    assert_clean(fresh)
    assert fresh.dataframe, "the kept measurement is shown without measuring again"
    assert shown_cells(fresh.dataframe[0]).equals(measured)
