"""Fixtures of the status page's browser tests.

The monitor runs for real (``recovery_webhook.app.make_app`` on a loopback port,
on its own event-loop thread) against the real PostgreSQL and RabbitMQ on this
host and a stand-in validation service: the :class:`Stack` of
``docs/screenshots.py``, so that the screenshots and the tests put the pipeline
into its states the same way. Headless Chromium is Debian's ``/usr/bin/chromium``
driven by Playwright's Python package; no browser is ever downloaded.

Every page a test opens records its requests, the Content-Security-Policy
violations it reports and the console errors, and fails the test at teardown if
a request left the monitor's origin or the policy blocked anything.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .pagecheck import Tab

REPO = Path(__file__).resolve().parents[2]


def _load_screenshots() -> Any:
    spec = importlib.util.spec_from_file_location(
        "docs_screenshots", REPO / "docs" / "screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


screenshots = _load_screenshots()
Stack = screenshots.Stack
SCREENSHOTS_SCRIPT = REPO / "docs" / "screenshots.py"

# Runs in the page before its own script: records what the page's CSP blocks.
_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(screenshots.CHROMIUM).exists():
        pytest.fail(
            f"{screenshots.CHROMIUM} is missing: install Debian's chromium (make test-deps);"
            " browser tests never skip",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = screenshots.launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def make_stack(tmp_path: Path, amqp_url: str, pg_dsn: str) -> Iterator[Callable[..., Any]]:
    """``make_stack(**options)`` -> a running :class:`Stack`, closed after the test.

    Asking for ``amqp_url`` and ``pg_dsn`` fails the test plainly when RabbitMQ or
    PostgreSQL is not running, before anything is started.
    """
    stacks: list[Any] = []

    def make(**options: Any) -> Any:
        options = {"postgres_dsn": pg_dsn, "amqp_url": amqp_url, **options}
        stack = Stack(tmp_path / f"stack{len(stacks)}", **options)
        stack.__enter__()
        stacks.append(stack)
        return stack

    yield make
    for stack in reversed(stacks):
        stack.close()


@pytest.fixture
def stack(make_stack: Callable[..., Any]) -> Any:
    return make_stack()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Tab]]:
    """``open_page(stack, width=1280, height=800)`` -> a :class:`Tab` showing the page."""
    contexts: list[Any] = []
    tabs: list[Tab] = []

    def open_(stack: Any, width: int = 1280, height: int = 800) -> Tab:
        context = browser.new_context(viewport={"width": width, "height": height}, locale="en-GB")
        contexts.append(context)
        context.add_init_script(_RECORDER)
        page = context.new_page()
        page.set_default_timeout(15_000)
        tab = Tab(page, stack.url)
        page.on("request", lambda request: tab.requests.append(request.url))
        page.on(
            "console",
            lambda message: (
                tab.console_errors.append(message.text) if message.type == "error" else None
            ),
        )

        def navigated(frame: Any) -> None:
            if frame == page.main_frame:
                tab.navigations += 1

        page.on("framenavigated", navigated)
        tabs.append(tab)
        return tab.open()

    yield open_
    try:
        for tab in tabs:
            if not tab.page.is_closed():
                assert tab.csp_violations() == [], "the page's CSP blocked something"
            assert tab.foreign_requests() == [], "the page made requests off its origin"
    finally:
        for context in contexts:
            context.close()
