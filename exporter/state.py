"""Component state: what the last probe runs found, and when it changed.

Probes write it, everything else reads it: the /metrics collector, the status
API, the editors' page and the repair verification. It lives on the event loop
thread; readers on other threads take a snapshot.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from exporter.model import ProbeResult, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    component: str
    from_status: Status
    to_status: Status
    at: float
    error: str | None


@dataclass
class ComponentState:
    name: str
    display_name: str
    blocks_publishing: bool = True
    aggregate: str = "worst"
    status: Status = Status.UNKNOWN
    since: float = field(default_factory=time.time)
    last_check: float | None = None
    latency_seconds: float = 0.0
    error: str | None = None
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=100))
    runs: int = 0
    failures: int = 0
    targets: tuple[str, ...] = ()
    active_target: str | None = None

    @property
    def up(self) -> bool:
        return self.status in (Status.HEALTHY, Status.DEGRADED)


TransitionListener = Callable[[Transition], None]


class PipelineState:
    def __init__(self, components: Iterable[ComponentState]) -> None:
        self.components: dict[str, ComponentState] = {c.name: c for c in components}
        self._listeners: list[TransitionListener] = []

    def add_listener(self, listener: TransitionListener) -> None:
        self._listeners.append(listener)

    def record(
        self, name: str, results: Mapping[str, ProbeResult], at: float | None = None
    ) -> Transition | None:
        """Store one run of a component's probes; return the transition, if any."""
        component = self.components[name]
        at = time.time() if at is None else at
        statuses = [r.status for r in results.values()]
        status = Status.best(statuses) if component.aggregate == "best" else Status.worst(statuses)
        component.probes = dict(results)
        component.last_check = at
        component.latency_seconds = max((r.latency_seconds for r in results.values()), default=0)
        errors = [
            f"{probe}: {r.error}" if len(results) > 1 else r.error
            for probe, r in results.items()
            if r.error
        ]
        component.error = "; ".join(e for e in errors if e) or None
        component.runs += 1
        if status is Status.UNHEALTHY:
            component.failures += 1
        if status is component.status:
            return None
        transition = Transition(name, component.status, status, at, component.error)
        component.status = status
        component.since = at
        component.transitions.append(transition)
        for listener in self._listeners:
            try:
                listener(transition)
            except Exception:  # one listener's bug must not cost the others (or the probe)
                log.exception("transition listener failed for %s", name)
        return transition

    def overall_status(self) -> Status:
        """The pipeline is as bad as its worst component."""
        statuses = [c.status for c in self.components.values()]
        if statuses and all(s is Status.UNKNOWN for s in statuses):
            return Status.UNKNOWN
        return Status.worst(statuses)

    def can_publish(self) -> bool:
        """Articles can go out unless a component they need is down."""
        return not any(
            c.blocks_publishing and c.status is Status.UNHEALTHY for c in self.components.values()
        )

    def is_current(self, max_age: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return all(
            c.last_check is not None and now - c.last_check <= max_age
            for c in self.components.values()
        )
