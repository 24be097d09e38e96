"""Issue 37, the fourth new-user walkthrough's findings (its numbers) about what Chromium draws."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import copy_demo
from selenium.webdriver.common.by import By
from test_browser import body_text, browser, needs_chromium, run_app, settle  # noqa: F401 (fixtures)
from test_browser_third_walkthrough import by_text, open_page

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(ui_demo: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a copy of the demo: these tests train."""
    needs_chromium()
    demo = copy_demo(ui_demo, tmp_path_factory)
    settings = {"RETRIEVAL_DB": demo["url"], "RETRIEVAL_ROOTS": demo["roots"], "RETRIEVAL_QUERIES": demo["queries"]}
    yield from run_app(settings, tmp_path_factory.mktemp("streamlit") / "server.log")


def replace_box(driver):
    return driver.find_element(By.XPATH, '//label[.//*[contains(text(), "Replace it")]]')


def train_button(driver):
    return by_text(driver, "Train")


def test_a_second_training_leaves_replace_it_unticked_and_its_loss_chart_shown(server: str, browser) -> None:  # noqa: F811
    """#6: after a training "Replace it" was still drawn ticked while the caption said Train was off until one
    ticks it; the next click sent the tick back, enabling Train with no new confirmation; and the loss chart
    vanished. Drawn now: the box unticked, Train off, and it stays off after another click; the chart stays."""
    browser.set_window_size(1280, 800)
    try:
        open_page(browser, server, "Index", "Train a learned strategy")
        train_button(browser).click()  # the first model: nothing to replace, no confirmation
        settle(browser, lambda d: "Search and Evaluate now answer" in body_text(d), timeout=300)
        replace_box(browser).click()
        settle(browser, lambda d: train_button(d).is_enabled())
        train_button(browser).click()
        settle(browser, lambda d: " with this model instead of " in body_text(d), timeout=300)
        box = replace_box(browser).find_element(By.TAG_NAME, "input")
        assert not box.is_selected(), "the confirmation is cleared after a training"
        assert not train_button(browser).is_enabled()
        assert 'Train is off until you tick "Replace it"' in body_text(browser)
        charts = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stVegaLiteChart"], .stVegaLiteChart')
        assert charts and "the model trained last" in body_text(browser), "the loss chart stays"
        # any other click: the box must not come back ticked and turn Train on
        browser.find_element(By.XPATH, '//label[.//*[contains(text(), "Train only on the items")]]').click()
        settle(browser, lambda d: "evaluation queries come from items this training learns from" in body_text(d))
        assert not replace_box(browser).find_element(By.TAG_NAME, "input").is_selected()
        assert not train_button(browser).is_enabled(), "a third model needs its own confirmation"
    finally:
        browser.set_window_size(1600, 1400)
