#!/usr/bin/env python3
"""Screenshots of the editors' status page in its three states, taken for real.

    .venv/bin/python docs/screenshots.py [--out docs/screenshots]

Starts the monitor (``recovery_webhook.app.make_app``) on a loopback port against
real services on this host: PostgreSQL on 127.0.0.1:5432 (user postgres),
RabbitMQ on 127.0.0.1:5672 (guest/guest) with a queue of its own, a storage
directory, and a stand-in for the article validation service. Then it puts the
pipeline into each state for real and photographs the page with headless
Chromium (Debian's ``/usr/bin/chromium``; nothing is downloaded):

* operational: everything answers;
* delayed: real messages pile up in the queue past its backlog threshold;
* down: the validation service fails, Alertmanager's notification arrives at the
  webhook, the repair is handed to engineers (the seed's validation service is
  not auto-recoverable).

Each at desktop (1280x800) and phone (390x844) size: ``operational-desktop.png``,
``operational-phone.png``, ``delayed-…``, ``down-…``. The queue is deleted at the end.

Then the demo pipeline that `make run` starts without a config, green, broken and
repaired by the loop (``demo-*.png``, docs/demo_screenshots.py). ``--only states``
or ``--only demo`` makes one set.

The :class:`Stack` here is also what the browser tests drive (tests/browser).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "docs"):  # run as a script from anywhere
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from recovery_webhook.app import make_app  # noqa: E402
from recovery_webhook.config import AppConfig  # noqa: E402

T = TypeVar("T")

POSTGRES_DSN = os.environ.get(
    "PIPELINE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("PIPELINE_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CHROMIUM = os.environ.get("PIPELINE_CHROMIUM", "/usr/bin/chromium")
# No network beyond loopback, no first-run chores, no background downloads.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TOKEN = "status-page-demo-token-" + "x" * 8


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


class ValidationStandin:
    """The article validation service's /health, as the stack tells it to answer.

    ``ok``: 200 ``{"status": "ok"}``; ``broken``: 503; ``odd``: 200 with the JSON
    ``status`` set to :attr:`odd_status` (the probe's error then quotes it).
    ``POST /restart`` is a repair hook: it waits until :meth:`release_restart`,
    then answers ``ok`` again.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.odd_status = ""
        self.restarts = 0
        self._restart_gate = threading.Event()
        self.base_url = ""

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "broken":
            return web.json_response({"status": "failing"}, status=503)
        if self.mode == "odd":
            return web.json_response({"status": self.odd_status})
        return web.json_response({"status": "ok"})

    async def restart(self, request: web.Request) -> web.Response:
        self.restarts += 1
        while not self._restart_gate.is_set():
            await asyncio.sleep(0.05)
        self.mode = "ok"
        return web.json_response({"restarted": True})

    def release_restart(self) -> None:
        self._restart_gate.set()


class Stack:
    """The monitor on a loopback port, watching real services, on its own thread.

    Use as a context manager. Everything it starts (the event loop thread, the
    monitor, the stand-in, the RabbitMQ queue) is stopped or deleted on exit.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        check_interval: float = 0.5,
        refresh_seconds: int = 1,
        backlog_degraded: int = 5,
        repairable_validation: bool = False,
        display_names: dict[str, str] | None = None,
        timezone_name: str = "UTC",
        postgres_dsn: str = POSTGRES_DSN,
        amqp_url: str = AMQP_URL,
    ) -> None:
        self.state_dir = state_dir
        self.check_interval = check_interval
        self.refresh_seconds = refresh_seconds
        self.backlog_degraded = backlog_degraded
        self.repairable_validation = repairable_validation
        self.display_names = display_names or {}
        self.timezone_name = timezone_name
        self.postgres_dsn = postgres_dsn
        self.amqp_url = amqp_url
        self.queue = f"pipeline-status-page-{uuid.uuid4().hex[:12]}"
        self.standin = ValidationStandin()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stack", daemon=True)
        self._standin_runner: web.AppRunner | None = None
        self._monitor_runner: web.AppRunner | None = None
        self.config: AppConfig | None = None

    # -- life cycle ------------------------------------------------------------

    def __enter__(self) -> Stack:
        self._thread.start()
        try:
            self._declare_queue()
            self._run(self._start_standin())
            self.config = self._make_config()
            self.start_monitor()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._thread.is_alive():
                self.stop_monitor()
                if self._standin_runner is not None:
                    self.standin.release_restart()
                    self._run(self._standin_runner.cleanup())
                    self._standin_runner = None
        finally:
            try:
                self._delete_queue()
            finally:
                if self._thread.is_alive():
                    self._loop.call_soon_threadsafe(self._loop.stop)
                    self._thread.join(10)
                if not self._loop.is_running():
                    self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start_standin(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.standin.health)
        app.router.add_post("/restart", self.standin.restart)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._standin_runner = runner
        self.standin.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"

    def start_monitor(self) -> None:
        """Start (or restart, on the same port) the monitor."""
        assert self.config is not None
        self._run(self._start_monitor(self.config))

    async def _start_monitor(self, config: AppConfig) -> None:
        runner = web.AppRunner(make_app(config, token=TOKEN), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._monitor_runner = runner
        self.port = runner.addresses[0][1]

    def stop_monitor(self) -> None:
        if self._monitor_runner is not None:
            self._run(self._monitor_runner.cleanup())
            self._monitor_runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- config -----------------------------------------------------------------

    def _make_config(self) -> AppConfig:
        timeout = round(self.check_interval * 0.9, 3)
        names = self.display_names

        def component(probe: dict[str, Any], name: str) -> dict[str, Any]:
            found: dict[str, Any] = {"probes": [{**probe, "timeout": timeout}]}
            if name in names:
                found["display_name"] = names[name]
            return found

        validation_actions = (
            [{"type": "http", "url": f"{self.standin.base_url}/restart", "timeout": 60}]
            if self.repairable_validation
            else []
        )
        down = ["PipelineComponentDown", "ManualRecovery"]
        targets = [_address(self.postgres_dsn), _address(self.amqp_url)]
        reconnect = [{"type": "reconnect"}]
        data: dict[str, Any] = {
            "check_interval": self.check_interval,
            "state_dir": str(self.state_dir),
            "components": {
                "network": component({"type": "tcp", "targets": targets}, "network"),
                "validation_service": component(
                    {
                        "type": "http",
                        "url": f"{self.standin.base_url}/health",
                        "json_match": {"status": "ok"},
                    },
                    "validation_service",
                ),
                "database": component({"type": "postgres", "dsn": self.postgres_dsn}, "database"),
                "storage": component(
                    {
                        "type": "filesystem",
                        "path": str(self.state_dir / "storage"),
                        "create_missing": True,
                    },
                    "storage",
                ),
                "queue": component(
                    {
                        "type": "rabbitmq",
                        "url": self.amqp_url,
                        "queues": [{"name": self.queue, "backlog_degraded": self.backlog_degraded}],
                    },
                    "queue",
                ),
            },
            "recovery": {
                "retry_delay": 60,
                "verify_timeout": 10,
                "verify_interval": 0.2,
                "rules": [
                    {"alertname": down, "component": "network", "actions": reconnect},
                    {
                        "alertname": down,
                        "component": "validation_service",
                        "actions": validation_actions,
                    },
                    {"alertname": down, "component": "database", "actions": reconnect},
                    {"alertname": down, "component": "queue", "actions": reconnect},
                ],
            },
            "audit": {"file": str(self.state_dir / "audit.log")},
            "status_page": {
                "refresh_seconds": self.refresh_seconds,
                "timezone": self.timezone_name,
                "newsroom_contact": "the news desk on call (ext. 4410)",
            },
        }
        return AppConfig.model_validate(data)

    # -- the real services, put into a state --------------------------------------

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        import pika

        params = pika.URLParameters(self.amqp_url)
        params.socket_timeout = params.stack_timeout = 5
        params.connection_attempts = 1
        connection = pika.BlockingConnection(params)
        try:
            yield connection.channel()
        finally:
            connection.close()

    def _declare_queue(self) -> None:
        with self._channel() as channel:
            channel.queue_declare(self.queue, durable=False, auto_delete=False)

    def _delete_queue(self) -> None:
        try:
            with self._channel() as channel:
                channel.queue_delete(self.queue)
        except Exception as exc:  # cleanup must not hide the real error
            print(f"could not delete RabbitMQ queue {self.queue}: {exc}", file=sys.stderr)

    def fill_queue(self, extra: int = 10) -> None:
        """Publish real messages until the backlog is ``extra`` over its threshold."""
        with self._channel() as channel:
            channel.confirm_delivery()
            for n in range(self.backlog_degraded + extra):
                channel.basic_publish("", self.queue, json.dumps({"article": n}).encode())

    def drain_queue(self) -> None:
        """Consume every waiting message, as the publisher would."""
        with self._channel() as channel:
            while True:
                method, _props, _body = channel.basic_get(self.queue, auto_ack=True)
                if method is None:
                    return

    def send_alert(
        self, component: str, alertname: str = "PipelineComponentDown", status: str = "firing"
    ) -> dict[str, Any]:
        """What Alertmanager sends to the webhook when the rule fires."""
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        payload = {
            "version": "4",
            "status": status,
            "receiver": "pipeline-recovery",
            "groupKey": f'{{}}:{{component="{component}"}}',
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": alertname,
                        "component": component,
                        "severity": "critical",
                    },
                    "annotations": {"summary": f"{component} is down"},
                    "startsAt": now,
                    "fingerprint": uuid.uuid4().hex[:16],
                }
            ],
        }
        request = urllib.request.Request(
            f"{self.url}/api/alertmanager/webhook",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.load(response)
        return answer

    # -- reading it back ------------------------------------------------------------

    def editor_message(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/api/pipeline/editor-message", timeout=5) as r:
            data: dict[str, Any] = json.load(r)
        return data

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20.0
    ) -> dict[str, Any]:
        """Poll the editor message until ``condition`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        data: dict[str, Any] = {}
        while True:
            try:
                data = self.editor_message()
                if condition(data):
                    return data
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what} did not happen within {timeout:g}s; last editor message:\n"
                    + json.dumps(data, indent=2)[:3000]
                )
            time.sleep(0.1)

    def wait_state(self, state: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(lambda d: d.get("state") == state, f"state {state!r}", timeout)


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def shoot(browser: Any, url: str, state: str, out: Path) -> list[Path]:
    """Desktop and phone screenshots of the page once it shows ``state``."""
    saved = []
    # The desktop shot shows the whole page; the phone shot what a phone shows
    # on opening it, which is the point: the answer at a glance.
    for label, viewport, scale in (("desktop", DESKTOP, 1), ("phone", PHONE, 2)):
        context = browser.new_context(
            viewport=viewport,
            device_scale_factor=scale,
            is_mobile=label == "phone",
            has_touch=label == "phone",
            locale="en-GB",
        )
        try:
            page = context.new_page()
            page.goto(url)
            page.locator(f"#hero.state-{state} #answer-current:not([hidden])").wait_for(
                timeout=20_000
            )
            page.locator("#components .row").first.wait_for(timeout=20_000)
            path = out / f"{state}-{label}.png"
            page.screenshot(path=str(path), full_page=label == "desktop", animations="disabled")
            saved.append(path)
        finally:
            context.close()
    return saved


def take_screenshots(out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with (
        tempfile.TemporaryDirectory(prefix="status-page-") as tmp,
        Stack(Path(tmp)) as stack,
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright)
        try:
            stack.wait_state("operational")
            saved += shoot(browser, stack.url, "operational", out)

            stack.fill_queue()
            stack.wait_state("delayed")
            saved += shoot(browser, stack.url, "delayed", out)
            stack.drain_queue()
            stack.wait_state("operational")

            stack.standin.mode = "broken"
            stack.wait_state("down")
            stack.send_alert("validation_service")
            stack.wait_for(
                lambda d: any(c["manual_intervention"] for c in d["components"]),
                "the hand-over to engineers",
            )
            saved += shoot(browser, stack.url, "down", out)
            stack.standin.mode = "ok"
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "screenshots",
        help="directory for the PNGs (default: docs/screenshots)",
    )
    parser.add_argument(
        "--only", choices=["states", "demo"], help="only the three states, or only the demo"
    )
    args = parser.parse_args(argv)
    saved = [] if args.only == "demo" else take_screenshots(args.out)
    if args.only != "states":
        from demo_screenshots import take_demo_screenshots  # docs/, beside this file

        saved += take_demo_screenshots(args.out)
    for path in saved:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
