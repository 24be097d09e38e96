"""Issue 37, the findings of the walkthrough after the second (its numbers) that are about what Chromium draws."""

from __future__ import annotations

from pathlib import Path

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


def open_page(driver, url: str, page: str, ready: str) -> None:
    """The app's page `page` from a fresh load of `url`, once `ready` is shown on it."""
    from test_browser import body_text

    driver.get(url)
    settle(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    driver.find_element(By.XPATH, f'//label[.//*[normalize-space(text())="{page}"]]').click()
    settle(driver, lambda d: ready in body_text(d))


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


# Each table's toolbar, grid, and the boxes of the page's other elements, read in one script
TOOLBARS = """
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
return [...document.querySelectorAll('[data-testid="stDataFrame"]')].map(table => {
  const own = table.closest('[data-testid="stElementContainer"]');
  const others = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stElementContainer"]')]
    .filter(e => e !== own && !e.contains(own) && !own.contains(e) && e.getClientRects().length
                 && e.getBoundingClientRect().height > 0).map(box);
  return {toolbar: box(table.querySelector('[data-testid="stElementToolbar"]')), grid: box(table), others};
});
"""


def overlaps(a: list[float], b: list[float]) -> bool:
    """Whether two boxes [left, top, right, bottom] share more than a pixel each way."""
    return min(a[2], b[2]) - max(a[0], b[0]) > 1 and min(a[3], b[3]) - max(a[1], b[1]) > 1


def test_a_table_s_toolbar_covers_neither_its_cells_nor_the_text_above(server: str, browser) -> None:  # noqa: F811
    """#10: the toolbar of st.dataframe sat over the header and first rows at rest and on its way in, and over
    the text above the table once shown. It now has a band of its own above the table."""
    from selenium.webdriver.common.action_chains import ActionChains

    browser.set_window_size(1280, 800)
    try:
        open_page(browser, server, "Strategies", "Measure every strategy")
        by_text(browser, "Measure every strategy").click()
        settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'), timeout=300)
        table = browser.find_element(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", table)
        at_rest = browser.execute_script(TOOLBARS)[0]
        ActionChains(browser).move_to_element(table).perform()
        settle(
            browser,
            lambda d: d.execute_script(
                "return getComputedStyle(document.querySelector('[data-testid=stDataFrame] "
                "[data-testid=stElementToolbar]')).opacity === '1'"
            ),
        )
        shown = browser.execute_script(TOOLBARS)[0]
        print(f"\ntoolbar at rest {at_rest['toolbar']}, shown {shown['toolbar']}; grid {shown['grid']}")
        for state in (at_rest, shown):
            toolbar = state["toolbar"]
            assert toolbar[3] <= state["grid"][1] + 1, f"the toolbar {toolbar} covers the grid {state['grid']}"
            covered = [other for other in state["others"] if overlaps(toolbar, other)]
            assert not covered, f"the toolbar {toolbar} covers {covered}"
    finally:
        browser.set_window_size(1600, 1400)


# The first rows' items of the comparison grid
FIRST_ITEMS = (
    "return [...document.querySelectorAll('table.cmp-grid td.cmp-cell')].slice(0, 4).map(td => td.dataset.item)"
)


def test_a_query_file_given_again_with_new_content_is_searched_anew(server: str, browser, tmp_path) -> None:  # noqa: F811
    """#2: a query image saved anew under its name and given again was ignored (Chromium fires no change for
    the path its file input already holds), and the old image was still searched."""
    import shutil

    from conftest import MNIST

    three, seven = sorted(MNIST.glob("*_3.png"))[5], sorted(MNIST.glob("*_7.png"))[5]
    query = tmp_path / "query.png"

    def give(picture: Path) -> list[str]:
        before = browser.execute_script(FIRST_ITEMS)
        shutil.copy(picture, query)
        field = '//*[@data-testid="stFileUploader"][.//*[normalize-space(text())="Image"]]//input[@type="file"]'
        settle(browser, lambda d: d.find_elements(By.XPATH, field))
        browser.find_element(By.XPATH, field).send_keys(str(query))
        settle(browser, lambda d: d.execute_script(FIRST_ITEMS) and d.execute_script(FIRST_ITEMS) != before, 30)
        return browser.execute_script(FIRST_ITEMS)

    browser.get(server)
    settle(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    by_three = give(three)
    by_seven = give(seven)
    print(f"\nfirst items for a three {by_three}, then for a seven under the same name {by_seven}")
    assert by_seven != by_three
