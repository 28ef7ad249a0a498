"""The seed's Python API, on the same core as the ``pipeline-monitor`` service.

    from pipeline_monitor import PipelineHealthMonitor, PipelineComponent
    import asyncio

    monitor = PipelineHealthMonitor(check_interval=30)
    monitor.start_monitoring()
    status = monitor.get_pipeline_status()
    print(status.overall_status.value, status.uptime_percentage)
    print(monitor.get_editor_message())
    attempt = asyncio.run(monitor.attempt_recovery(PipelineComponent.NETWORK))
    print(attempt.success, attempt.attempt_id, attempt.error_message)
    monitor.stop_monitoring()

Monitoring runs on its own thread with its own event loop, so the calls above
work from plain synchronous code and from any other event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from exporter.config import load_config
from exporter.model import Status
from exporter.state import Transition
from recovery_webhook.config import AppConfig
from recovery_webhook.schemas import Attempt, PipelineStatus
from recovery_webhook.service import PipelineService

__all__ = [
    "ComponentName",
    "HealthStatus",
    "PipelineComponent",
    "PipelineHealthMonitor",
    "PipelineStatus",
    "RecoveryAttempt",
]

log = logging.getLogger("pipeline_monitor")
T = TypeVar("T")

HealthStatus = Status


class PipelineComponent(str, enum.Enum):
    NETWORK = "network"
    VALIDATION_SERVICE = "validation_service"
    DATABASE = "database"
    STORAGE = "storage"
    QUEUE = "queue"


class ComponentName(str):
    """A configured component beyond the seed's five; has ``.value`` like them."""

    @property
    def value(self) -> str:
        return str(self)


def component_ref(name: str) -> PipelineComponent | ComponentName:
    try:
        return PipelineComponent(name)
    except ValueError:
        return ComponentName(name)


# The models of GET /api/pipeline/status and of an attempt's JSON: the seed's
# attribute names are their field names (``details`` is ``component_details``).
RecoveryAttempt = Attempt


AlertCallback = Callable[[Any, Status], None]


class PipelineHealthMonitor:
    def __init__(
        self,
        check_interval: float | None = None,
        alert_callback: AlertCallback | None = None,
        config: AppConfig | str | Path | None = None,
    ) -> None:
        if check_interval is not None and not check_interval > 0:
            raise ValueError(f"check_interval must be > 0 seconds, got {check_interval!r}")
        if isinstance(config, AppConfig):
            loaded = config
            if check_interval is not None:
                # Probe timeouts are explicit in a built config: they must still fit.
                loaded = AppConfig.model_validate(
                    {**config.model_dump(), "check_interval": check_interval}
                )
        else:
            # Through the loader, as PIPELINE_CHECK_INTERVAL would be: default probe
            # timeouts are then derived from this interval.
            environ = dict(os.environ)
            if check_interval is not None:
                environ["PIPELINE_CHECK_INTERVAL"] = str(check_interval)
            loaded = load_config(AppConfig, config, environ)
        self.config = loaded
        self.check_interval = loaded.check_interval
        self.alert_callback = alert_callback
        self._service: PipelineService | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start_monitoring(self, wait: float = 30.0) -> None:
        """Start probing in the background; return after the first check."""
        if self._thread is not None:
            return
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="pipeline-monitor", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=wait)
        except BaseException:
            # Not started: leave nothing half-alive for stop_monitoring to trip on.
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(wait)
            self._thread = None
            self._loop = None
            raise

    def stop_monitoring(self, wait: float = 30.0) -> None:
        if self._thread is None or self._loop is None:
            return
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(wait)
        self._thread = None
        self._loop = None
        self._service = None

    def __enter__(self) -> PipelineHealthMonitor:
        self.start_monitoring()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_monitoring()

    def _run(self, ready: Future[None]) -> None:
        asyncio.run(self._main(ready))

    async def _main(self, ready: Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        service = PipelineService(self.config)
        try:
            await service.start()
            service.monitor.state.add_listener(self._on_transition)
            await service.monitor.scheduler.run_cycle()
        except BaseException as exc:
            ready.set_exception(exc)
            await service.stop()
            raise
        self._service = service
        ready.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await service.stop()

    def _on_transition(self, transition: Transition) -> None:
        if self.alert_callback is None:
            return
        try:
            self.alert_callback(component_ref(transition.component), transition.to_status)
        except Exception:  # the caller's callback must not stop monitoring
            log.exception("alert_callback failed for %s", transition.component)

    def _call(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None or self._service is None:
            coro.close()
            raise RuntimeError("monitoring is not running: call start_monitoring() first")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    @property
    def service(self) -> PipelineService:
        if self._service is None:
            raise RuntimeError("monitoring is not running: call start_monitoring() first")
        return self._service

    # -- the seed's calls --------------------------------------------------------

    def get_pipeline_status(self, timeout: float = 10.0) -> PipelineStatus:
        return self._call(self.service.answers.status()).result(timeout)

    def get_editor_message(self) -> str:
        async def message() -> str:
            return self.service.answers.editor().message

        return self._call(message()).result(10.0)

    async def attempt_recovery(self, component: PipelineComponent | str) -> RecoveryAttempt:
        """Run the component's repair now (from any event loop) and return the attempt."""
        name = component.value if isinstance(component, enum.Enum) else str(component)
        if name not in self.config.components:
            raise ValueError(
                f"unknown component {name!r}; configured: {', '.join(self.config.components)}"
            )
        return await asyncio.wrap_future(self._call(self.service.attempt_recovery(name)))

    def force_check(self, timeout: float = 60.0) -> PipelineStatus:
        self._call(self.service.force_check()).result(timeout)
        return self.get_pipeline_status()
