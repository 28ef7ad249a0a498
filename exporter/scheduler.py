"""Runs every component's probes in the background, every check interval.

All components are probed concurrently and each probe under its own timeout, so
a hung dependency costs its own component the timeout and nothing else: the
other components keep their schedule and a scrape never waits for a probe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

from exporter.audit import AuditLog
from exporter.model import ProbeResult, Status
from exporter.probes.base import Probe, SwitchableProbe, describe_error, scrub
from exporter.state import ComponentState, PipelineState

log = logging.getLogger(__name__)


class ProbeScheduler:
    def __init__(
        self,
        state: PipelineState,
        probes: Mapping[str, Sequence[Probe]],
        interval: float,
        audit: AuditLog | None = None,
    ) -> None:
        self.state = state
        self.probes = {name: list(found) for name, found in probes.items()}
        self.interval = interval
        self.audit = audit
        self.cycles = 0
        self._inflight: dict[str, asyncio.Task[ComponentState]] = {}
        # Probe runs cancelled at their timeout that have not finished unwinding.
        self._abandoned: dict[Probe, asyncio.Future[ProbeResult]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        # Looked up once: a runtime Protocol check per probe per run adds up at
        # a thousand targets.
        self._switchable: dict[str, SwitchableProbe | None] = {
            name: next(
                (p for p in found if isinstance(p, SwitchableProbe) and len(p.targets) > 1),
                None,
            )
            for name, found in self.probes.items()
        }
        for name in self.probes:
            self._sync_targets(name)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run_forever(), name="probe-scheduler")

    async def stop(self) -> None:
        task, self._loop_task = self._loop_task, None
        pending = [t for t in self._inflight.values() if not t.done()]
        for t in [task, *pending]:
            if t is not None:
                t.cancel()
        await asyncio.gather(
            *(t for t in [task, *pending] if t is not None), return_exceptions=True
        )
        for probes in self.probes.values():
            for probe in probes:
                try:
                    await probe.close()
                except Exception:  # closing must go on for the others
                    log.exception("closing probe %s failed", probe.name)

    async def _run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self._start_cycle()
            next_at += self.interval
            now = loop.time()
            if next_at < now:  # the loop was starved: skip missed ticks, don't burst
                next_at = now + self.interval
            await asyncio.sleep(next_at - now)

    # -- cycles ----------------------------------------------------------------

    def _start_cycle(
        self, components: Sequence[str] | None = None
    ) -> list[asyncio.Task[ComponentState]]:
        if components is None:
            self.cycles += 1
        tasks = []
        for name in components or list(self.probes):
            task = self._inflight.get(name)
            # A component whose previous run has not ended joins that run
            # rather than stacking a second one on a slow dependency.
            if task is None or task.done():
                task = asyncio.create_task(self._check_component(name), name=f"probe-{name}")
                # Scheduled runs are awaited by nobody: a bug in one is logged, not lost.
                task.add_done_callback(_log_failure)
                self._inflight[name] = task
            tasks.append(task)
        return tasks

    async def run_cycle(self, components: Sequence[str] | None = None) -> None:
        """Probe now and wait for the results. Concurrent callers share the runs."""
        tasks = self._start_cycle(components)
        # Shielded: a caller that goes away (an HTTP client hanging up) must not
        # cancel runs that other callers and the schedule rely on.
        await asyncio.shield(asyncio.gather(*tasks))

    async def check_component(self, name: str) -> ComponentState:
        """Probe one component now (repair verification uses this)."""
        if name not in self.probes:
            raise KeyError(name)
        (task,) = self._start_cycle([name])
        return await asyncio.shield(task)

    async def _check_component(self, name: str) -> ComponentState:
        probes = self.probes[name]
        results = await asyncio.gather(*(self._run_probe(name, p) for p in probes))
        self._sync_targets(name)
        component = self.state.components[name]
        for probe, result in zip(probes, results, strict=True):
            _log_change(name, probe.name, component.probes.get(probe.name), result)
        transition = self.state.record(
            name, dict(zip([p.name for p in probes], results, strict=True))
        )
        if self.audit is not None:
            self.audit.health_check(
                name, component.status.value, component.latency_seconds * 1000, component.error
            )
            if transition is not None and transition.to_status is Status.UNHEALTHY:
                self.audit.failure_detected(name, component.error)
        return component

    async def _run_probe(self, component: str, probe: Probe) -> ProbeResult:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + probe.timeout
        previous = self._abandoned.pop(probe, None)
        if previous is not None and not previous.done():
            # A run that timed out is still cleaning up its client: wait for it
            # (within this run's budget) rather than fight over its connection.
            await asyncio.wait({previous}, timeout=probe.timeout)
            if not previous.done():
                self._abandoned[probe] = previous
                return ProbeResult.unhealthy(
                    f"no answer within {probe.timeout:g}s (timed out;"
                    " the previous run has not ended yet)",
                    probe.timeout,
                )
        run = asyncio.ensure_future(probe.run())
        try:
            await asyncio.wait({run}, timeout=max(deadline - loop.time(), 0.0))
        except asyncio.CancelledError:
            run.cancel()
            raise
        if not run.done():
            # Cancel without waiting: a client's own clean-up (psycopg cancels the
            # query on the server for up to 10 s) must not hold back the verdict.
            run.cancel()
            run.add_done_callback(_ignore_outcome)
            self._abandoned[probe] = run
            result = ProbeResult.unhealthy(
                f"no answer within {probe.timeout:g}s (timed out)", probe.timeout
            )
        else:
            try:
                result = run.result()
            except Exception as exc:  # a broken probe is reported, never fatal
                log.exception("probe %s of %s crashed", probe.name, component)
                result = ProbeResult.unhealthy(
                    f"probe crashed: {describe_error(exc)}", time.perf_counter() - started
                )
        if result.error or result.detail:
            # Its own secrets, and whatever URL secret its texts quote (an http
            # probe's ?token=..., a client library's message).
            secrets = list(probe.secrets())
            result = ProbeResult(
                result.status,
                result.latency_seconds,
                result.error and scrub(result.error, secrets),
                result.measurements,
                result.detail and scrub(result.detail, secrets),
            )
        return result

    # -- storage targets and client resets (used by repair actions) ------------

    def _sync_targets(self, name: str) -> None:
        probe = self._switchable[name]
        if probe is not None:
            component = self.state.components[name]
            component.targets = probe.targets
            component.active_target = probe.active_target

    def switchable(self, name: str) -> SwitchableProbe | None:
        return self._switchable.get(name)

    def switch_target(self, name: str, target: str) -> None:
        probe = self.switchable(name)
        if probe is None:
            raise ValueError(f"component {name!r} has no storage probe with a secondary target")
        probe.switch_to(target)
        self._sync_targets(name)

    async def reset(self, name: str) -> None:
        """Drop the component's clients so that the next run reconnects."""
        for probe in self.probes[name]:
            await probe.reset()


def _log_change(component: str, probe: str, before: ProbeResult | None, now: ProbeResult) -> None:
    """One line when a probe's status changes, with its own error text: an outage
    makes two lines (it began, it ended), not one per run or per client attempt."""
    was = before.status if before is not None else Status.UNKNOWN
    if now.status is was:
        return
    if now.status is Status.HEALTHY:
        if was is not Status.UNKNOWN:
            log.info("%s: probe %s is healthy again", component, probe)
    else:
        log.warning("%s: probe %s is %s: %s", component, probe, now.status.value, now.error)


def _log_failure(task: asyncio.Task[ComponentState]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("checking %s failed", task.get_name(), exc_info=task.exception())


def _ignore_outcome(run: asyncio.Future[ProbeResult]) -> None:
    """Retrieve an abandoned run's outcome so asyncio does not log it as lost."""
    if not run.cancelled():
        run.exception()
