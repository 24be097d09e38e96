"""Issue 37, what the third walkthrough left (its numbers) that is about what Chromium draws."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from test_browser import browser, grid_methods, server, settle  # noqa: F401 (fixtures)
from test_browser_walkthrough import CHART_BOXES, FOLDS, phone, search, unfold

pytestmark = pytest.mark.slow

PAGE_HEIGHT = """
const main = document.querySelector('[data-testid="stMain"]');
return Math.max(document.scrollingElement.scrollHeight, main ? main.scrollHeight : 0);
"""


def steady_height(driver) -> int:
    """The page's height once it has stopped changing (an expander opens with an animation)."""
    import time

    heights = [-1]

    def steady(d) -> bool:
        heights.append(d.execute_script(PAGE_HEIGHT))
        time.sleep(0.25)  # a poll's pace: the condition is two equal reads a quarter second apart
        return heights[-1] == heights[-2]

    settle(driver, steady)
    return heights[-1]


def drawn_widths(driver) -> list[float]:
    return [box["right"] - box["left"] for box in driver.execute_script(CHART_BOXES)]


def test_a_phone_folds_the_sections_below_the_results(server: str, browser) -> None:  # noqa: F811
    """#15: at 400 px a two-method text search made a page 3,912 px tall, most of it the comparison and the
    explanations below the results. On a phone they are now folded, once: a person opens what they want, it
    stays open for the next search, and its charts are drawn at the column's width. A wide screen opens them."""
    browser.get(server)
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    try:
        phone(browser, 400)
        search(browser, server, "the digit seven")
        settle(browser, lambda d: d.execute_script(FOLDS) == [False, False])
        folded = steady_height(browser)
        field = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]')
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("the digit three", Keys.ENTER)  # searched while folded: its charts drawn unseen
        settle(browser, lambda d: "the digit three" in d.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text)
        unfold(browser)
        settle(browser, lambda d: len(drawn_widths(d)) >= 3 and min(drawn_widths(d)) > 100)
        opened = steady_height(browser)
        print(
            f"\npage at 400 px: {folded} px folded, {opened} px with the sections open; charts {drawn_widths(browser)}"
        )
        assert folded < 0.8 * opened, (folded, opened)
        field = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]')
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys("the digit seven", Keys.ENTER)
        settle(browser, lambda d: "the digit seven" in d.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text)
        assert browser.execute_script(FOLDS) == [True, True], "what a person opened stays open"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.set_window_size(1280, 800)
    try:
        search(browser, server, "the digit seven")
        assert browser.execute_script(FOLDS) == [True, True], "a wide screen shows the sections"
        print(f"page at 1280 px: {steady_height(browser)} px")
    finally:
        browser.set_window_size(1600, 1400)
