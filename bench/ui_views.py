"""The UI's slow views in Chromium (issue 37, item 6): what a person waits for, median of RUNS.

On a collection (the full demo by default: 2,000 items, gated and cross-attention trained), a text query and
five methods (late, gated, hybrid, cross_attention, early), each round times:
- **cards**: switching the compact grid off until the five columns of result cards are drawn;
- **example**: a card's "Search with this item" until the new results are drawn (a different card each round),
  and whether the query's banner is then on screen;
- **item**: the Item page, of the item just searched with, until its five columns of neighbours are drawn.

`--baseline DIR` runs another checkout's app beside this one (e.g. `git worktree add /tmp/base <commit>`), one
server each, the two measured in turn within each round, the order swapped every round: the machine's load then
falls on both alike. Timings are printed and written, never asserted.

    .venv/bin/python bench/ui_views.py [--db sqlite:///data/demo.db] [--baseline /tmp/base] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from common import ROOT, write_report

sys.path.insert(0, str(ROOT / "tests"))
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from test_browser import chromium, grid_methods, run_app, settle
from test_browser_small_things import add_method

METHODS = ["late", "gated", "hybrid", "cross_attention", "early"]
QUERY = "the digit three"
# The waits ask the page in one cheap script each: selenium's `.text` walks the whole page computing what is
# visible, and polled every 20 ms on a page of 50 cards it took as much of the browser's time as the page did
COUNT = "return [...document.querySelectorAll('button')].filter(b => b.textContent.trim() === arguments[0]).length"
SAYS = "return [...document.querySelectorAll('p')].some(p => p.textContent.startsWith(arguments[0]))"
# the query's banner within the window: top and bottom (px), and the window's height
BANNER = """
const line = [...document.querySelectorAll('p')].find(p => p.textContent.startsWith('Query: the item'));
if (!line) return null;
const r = line.getBoundingClientRect(); return [r.top, r.bottom, window.innerHeight];
"""


def buttons(driver: WebDriver, text: str) -> int:
    return driver.execute_script(COUNT, text)


def says(driver: WebDriver, start: str) -> bool:
    """Whether a paragraph of the page starts with `start`."""
    return driver.execute_script(SAYS, start)


def click_label(driver: WebDriver, xpath: str) -> None:
    element = driver.find_element(By.XPATH, xpath)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def compact_switch(driver: WebDriver) -> WebElement | None:
    found = driver.find_elements(
        By.XPATH, '//*[@data-testid="stCheckbox"][.//*[contains(text(), "Compact comparison")]]'
    )
    return found[0] if found else None


def open_search(driver: WebDriver, url: str, k: int) -> None:
    """A fresh session: the query typed and the five methods chosen, in the compact grid."""
    driver.get(url)
    settle(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=300)
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]').send_keys(QUERY, Keys.ENTER)
    settle(driver, lambda d: "late" in grid_methods(d), timeout=120)
    for name in METHODS:
        if name not in grid_methods(driver):
            add_method(driver, name)
    settle(driver, lambda d: len(grid_methods(d)) == len(METHODS) + 1, timeout=120)


def to_compact(driver: WebDriver) -> None:
    switch = compact_switch(driver)
    if switch is not None and not switch.find_element(By.TAG_NAME, "input").is_selected():
        switch.find_element(By.TAG_NAME, "label").click()
        settle(driver, lambda d: grid_methods(d), timeout=120)


def browser_seconds(driver: WebDriver) -> float:
    """Chromium's main-thread busy time so far (script, layout, style, paint): what a view cost the browser."""
    metrics = driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


