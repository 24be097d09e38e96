"""Issue 37, the fourth new-user walkthrough's findings (its numbers) that AppTest can see: training's
confirmation and loss chart, the Item page's item and metadata, and what Strategies measured with."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest
from test_app import assert_clean, rendered


def loss_charts(app: AppTest) -> list[list[float]]:
    """The losses each line chart on the page draws (from its vega-lite datasets)."""
    charts = []
    for chart in app.get("arrow_vega_lite_chart") + app.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        if "training loss" not in json.dumps(spec):
            continue
        import pyarrow as pa

        blobs = [d.data.data for d in chart.proto.datasets] + [chart.proto.data.data]
        rows = [r for blob in blobs if blob for r in pa.ipc.open_stream(blob).read_all().to_pylist()]
        charts.append([r.get("value", r.get("loss")) for r in rows])
    return charts


@pytest.mark.writes_demo
def test_after_training_the_loss_chart_stays_and_replace_it_is_cleared(app: AppTest) -> None:
    """#6: after a training the live loss chart vanished, and "Replace it" stayed ticked in the browser while
    the caption said Train was off until one ticks it. The chart of the model just trained stays; the box is
    set to unticked (a value the browser is sent), and the caption and the disabled Train agree with it."""
    app.sidebar.radio(key="page").set_value("Index").run()
    app.selectbox(key="train_strategy").set_value("gated").run()
    app.slider(key="train_epochs").set_value(2)
    app.button(key="train_run").click().run()
    assert_clean(app)
    first = loss_charts(app)
    assert len(first) == 1 and len(first[0]) == 2, first
    app.checkbox(key="train_replace_gated").check().run()
    assert not app.button(key="train_run").disabled
    app.button(key="train_run").click().run()
    assert_clean(app)
    box = app.checkbox(key="train_replace_gated")
    assert not box.value
    assert box.proto.set_value, "the browser is told to untick the box, not left to keep it ticked"
    assert app.button(key="train_run").disabled
    assert any('Train is off until you tick "Replace it"' in rendered(c.value) for c in app.caption)
    app.run()  # any later interaction: the chart of the model trained last is still there
    assert len(loss_charts(app)) == 1
    assert any("the model trained last" in rendered(c.value) for c in app.caption)


def test_the_item_page_opens_the_item_last_looked_at(app: AppTest, demo: dict[str, str]) -> None:
    """#10: an item opened in "Look closer at a result", then the Item page: it showed the collection's first
    item (0-george-0) instead. It opens that item, and one searched with after it; its own choice stays."""
    from retrieval import SearchEngine

    keys = SearchEngine.open(demo["url"]).catalogue.item_keys()
    app.text_input(key="query_text").set_value("the digit seven").run()
    look = app.selectbox(key="look_closer")
    chosen = look.options[3]
    item_id = next(i for i in keys if chosen.startswith(f"{keys[i]} ("))
    look.set_value(item_id).run()
    assert_clean(app)
    app.sidebar.radio(key="page").set_value("Item").run()
    assert app.selectbox(key="item_key").value == keys[item_id], chosen
    assert app.selectbox(key="item_key").proto.set_value, "the browser is sent the item, not left on its own"
    other = sorted(keys.values())[5]
    app.selectbox(key="item_key").set_value(other).run()
    app.sidebar.radio(key="page").set_value("Search").run()
    app.sidebar.radio(key="page").set_value("Item").run()
    assert app.selectbox(key="item_key").value == other, "nothing looked at since: the item shown last"


def test_the_item_page_shows_metadata_as_a_table_of_text(app: AppTest) -> None:
    """#10: the metadata was a raw JSON tree; it is a field/value table whose cells are text."""
    app.sidebar.radio(key="page").set_value("Item").run()
    assert_clean(app)
    assert not app.json, "no raw JSON tree"
    frame = app.dataframe[0].value
    assert list(frame.columns) == ["field", "value"], frame
    fields = dict(zip(frame["field"], frame["value"]))
    assert fields.get("split") in ("train", "test") and fields.get("digit") is not None, fields
    assert all(isinstance(v, str) for v in frame["value"]), "each value shown as text"


def test_strategies_says_what_it_measured_with_and_where_evaluate_differs(app: AppTest) -> None:
    """#8: Strategies said it used "the queries and the test of the Evaluate page" and showed gated 0.950 where
    Evaluate, with the sidebar's image x0.50, showed 0.930; it named no weights, and its kept result (made in
    another session) said nothing of when. It now names the settings it measured with, warns where the
    sidebar's differ, and says when the kept result was measured."""
    app.sidebar.slider(key="weight_image").set_value(0.5)
    app.sidebar.radio(key="page").set_value("Strategies").run()
    assert_clean(app)
    captions = [rendered(c.value) for c in app.caption]
    said = next(
        (c for c in captions if c.startswith("Each strategy with every query weight 1 and its own defaults")), None
    )
    assert said and "late: normalisation=zscore, fusion=sum, weighting=adaptive" in said, captions
    warning = rendered(app.warning[0].value) if app.warning else ""
    assert warning.startswith("The sidebar sets late: ") and "weights image×0.50" in warning, warning
    assert "Evaluate measures those settings, so its numbers for late, early differ from these." in warning
    app.button(key="run_report").click().run()
    made = [rendered(c.value) for c in app.caption if rendered(c.value).startswith("Measured at ")]
    assert len(made) == 1 and "with k = 10 and relevant = same digit" in made[0], made
    app.sidebar.slider(key="weight_image").set_value(1.0).run()
    assert not app.warning, "the sidebar's settings are the defaults again: nothing differs"


def test_the_one_missing_chart_writes_method_names_across_and_apart() -> None:
    """#9: the chart "Quality with one query modality missing" wrote each method's name on its side, in a facet
    row too short for it, so names ran into each other ("learned_eacross_attention"). Drawn by vega
    (vl-convert's SVG) with six methods, long names included: each name is written across, the names at least a
    line apart, and each bar at least 8 px thick."""
    import re
    from itertools import pairwise

    vlc = pytest.importorskip("vl_convert")
    from test_charts import PATH, marks, report

    from retrieval.report import report_charts

    names = ["late", "early", "hybrid", "gated", "cross_attention", "learned_early"]
    shown = report(6)
    for row, name in zip(shown.rows, names):
        row.method = name
    svg = vlc.vegalite_to_svg(report_charts(shown)["one_missing"].to_dict())
    texts = re.findall(r'<text[^>]*?transform="([^"]+)"[^>]*>([^<]*)</text>', svg)
    labels = {text: transform for transform, text in texts if text in names}
    assert set(labels) == set(names), texts
    assert not [n for n, t in labels.items() if "rotate" in t], labels
    ys = sorted(float(re.search(r"translate\([-\d.]+,([-\d.]+)\)", t)[1]) for t in labels.values())
    gaps = [b - a for a, b in pairwise(ys)]
    print(f"\nmethod names {min(gaps):.0f}-{max(gaps):.0f} px apart")
    assert min(gaps) >= 16, gaps  # a label of 11 px and room between
    bars = PATH.findall(marks(svg))
    assert len(bars) == 12 and min(abs(float(h)) for _, h, _ in bars) >= 8, bars
