"""What the browser tests check inside the page: a tab that records what it did,
WCAG contrast, horizontal scrolling, and polling with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tab:
    """A page of the status page, with what it did recorded."""

    page: Any
    origin: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    navigations: int = 0

    def open(self) -> Tab:
        self.page.goto(self.origin + "/")
        return self

    def csp_violations(self) -> list[str]:
        return list(self.page.evaluate("window.__cspViolations || []"))

    def foreign_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if not (url == self.origin or url.startswith(self.origin + "/"))
        ]


# -- checks run inside the page ------------------------------------------------------

_CONTRAST = """
() => {
  function rgba(text) {
    const m = text.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  }
  function over(top, bottom) {
    const a = top.a + bottom.a * (1 - top.a);
    const mix = (t, b) => (t * top.a + b * bottom.a * (1 - top.a)) / (a || 1);
    return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a: a };
  }
  function background(el) {
    const layers = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const c = rgba(getComputedStyle(node).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let colour = { r: 255, g: 255, b: 255, a: 1 };
    for (let i = layers.length - 1; i >= 0; i--) colour = over(layers[i], colour);
    return colour;
  }
  function luminance(c) {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  }
  const results = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || seen.has(el) || !node.textContent.trim()) continue;
    seen.add(el);
    if (!el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    if (el.closest("[hidden], template, noscript, svg")) continue;
    const bg = background(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    const l1 = luminance(fg), l2 = luminance(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    results.push({ text: node.textContent.trim().slice(0, 60), ratio: ratio,
                   fg: getComputedStyle(el).color, bg: [bg.r, bg.g, bg.b].join(",") });
  }
  return results;
}
"""


def assert_contrast(tab: Tab, minimum: float = 4.5) -> int:
    """Every visible text on the page has WCAG contrast >= ``minimum``; returns the count."""
    results = tab.page.evaluate(_CONTRAST)
    low = [r for r in results if r["ratio"] < minimum]
    assert not low, f"text below {minimum}:1 contrast: {low}"
    return len(results)


def assert_no_horizontal_scroll(tab: Tab) -> None:
    widths = tab.page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth]"
    )
    scroll, client, body = widths
    assert scroll <= client and body <= client, f"horizontal scroll: {widths}"


def wait_until(tab: Tab, condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` while the page runs (its events are delivered only
    while Playwright waits, not during a plain ``time.sleep``)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        tab.page.wait_for_timeout(100)