def one_round(driver: WebDriver, round_: int, k: int) -> dict[str, float]:
    """The three views' seconds, the browser's busy share of each, and where the banner was after the
    query by example."""
    cells = len(METHODS) * k
    to_compact(driver)
    busy = browser_seconds(driver)
    switch = compact_switch(driver)
    assert switch is not None, "the page has no compact-comparison switch"
    switch.find_element(By.TAG_NAME, "label").click()
    cards = settle(driver, lambda d: buttons(d, "Search with this item") == cells, timeout=120)
    cards_busy, busy = browser_seconds(driver) - busy, browser_seconds(driver)
    button = driver.execute_script(
        "return [...document.querySelectorAll('button')].filter(b => b.textContent.trim() === arguments[0])[arguments[1]]",
        "Search with this item",
        (7 * round_ + 3) % cells,
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    example = settle(
        driver,
        lambda d: says(d, "Query: the item") and buttons(d, "Search with this item") == cells,
        timeout=120,
    )
    example_busy = browser_seconds(driver) - busy
    banner = driver.execute_script(BANNER)
    busy = browser_seconds(driver)
    click_label(driver, '//label[.//*[normalize-space(text())="Item"]]')  # the example's item: new each round
    item = settle(driver, lambda d: buttons(d, "Open this item") == cells, timeout=120)
    item_busy = browser_seconds(driver) - busy
    click_label(driver, '//label[.//*[normalize-space(text())="Search"]]')
    settle(driver, lambda d: says(d, "Query: the item"), timeout=120)
    click_label(driver, '//button[.//*[normalize-space(text())="Back to your own query"]]')
    settle(driver, lambda d: not says(d, "Query: the item"), timeout=120)
    on_screen = banner is not None and banner[0] >= 0 and banner[1] <= banner[2]
    return {
        "cards": cards,
        "example": example,
        "item": item,
        "cards_browser": cards_busy,
        "example_browser": example_busy,
        "item_browser": item_busy,
        "banner_on_screen": float(on_screen),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=f"sqlite:///{ROOT / 'data' / 'demo.db'}")
    parser.add_argument("--queries", default=str(ROOT / "data" / "digits" / "queries.jsonl"))
    parser.add_argument("--baseline", type=Path, help="another checkout, measured beside this one")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="1600,1000", help="the window, width,height")
    parser.add_argument("--name", default="ui_views", help="the report's file name in docs/benchmarks")
    args = parser.parse_args()
    checkouts = {"current": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    settings = {"RETRIEVAL_DB": args.db, "RETRIEVAL_QUERIES": args.queries}
    k = 10
    times: dict[str, dict[str, list[float]]] = {name: {} for name in checkouts}
    with ExitStack() as stack:
        drivers = {}
        for name, root in checkouts.items():
            log = Path(f"/tmp/ui_views-{name}-{time.time_ns()}.log")
            url = stack.enter_context(contextmanager(run_app)(settings, log, root))
            drivers[name] = chromium(args.size)
            drivers[name].execute_cdp_cmd("Performance.enable", {})
            stack.callback(drivers[name].quit)
            open_search(drivers[name], url, k)
        names = list(checkouts)
        for round_ in range(args.runs):
            for name in names if round_ % 2 == 0 else names[::-1]:
                row = one_round(drivers[name], round_, k)
                print(f"round {round_ + 1} {name}: " + ", ".join(f"{v}={s:.2f}" for v, s in row.items()), flush=True)
                for view, seconds in row.items():
                    times[name].setdefault(view, []).append(seconds)
    report(times, args)


def report(times: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    views = ["cards", "example", "item", "cards_browser", "example_browser", "item_browser"]
    lines = [
        f"Median of {args.runs} in headless Chromium at {args.size} px, {args.db.rsplit('/', 1)[-1]}, methods "
        f"{', '.join(METHODS)}; the machine was shared (2 cores).",
        "",
        "| view | " + " | ".join(f"{name} median s (all)" for name in times) + " |",
        "|---|" + "---|" * len(times),
    ]
    medians = {name: {v: statistics.median(times[name][v]) for v in views} for name in times}
    for view in views:
        cells = [f"{medians[n][view]:.2f} ({', '.join(f'{s:.2f}' for s in times[n][view])})" for n in times]
        lines.append(f"| {view} | " + " | ".join(cells) + " |")
    if "baseline" in times:
        lines.append("")
        lines += [
            f"- {v}: current / baseline = {medians['current'][v] / medians['baseline'][v]:.2f}" for v in views[:3]
        ]
    for name in times:
        shown = sum(times[name]["banner_on_screen"])
        lines.append(f"- {name}: query banner on screen after a query by example in {shown:.0f} of {args.runs}")
    write_report(args.name, {"times": times, "medians": medians, "runs": args.runs}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
