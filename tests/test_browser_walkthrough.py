"""Issue 37, the second walkthrough's findings that are about what Chromium draws: charts that fit the window,
the grid on a phone, the keyboard on the grid, the bump chart's labels."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from test_browser import _texts, browser, grid_methods, server, settle  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

# Each chart's shown box (its canvas or svg, cut to the box it scrolls in: the bump chart scrolls sideways on
# a phone rather than squeeze its labels together) against its Streamlit column and the window
CHART_BOXES = """
return [...document.querySelectorAll('.vega-embed')].map(e => {
  const drawn = e.querySelector('canvas, svg').getBoundingClientRect();
  const box = e.closest('[data-testid="stVegaLiteChart"]').getBoundingClientRect();
  const column = e.closest('[data-testid="stVerticalBlock"]').getBoundingClientRect();
  return {title: e.closest('[data-testid="stVegaLiteChart"]') ? 'chart' : '?', left: Math.max(drawn.left, box.left),
          right: Math.min(drawn.right, box.right), column: column.right, window: document.documentElement.clientWidth};
});
"""


def search(driver, url: str, text: str = "the digit three") -> None:
    driver.get(url)
    settle(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]').send_keys(text, Keys.ENTER)
    settle(driver, lambda d: "late" in grid_methods(d))
    settle(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".vega-embed canvas, .vega-embed svg")) >= 3)


FOLDS = "return [...document.querySelectorAll('[class*=\"st-key-fold_\"] details')].map(d => d.open)"


def unfold(driver) -> None:
    """Open every section a phone folds (ui.layout.FOLD_ON_PHONE), as a person does, by its summary."""
    for summary in driver.find_elements(By.CSS_SELECTOR, '[class*="st-key-fold_"] details:not([open]) > summary'):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].click()", summary)
    settle(driver, lambda d: all(d.execute_script(FOLDS)), timeout=20)


def phone(driver, width: int = 400) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": True}
    )
    settle(driver, lambda d: d.execute_script("return window.innerWidth") == width)


@pytest.mark.parametrize("width", [1280, 400])
def test_every_chart_of_a_search_fits_its_column_and_the_window(server: str, browser, width: int) -> None:  # noqa: F811
    """#5, #6: at 1280 px the contribution chart's legend was cut by the column beside it (440 px drawn in a
    ~380 px column), and at 400 px charts ran off the screen; each now fits its column, legend included."""
    try:
        if width >= 600:
            browser.set_window_size(width, 800)
        else:
            phone(browser, width)
        search(browser, server)
        if width < 600:  # folded on a phone: opened to be seen
            settle(browser, lambda d: not any(d.execute_script(FOLDS)))
            unfold(browser)
        boxes = browser.execute_script(CHART_BOXES)
        print(f"\nat {width} px: {boxes}")
        assert len(boxes) >= 3
        for box in boxes:
            assert box["right"] <= box["column"] + 1 and box["right"] <= box["window"] + 1, box
            assert box["left"] >= 0, box
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.set_window_size(1600, 1400)


def test_enter_on_a_cell_opens_its_item(server: str, browser) -> None:  # noqa: F811
    """#10, and the third walkthrough's #18: Enter on a focused cell did nothing, though the page said how to
    open it. Enter now opens the cell's item in "Look closer at a result", and the pop-up and a line under the
    grid say so."""
    search(browser, server)
    # focused and read in one script: a cell the page draws again in between would go stale
    key, shown, said = browser.execute_script(
        "const cell = document.querySelectorAll('td.cmp-cell')[2]; cell.focus();"
        "const pop = cell.querySelector('.cmp-pop');"
        "return [cell.querySelector('b').textContent, getComputedStyle(pop).display, pop.innerText];"
    )
    assert shown == "block" and "Enter: look closer at it" in said, (shown, said)
    assert "Enter opens the cell's item in “Look closer at a result”" in browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    settle(browser, lambda d: "Search with this item" in _texts(d, "button"))
    chosen = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Look closer at a result"]').get_attribute("value")
    print(f"\nEnter on {key}: Look closer shows {chosen!r}")
    assert f"{key} (" in chosen, (key, chosen)
