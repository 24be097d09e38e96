"""Issue 37, items 6 and 7, in Chromium: a query by example brings the query into view, and a grid cell shows
a larger picture and the item's text when pointed at or reached with Tab. Timings are printed, not asserted
(bench/ui_views.py measures the slow views, median of 5)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.action_chains import ActionChains
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
# The pop-up of each cell that shows one: [item, its picture's width, its text]
POPPED = """
return [...document.querySelectorAll('table.cmp-grid td.cmp-cell')].flatMap(td => {
  const pop = td.querySelector('.cmp-pop');
  if (!pop || getComputedStyle(pop).display === 'none') return [];
  const img = pop.querySelector('img');
  return [[td.dataset.item, img ? img.getBoundingClientRect().width : 0, pop.innerText]];
});
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


def test_a_cell_shows_a_larger_picture_and_its_text_on_hover_and_on_tab(server: str, browser) -> None:  # noqa: F811
    """Results were 32 px thumbnails with the text in a title only the mouse could reach. Pointing at a cell,
    or reaching it with Tab, now shows its picture at 112 px and its text beside the grid."""
    browser.get(server)
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    search(browser, "the digit three")
    assert browser.execute_script(POPPED) == [], "nothing pops up before pointing"
    cells = browser.find_elements(By.CSS_SELECTOR, "table.cmp-grid td.cmp-cell")
    with_picture = [c for c in cells if c.find_elements(By.CSS_SELECTOR, ".cmp-pop img")]
    target = with_picture[0]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    ActionChains(browser).move_to_element(target).perform()
    popped = browser.execute_script(POPPED)
    assert [item for item, _, _ in popped] == [target.get_attribute("data-item")], popped
    assert popped[0][1] >= 100, f"the picture is {popped[0][1]} px wide"
    # the pointer to the sidebar, which does not scroll: over the page, scrolling could bring a cell under it
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]')).perform()
    assert browser.execute_script(POPPED) == [], "it goes when the pointer leaves"
    with_text = next(c for c in cells[1:] if c.find_elements(By.CSS_SELECTOR, ".cmp-pop div"))
    before = cells[cells.index(with_text) - 1]
    browser.execute_script("arguments[0].focus()", before)
    ActionChains(browser).send_keys(Keys.TAB).perform()  # to whatever has the focus, as a keyboard does
    popped = browser.execute_script(POPPED)
    assert [item for item, _, _ in popped] == [with_text.get_attribute("data-item")], popped
    assert popped[0][2].strip(), "the item's text or transcript shows, as text"
