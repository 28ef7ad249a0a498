"""Screenshots of the demo pipeline that `make run` starts without a config.

Run by docs/screenshots.py. It starts the local stack as `make run` does
(deploy/localstack.py, with a temporary HOME so that the demo's state is new),
photographs the page when the demo is green, breaks the demo with
``deploy/demo.py break`` (what `make demo-break` runs), photographs the page while
it says not to publish, and again once the loop has repaired it, with the
incident listed. Desktop size: ``demo-operational.png``, ``demo-broken.png``,
``demo-repaired.png``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 800}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _state(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/api/pipeline/editor-message", timeout=3) as answer:
            data: dict[str, Any] = json.load(answer)
    except (OSError, ValueError):
        return None
    return str(data.get("state"))


def _wait(condition: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the demo: {what} did not happen within {timeout:g}s")
        time.sleep(0.2)


def take_demo_screenshots(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright
    from screenshots import launch_chromium

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            return shoot_demo(browser, out)
        finally:
            browser.close()


def shoot_demo(browser: Any, out: Path) -> list[Path]:
    ports = [_free_port() for _ in range(3)]
    url = f"http://127.0.0.1:{ports[0]}"
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="demo-shots-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "XDG_"))}
        env["HOME"] = home
        if os.environ.get("PIPELINE_LOCAL_SERVERS"):
            env["PIPELINE_LOCAL_SERVERS"] = os.environ["PIPELINE_LOCAL_SERVERS"]
        stack = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "deploy" / "localstack.py"),
                "--port",
                str(ports[0]),
                "--prometheus-port",
                str(ports[1]),
                "--alertmanager-port",
                str(ports[2]),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        up = threading.Event()

        def read() -> None:
            assert stack.stdout is not None
            for line in stack.stdout:
                if b"Ctrl-C stops everything" in line:
                    up.set()

        threading.Thread(target=read, daemon=True).start()
        context = browser.new_context(viewport=DESKTOP, locale="en-GB")
        try:
            if not up.wait(300):
                raise RuntimeError("the demo's local stack did not come up")
            page = context.new_page()
            page.goto(url)

            def shot(state: str, name: str, incident: bool = False) -> None:
                page.locator(f"#hero.state-{state} #answer-current:not([hidden])").wait_for(
                    timeout=60_000
                )
                if incident:
                    page.locator("#incidents .row").first.wait_for(timeout=30_000)
                path = out / f"demo-{name}.png"
                page.screenshot(path=str(path), full_page=True, animations="disabled")
                saved.append(path)

            _wait(lambda: _state(url) == "operational", "green", 60)
            shot("operational", "operational")
            subprocess.run(
                [sys.executable, str(ROOT / "deploy" / "demo.py"), "break"],
                env=env,
                check=True,
                capture_output=True,
            )
            shot("down", "broken")
            _wait(lambda: _state(url) == "operational", "green again", 120)
            shot("operational", "repaired", incident=True)
        finally:
            context.close()
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(60)
            if stack.stdout is not None:
                stack.stdout.close()
    return saved
