"""Issue 37, the findings of the walkthrough after the second (its numbers), through AppTest where it suffices."""

from __future__ import annotations

from conftest import mnist_image, recording
from streamlit.testing.v1 import AppTest
from test_app import assert_clean, upload
from test_app_truth import weighing_lines


def test_a_coherence_given_beside_the_query_is_explained_once(app: AppTest) -> None:
    """#16: "coherence 0.08, against 0.21" was shown with nothing saying what a coherence is."""
    upload(app, "query_image", mnist_image(3), "image/png")
    upload(app, "query_audio", recording(7), "audio/wav")
    app.text_input(key="query_text").set_value("the digit three").run()
    assert_clean(app)
    lines = weighing_lines(app)
    print("\n".join(lines.values()))
    assert any("(coherence " in line for line in lines.values()), "the example is one a coherence explains"
    said = [c.value for c in app.caption if c.value.startswith("Coherence: ")]
    assert len(said) == 1 and "modalities it did not search" in said[0], said
