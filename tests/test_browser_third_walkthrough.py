"""Issue 37, the findings of the walkthrough after the second (its numbers) that are about what Chromium draws."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from test_browser import browser, server, settle, show_cards  # noqa: F401 (fixtures)
from test_browser_walkthrough import search

pytestmark = pytest.mark.slow

# Each shown button with a label: [label, whether any part of it is cut (drawn narrower than its text)]
CUT_BUTTONS = """
return [...document.querySelectorAll('button')].filter(b => b.innerText.trim() && b.getClientRects().length)
  .map(b => [b.innerText.trim(), [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1)]);
"""


def cut(driver) -> list[str]:
    return [label for label, is_cut in driver.execute_script(CUT_BUTTONS) if is_cut]


def by_text(driver, label: str):
    return driver.find_element(By.XPATH, f'//button[.//*[normalize-space(text())="{label}"]]')


def test_the_query_s_buttons_keep_their_whole_label_at_1280_px(server: str, browser) -> None:  # noqa: F811
    """#7: in columns of [4, 1] "Back to your own query" was drawn as "Back to your own …" at 1280 px, and so
    was "Let the methods weigh inputs"."""
    browser.set_window_size(1280, 800)
    try:
        search(browser, server)
        show_cards(browser)
        buttons = browser.find_elements(By.XPATH, '//button[.//*[normalize-space(text())="Search with this item"]]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", buttons[2])
        buttons[2].click()
        settle(browser, lambda d: d.find_elements(By.XPATH, '//button[.//*[text()="Back to your own query"]]'))
        assert not cut(browser), cut(browser)
        by_text(browser, "Use my own weights").click()
        settle(browser, lambda d: d.find_elements(By.XPATH, '//button[.//*[text()="Let the methods weigh inputs"]]'))
        print(f"\nbuttons at 1280 px: {browser.execute_script(CUT_BUTTONS)[:6]}")
        assert not cut(browser), cut(browser)
    finally:
        browser.set_window_size(1600, 1400)
