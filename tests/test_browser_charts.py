"""Issue 37, item 4, as drawn: every chart can be read at 1280x800. Streamlit draws vega as SVG, so each
chart's marks are measured where the browser put them: bars at least 8 px thick, heat-map cells at least
12 px each way, and every text at least 4.5:1 against what lies under it (WCAG AA)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from test_browser import body_text, browser, server, settle  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

# Per chart: its title, its marks' boxes and fills, its texts with their fill, opacity (the product of their
# own and their groups') and, for a text inside a cell, that cell's fill.
DRAWN = """
const chain = el => { let o = 1; for (let e = el; e && e.tagName !== 'svg'; e = e.parentElement) {
  const a = e.getAttribute('opacity'); if (a !== null) o *= parseFloat(a);
  const f = e.getAttribute('fill-opacity'); if (f !== null && e === el) o *= parseFloat(f); } return o; };
return [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg, .stVegaLiteChart svg')].map(svg => {
  const title = [...svg.querySelectorAll('.role-title-text text')].map(t => t.textContent).join(' ');
  const cells = [...svg.querySelectorAll('.role-mark.mark-rect path')].map(p => {
    const r = p.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height, fill: p.getAttribute('fill')}; });
  const texts = [...svg.querySelectorAll('text')].filter(t => t.textContent.trim() && t.getClientRects().length)
    .map(t => { const r = t.getBoundingClientRect(); const cx = r.x + r.width / 2, cy = r.y + r.height / 2;
      const under = t.closest('.role-mark') ? cells.find(c => c.x <= cx && cx <= c.x + c.w && c.y <= cy && cy <= c.y + c.h) : null;
      return {text: t.textContent, fill: getComputedStyle(t).fill, opacity: chain(t), under: under ? under.fill : null}; });
  return {title, cells, texts};
});
"""


def rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.strip()
    if colour.startswith("#"):
        h = colour[1:]
        h = "".join(c * 2 for c in h) if len(h) == 3 else h[:6]
        return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]
    parts = colour[colour.index("(") + 1 : colour.index(")")].split(",")
    return tuple(float(p) / 255 for p in parts[:3])  # type: ignore[return-value]


def luminance(c: tuple[float, float, float]) -> float:
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(text: str, opacity: float, background: str | None) -> float:
    """WCAG contrast of a text drawn at `opacity` over `background` (the page's white where None)."""
    back = rgb(background) if background else (1.0, 1.0, 1.0)
    front = tuple(opacity * f + (1 - opacity) * b for f, b in zip(rgb(text), back))
    hi, lo = sorted((luminance(front), luminance(back)), reverse=True)  # type: ignore[arg-type]
    return (hi + 0.05) / (lo + 0.05)


def illegible(chart: dict) -> list[str]:
    """Every text of the chart under 4.5:1, as "text (ratio)"."""
    return [
        f"{t['text']!r} {contrast(t['fill'], t['opacity'], t['under']):.2f}:1"
        for t in chart["texts"]
        if t["opacity"] > 0 and contrast(t["fill"], t["opacity"], t["under"]) < 4.5
    ]


@pytest.fixture
def small_window(browser) -> Iterator:  # noqa: F811
    browser.set_window_size(1280, 800)
    yield browser
    browser.set_window_size(1600, 1400)


def charts(driver) -> list[dict]:
    return driver.execute_script(DRAWN)


def chart(drawn: list[dict], title: str) -> dict:
    found = [c for c in drawn if title in c["title"]]
    assert found, f"no chart titled {title!r} among {[c['title'] for c in drawn]}"
    return found[0]


def test_the_strategies_page_charts_can_be_read(server: str, small_window) -> None:  # noqa: F811
    driver = small_window
    driver.get(server)
    settle(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    driver.find_element(By.XPATH, '//label[.//*[normalize-space(text())="Strategies"]]').click()
    settle(driver, lambda d: "Measure every strategy" in body_text(d))
    button = next(b for b in driver.find_elements(By.TAG_NAME, "button") if b.text == "Measure every strategy")
    button.click()
    settle(driver, lambda d: len(charts(d)) >= 2 and "Measured" in body_text(d), timeout=300)
    drawn = charts(driver)
    latency = chart(drawn, "latency")
    thickness = [c["h"] for c in latency["cells"]]
    print(f"\nlatency bars: {len(thickness)} bars, {min(thickness):.1f}-{max(thickness):.1f} px thick")
    assert len(thickness) >= 2 and min(thickness) >= 8, thickness
    quality = chart(drawn, "by query kind")
    sizes = [(round(c["w"], 1), round(c["h"], 1)) for c in quality["cells"]]
    print(f"quality heat map: {len(sizes)} cells, smallest {min(sizes, key=lambda s: min(s))}")
    assert sizes and min(min(s) for s in sizes) >= 12, sizes
    for c in drawn:
        assert not illegible(c), f"{c['title']}: {illegible(c)}"


@pytest.mark.real_media
def test_the_search_page_charts_can_be_read(server: str, small_window) -> None:  # noqa: F811
    """Late's heat map ("#n" labels on its cells) and the bump chart's labels, at 1280x800."""
    from selenium.webdriver.common.keys import Keys

    driver = small_window
    driver.get(server)
    settle(driver, lambda d: d.find_elements(By.CSS_SELECTOR, 'input[aria-label="Text"]'), timeout=180)
    driver.find_element(By.CSS_SELECTOR, 'input[aria-label="Text"]').send_keys("the digit three", Keys.ENTER)
    settle(driver, lambda d: len(charts(d)) >= 3)
    drawn = charts(driver)
    late = chart(drawn, "Rank in each channel")
    labels = [t for t in late["texts"] if t["text"].startswith("#")]
    assert labels and all(t["under"] for t in labels), "the #n labels sit on their cells"
    lowest = min(contrast(t["fill"], t["opacity"], t["under"]) for t in labels)
    print(f"\nlate's #n labels: lowest contrast {lowest:.2f}:1")
    cells = [(c["w"], c["h"]) for c in late["cells"]]
    assert min(min(c) for c in cells) >= 12, cells
    bump = chart(drawn, "Rank of each item")
    print(f"bump labels: lowest contrast {min(contrast(t['fill'], t['opacity'], None) for t in bump['texts']):.2f}:1")
    for c in drawn:
        assert not illegible(c), f"{c['title']}: {illegible(c)}"
