"""Issue 37, item 6, in Chromium: a query by example brings the query into view. Timings are printed, not
asserted (bench/ui_views.py measures the slow views, median of 5)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from test_browser import browser, grid_methods, server, settle, show_cards  # noqa: F401

pytestmark = pytest.mark.slow

# The query's banner and the window, read in one script: [top, bottom, window height], or null
BANNER = """
const line = [...document.querySelectorAll('p')].find(p => p.textContent.startsWith('Query: the item'));
if (!line) return null;
const r = line.getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight];
"""


def search(driver, text: str) -> None:
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]').send_keys(text, Keys.ENTER)
    settle(driver, lambda d: "late" in grid_methods(d))


def test_a_query_by_example_brings_the_query_into_view(server: str, browser) -> None:  # noqa: F811
    """The button of a card far down the results was pressed; the page stayed scrolled there, mid-results, with
    the new query's banner off screen above. Now the banner is in the window once the new results are shown."""
    browser.get(server)
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    search(browser, "the digit three")
    show_cards(browser)
    buttons = browser.find_elements(By.XPATH, '//button[.//*[normalize-space(text())="Search with this item"]]')
    button = buttons[len(buttons) // 2 + 3]  # the second method's eighth card: far below the query
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    assert browser.execute_script(BANNER) is None
    button.click()
    seconds = settle(browser, lambda d: d.execute_script(BANNER) is not None)
    top, bottom, height = browser.execute_script(BANNER)
    print(f"\nquery by example: {seconds:.2f} s; banner at {top:.0f}-{bottom:.0f} px of {height} px")
    assert top >= 0 and bottom <= height, f"the banner is off screen: {top:.0f}-{bottom:.0f} of {height} px"
