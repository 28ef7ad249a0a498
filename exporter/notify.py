"""POST each component transition to ``ALERT_WEBHOOK_URL`` (Slack-compatible).

Sends from a queue on a background task, with retries and backoff, so that a
slow or dead webhook never delays a probe. When the queue is full the oldest
notification is dropped (and counted): the newest state matters most.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from exporter.config import AlertWebhookConfig
from exporter.model import Status
from exporter.probes.base import describe_error
from exporter.state import Transition

log = logging.getLogger(__name__)

_ICONS = {Status.HEALTHY: "✅", Status.DEGRADED: "⚠️", Status.UNHEALTHY: "🚨"}


def transition_message(transition: Transition, display_name: str) -> dict[str, Any]:
    icon = _ICONS.get(transition.to_status, "ℹ️")
    text = (
        f"{icon} Pipeline Alert: {transition.component} is {transition.to_status.value}"
        f" (was {transition.from_status.value})"
    )
    if transition.error:
        text += f": {transition.error}"
    return {
        "text": text,
        "component": transition.component,
        "display_name": display_name,
        "status": transition.to_status.value,
        "previous_status": transition.from_status.value,
        "error": transition.error,
        "timestamp": datetime.fromtimestamp(transition.at, timezone.utc).isoformat(),
    }


class TransitionNotifier:
    def __init__(
        self,
        config: AlertWebhookConfig,
        session: aiohttp.ClientSession,
        max_queue: int = 1000,
        backoff: float = 1.0,
    ) -> None:
        if config.url is None:
            raise ValueError("no alert webhook URL configured")
        self._url = config.url
        self._config = config
        self._session = session
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def submit(self, message: dict[str, Any]) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()  # or stop() would wait for it forever
            self.dropped += 1
            log.warning("alert webhook queue full: dropped the oldest notification")
        self._queue.put_nowait(message)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alert-webhook")

    async def stop(self, drain_timeout: float = 2.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        except asyncio.TimeoutError:
            log.warning(
                "alert webhook: %d notification(s) not sent at shutdown", self._queue.qsize()
            )
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self._send(message)
            finally:
                self._queue.task_done()

    async def _send(self, message: dict[str, Any]) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        for attempt in range(self._config.retries + 1):
            try:
                async with self._session.post(self._url, json=message, timeout=timeout) as resp:
                    if resp.status < 300:
                        self.sent += 1
                        return
                    error = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status != 429:
                        break  # the receiver rejects it: retrying will not help
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = describe_error(exc) or "timeout"
            if attempt < self._config.retries:
                await asyncio.sleep(self._backoff * 2**attempt)
        self.failed += 1
        # Slack keeps its secret in the URL's path: name only the host.
        log.warning(
            "alert webhook at %s: giving up on %s notification: %s",
            urlsplit(self._url).netloc,
            message.get("component"),
            error,
        )
