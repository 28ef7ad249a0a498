"""Component transitions POSTed to ALERT_WEBHOOK_URL: Slack-compatible JSON,
retried when the receiver fails for a while, and never in the probes' way."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from faults import HangingListener
from helpers import StandinService, wait_until

from exporter.config import AlertWebhookConfig, MonitorConfig, load_config
from exporter.monitor import Monitor
from exporter.notify import TransitionNotifier

pytestmark = pytest.mark.integration

SLACK_SECRET_PATH = "/services/T000/B000/Xsecretpath"


@dataclass
class CaptureServer:
    """A port-0 webhook receiver; answers each POST with the next status in ``plan``."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)
    attempts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        status = self.plan.pop(0) if self.plan else 200
        if status < 300:
            self.received.append(await request.json())
            self.content_types.append(request.content_type)
        return web.Response(status=status, text="ok" if status < 300 else "no")


@pytest.fixture
async def capture_server() -> AsyncIterator[CaptureServer]:
    server = CaptureServer()
    app = web.Application()
    app.router.add_post(SLACK_SECRET_PATH, server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}{SLACK_SECRET_PATH}"
    yield server
    await runner.cleanup()


def monitor_config(
    tmp_path: Path, standin_url: str, webhook: str, interval: float = 10, timeout: float = 1
) -> MonitorConfig:
    """A one-component config whose webhook comes from ALERT_WEBHOOK_URL, as in the seed."""
    path = tmp_path / "pipeline.yml"
    probe = {"type": "http", "url": standin_url, "timeout": timeout}
    path.write_text(
        json.dumps(
            {
                "check_interval": interval,
                "components": {"validation_service": {"probes": [probe]}},
            }
        )
    )
    return load_config(MonitorConfig, path, environ={"ALERT_WEBHOOK_URL": webhook})


async def test_a_transition_is_posted_as_slack_json(
    tmp_path: Path,
    make_monitor: Callable[..., Monitor],
    standin_service: StandinService,
    capture_server: CaptureServer,
) -> None:
    monitor = make_monitor(monitor_config(tmp_path, standin_service.url, capture_server.url))
    await monitor.start()  # the first cycle runs at once: unknown -> healthy
    await wait_until(lambda: len(capture_server.received) == 1, message="the first POST")
    first = capture_server.received[0]
    assert first["text"] == "✅ Pipeline Alert: validation_service is healthy (was unknown)"

    standin_service.error(503)
    await monitor.scheduler.run_cycle()
    await monitor.scheduler.run_cycle()  # still unhealthy: no second message
    await wait_until(lambda: len(capture_server.received) == 2, message="the second POST")
    message = capture_server.received[1]
    assert isinstance(message["text"], str)
    assert message["text"] == (
        "🚨 Pipeline Alert: validation_service is unhealthy (was healthy):"
        f" {standin_service.url} answered HTTP 503"
    )
    assert message["component"] == "validation_service"
    assert message["display_name"] == "Article checks"
    assert (message["status"], message["previous_status"]) == ("unhealthy", "healthy")
    assert message["timestamp"].endswith("+00:00")
    assert capture_server.content_types == ["application/json"] * 2
    await asyncio.sleep(0.1)
    assert len(capture_server.received) == 2


async def test_a_failing_receiver_gets_it_on_retry(capture_server: CaptureServer) -> None:
    capture_server.plan = [500, 503]
    async with aiohttp.ClientSession() as session:
        notifier = TransitionNotifier(
            AlertWebhookConfig(url=capture_server.url, retries=3), session, backoff=0.01
        )
        notifier.start()
        notifier.submit({"text": "🚨 Pipeline Alert: queue is unhealthy", "component": "queue"})
        await notifier.stop(drain_timeout=5)
    assert capture_server.attempts == 3
    assert capture_server.received == [
        {"text": "🚨 Pipeline Alert: queue is unhealthy", "component": "queue"}
    ]
    assert (notifier.sent, notifier.failed) == (1, 0)


async def test_a_rejected_message_is_not_retried(
    capture_server: CaptureServer, caplog: pytest.LogCaptureFixture
) -> None:
    capture_server.plan = [400]
    async with aiohttp.ClientSession() as session:
        notifier = TransitionNotifier(
            AlertWebhookConfig(url=capture_server.url, retries=3), session, backoff=0.01
        )
        notifier.start()
        with caplog.at_level(logging.WARNING, logger="exporter.notify"):
            notifier.submit({"text": "x", "component": "queue"})
            await notifier.stop(drain_timeout=5)
    assert capture_server.attempts == 1
    assert (notifier.sent, notifier.failed) == (0, 1)
    assert "giving up on queue notification: HTTP 400" in caplog.text
    assert SLACK_SECRET_PATH not in caplog.text  # Slack's secret is in the path


@pytest.mark.parametrize("dead", ["hanging", "refused"])
async def test_a_dead_webhook_never_delays_probing(
    tmp_path: Path,
    make_monitor: Callable[..., Monitor],
    standin_service: StandinService,
    unused_port: int,
    dead: str,
) -> None:
    with HangingListener() as listener:
        port = listener.port if dead == "hanging" else unused_port
        config = monitor_config(
            tmp_path,
            standin_service.url,
            f"http://127.0.0.1:{port}/hook",
            interval=0.2,
            timeout=0.15,
        )
        monitor = make_monitor(config)
        component = monitor.state.components["validation_service"]

        def flap() -> None:  # a transition, hence a notification, on every run
            if component.status.value == "healthy":
                standin_service.error()
            else:
                standin_service.ok()

        monitor.state.add_listener(lambda _: flap())
        await monitor.start()
        started = time.monotonic()
        await wait_until(lambda: component.runs >= 6, timeout=3, message="six runs")
        elapsed = time.monotonic() - started
        assert elapsed < 6 * 0.2 + 1.0, f"probing slowed down: {elapsed:.2f}s for 6 runs"
        assert len(component.transitions) >= 5
        assert monitor.notifier is not None and monitor.notifier.sent == 0
        before = time.perf_counter()
        await monitor.scheduler.run_cycle()
        assert time.perf_counter() - before < 0.2
        before = time.perf_counter()
        await monitor.stop()  # gives up on the queue after its drain timeout
        assert time.perf_counter() - before < 3.0
