"""Issue 37, "the UI tells the truth about every result", through AppTest: what each input was weighed, the
grid's cues, and what Evaluate claims."""

from __future__ import annotations

import io
from typing import Any

from conftest import mnist_image, recording
from streamlit.testing.v1 import AppTest
from test_app import assert_clean, ranked, rendered, upload

from retrieval.results import Method, QueryInput

PREDICTORS = ("its scores vary less", "its best matches stand out less", "the items it matches best are a mix")


def weighing_lines(app: AppTest) -> dict[str, str]:
    """Method label -> its line beside the query (escapes read)."""
    out = {}
    for m in app.markdown:
        text = rendered(m.value)
        if text.startswith("**") and (" weighed each input" in text or " used your weights, but" in text):
            out[text[2:].split("**")[0]] = text
    return out


def engine_weighing(demo: dict[str, str], query: QueryInput, strategy: str):
    from retrieval import SearchEngine

    engine = SearchEngine.open(demo["url"])
    engine.load_encoders()
    return engine.weighing(Method(strategy, strategy, {}), engine.encode_query(query), 10)


def test_each_input_s_weight_is_said_beside_the_query(app: AppTest, demo: dict[str, str]) -> None:
    """Item 2: a text, an image of a 3 and a recording of a 7: adaptive weighting counts the inputs otherwise
    than their sliders (all 1.00); each method's line says by how much and, for those counted less, why."""
    upload(app, "query_image", mnist_image(3), "image/png")
    upload(app, "query_audio", recording(7), "audio/wav")
    app.text_input(key="query_text").set_value("the digit three").run()
    assert_clean(app)
    lines = weighing_lines(app)
    query = QueryInput(text="the digit three", image=mnist_image(3), audio=recording(7))
    names = {"text": "your text", "image": "your image", "audio": "your audio clip"}
    for method in ("late", "early"):
        weighing = engine_weighing(demo, query, method)
        assert weighing.how == "adaptive" and weighing.changed(), "the example is one adaptive weighting changes"
        line = lines[method]
        print(line)
        for one in weighing.inputs:
            said = f"{names[one.modality]} counted ×{one.used:.2f}"
            assert said in line, (said, line)
            if one.used < 0.9 * one.chosen:
                reason = line.split(said + " (set 1.00): ")[1]
                assert reason.startswith(PREDICTORS), line
    assert any(b.key == "own_weights" for b in app.button)


def test_one_click_uses_one_s_own_weights(app: AppTest, demo: dict[str, str]) -> None:
    """Item 2: "Use my own weights" turns adaptive weighting and screening off; the methods then rank as the API
    does with fixed weights and no screening, and the page says every input counts as set."""
    from retrieval import SearchEngine

    upload(app, "query_image", mnist_image(3), "image/png")
    upload(app, "query_audio", recording(7), "audio/wav")
    app.run()
    assert weighing_lines(app)
    app.button(key="own_weights").click().run()
    assert_clean(app)
    assert app.sidebar.selectbox(key="weighting").value == "fixed"
    assert app.sidebar.checkbox(key="screen_inputs").value is False
    assert not weighing_lines(app), "nothing left to say: every input counts as set"
    assert any("Every input counts as you set it" in c.value for c in app.caption)
    engine = SearchEngine.open(demo["url"])
    query: dict[str, Any] = {"image": mnist_image(3), "audio": recording(7), "weighting": "fixed"}
    assert ranked(app, "late") == [str(h.item_id) for h in engine.search(strategy="late", **query).hits]
    assert ranked(app, "early") == [str(h.item_id) for h in engine.search(strategy="early", screen=False, **query).hits]
    app.button(key="methods_weigh").click().run()
    assert app.sidebar.selectbox(key="weighting").value == "adaptive" and weighing_lines(app), "and back"


def blank_image() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_screened_out_input_is_said_the_same_way(app: AppTest, demo: dict[str, str]) -> None:
    """Item 2: a blank image beside a text is left out by every method that screens; the line says so, and with
    one's own weights it counts again (early then ranks as the API does unscreened)."""
    from retrieval import SearchEngine

    app.sidebar.multiselect(key="methods").set_value(["late", "early", "hybrid"])
    app.file_uploader(key="query_image").set_value(("blank.png", blank_image(), "image/png"))
    app.text_input(key="query_text").set_value("the digit three").run()
    assert_clean(app)
    lines = weighing_lines(app)
    assert set(lines) == {"late", "early", "hybrid"}, lines
    for line in lines.values():
        assert "your image was left out: it scores every item of the collection about alike" in line, line
    app.button(key="own_weights").click().run()
    assert not weighing_lines(app)
    engine = SearchEngine.open(demo["url"])
    plain = engine.search(
        text="the digit three", image=blank_image(), strategy="early", weighting="fixed", screen=False
    )
    assert ranked(app, "early") == [str(h.item_id) for h in plain.hits]


def test_one_input_says_nothing_of_weights(app: AppTest) -> None:
    """One input: its weight orders nothing and nothing is screened, so no line and no button."""
    app.text_input(key="query_text").set_value("the digit three").run()
    assert not weighing_lines(app) and not any(b.key == "own_weights" for b in app.button)
