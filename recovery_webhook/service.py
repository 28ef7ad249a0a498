"""The product's core, shared by the HTTP service and the seed's Python API: the
monitor, the store, the group, the recovery engine, started and stopped together;
:mod:`recovery_webhook.answers` says what they answer."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

from exporter import __version__
from exporter.audit import AuditLog
from exporter.monitor import Monitor
from exporter.private_files import open_private, private_directory
from exporter.state import Transition
from recovery_webhook import slo
from recovery_webhook.actions.reaper import GRACE as REAPER_GRACE
from recovery_webhook.actions.reaper import Reaper
from recovery_webhook.answers import Answers
from recovery_webhook.config import AppConfig
from recovery_webhook.engine import RecoveryEngine
from recovery_webhook.group import Group
from recovery_webhook.leases import Leases
from recovery_webhook.recorder import Recorder
from recovery_webhook.schemas import Attempt
from recovery_webhook.store import StoreError, make_store

log = logging.getLogger(__name__)

_HOUSEKEEPING_SECONDS = 15.0


class StateDirInUse(RuntimeError):
    """Another monitor holds the state directory (history, heartbeat, token)."""


def lock_state_dir(state_dir: Path) -> int:
    """Hold ``state_dir/monitor.lock`` for this process; return the descriptor.

    Two monitors on one state directory would write each other's heartbeats and
    stop events into one history and make its uptime figures wrong.
    """
    private_directory(state_dir)
    fd = open_private(state_dir / "monitor.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise StateDirInUse(
            f"{state_dir} is in use by another pipeline-monitor (pid {holder});"
            " give each monitor its own PIPELINE_STATE_DIR"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class PipelineService:
    def __init__(self, config: AppConfig, audit: AuditLog | None = None) -> None:
        self.config = config
        self.audit = audit if audit is not None else AuditLog(config.audit)
        self._owns_audit = audit is None
        self.monitor = Monitor(config, audit=self.audit)
        self.name = config.instance_name()
        self.store = make_store(config.history_url, config.history_path, self.name)
        ttl = config.recovery.lease_ttl
        interval = config.check_interval
        # Beats often enough to renew the group's leases (a third of their life)
        # and to see another monitor's view within a check or two.
        beat = max(0.5, min(interval, ttl / 4, 5.0))
        self.group = Group(self.store, self.monitor.state, self.name, beat, 3 * beat + interval)
        self.leases = Leases(self.store.leases, self.group.incarnation, self.name, ttl)
        self.reaper = Reaper(grace=min(REAPER_GRACE, ttl / 4))
        self.engine = RecoveryEngine(
            config, self.monitor, self.store, self.audit, self.group, self.leases, self.reaper
        )
        self.recorder = Recorder(self.store, self.monitor.state, self.group, self.leases)
        slo.export_objective(self.monitor.registry, config.slo)
        self.answers = Answers(self)
        self.started_at = time.time()
        self._stack = contextlib.AsyncExitStack()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; if one fails, what started before it stops again."""
        async with contextlib.AsyncExitStack() as stack:
            lock = lock_state_dir(self.config.state_dir)
            stack.callback(os.close, lock)
            # A group's store may be the very database that is down: start
            # anyway, and catch up once it answers.
            await self.store.open(wait=self.config.history_url is None)
            stack.push_async_callback(self.store.close)
            self.store.events.add(
                [
                    (
                        time.time(),
                        "monitor_started",
                        None,
                        self.recorder.lifecycle_data(version=__version__),
                    )
                ],
                self.name,
            )
            await self.reaper.start()
            stack.push_async_callback(self.reaper.stop)
            self.group.on_refresh(self.recorder.refresh)
            # Also while the store is unreachable: what the group sees may change
            # as the others' views age out.
            self.group.on_beat(self.recorder.record_changes)
            await self.engine.start()
            stack.push_async_callback(self.engine.stop)
            self.monitor.state.add_listener(self._on_transition)
            # One round before the first probes: this monitor may take the
            # recorder's role at once, and record its first view as it comes.
            with contextlib.suppress(StoreError):
                await self.group.refresh()
            stack.push_async_callback(self.group.stop)
            stack.push_async_callback(self.recorder.stop)
            await self.monitor.start()
            stack.push_async_callback(self.monitor.stop)
            # Repairs end before the probes they verify with (stop() is idempotent).
            stack.push_async_callback(self.engine.stop)
            stack.push_async_callback(self._say_goodbye)
            self.group.start()
            housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
            stack.push_async_callback(_cancelled, housekeeping)
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        await self._stack.aclose()
        if self._owns_audit:
            self.audit.close()

    async def _say_goodbye(self) -> None:
        """Before the recorder's lease goes: the clean end of this monitor."""
        self.store.events.add(
            [(time.time(), "monitor_stopped", None, self.recorder.lifecycle_data(clean=True))],
            self.name,
        )

    async def _housekeep(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            if time.time() - last_prune < 3600 or not self.recorder.recording:
                continue
            try:
                removed = await self.store.prune(time.time() - self.config.history.retention)
                last_prune = time.time()
                if removed:
                    log.info("history: removed %d entries past retention", removed)
            except StoreError as exc:  # housekeeping must outlive one bad round
                log.warning("history housekeeping failed: %s", exc)

    def _on_transition(self, transition: Transition) -> None:
        # Recorded at once (the others' views are those of the last refresh),
        # and the group hears of it at the next beat, which comes soon.
        self.recorder.record_changes()
        self.group.refresh_soon()

    # -- what people ask for ------------------------------------------------------

    async def force_check(self) -> None:
        await self.monitor.scheduler.run_cycle()
        self.group.refresh_soon()

    async def attempt_recovery(self, component: str) -> Attempt:
        return Attempt.from_row(await self.engine.recover_now(component))


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
