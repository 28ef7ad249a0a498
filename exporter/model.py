"""Values shared by probes, component state and the collector."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Status(str, enum.Enum):
    """Health of a probe or a component, in the seed's words."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def worst(cls, statuses: Iterable[Status]) -> Status:
        return max(statuses, key=lambda s: s.severity, default=cls.UNKNOWN)

    @classmethod
    def best(cls, statuses: Iterable[Status]) -> Status:
        known = [s for s in statuses if s is not cls.UNKNOWN]
        return min(known, key=lambda s: s.severity, default=cls.UNKNOWN)


# UNKNOWN (never probed yet) ranks below every real answer so that one probe that
# has answered decides a component before its slower siblings do.
_SEVERITY = {Status.UNKNOWN: -1, Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNHEALTHY: 2}

# The statuses exported as the pipeline_component_status state set.
EXPORTED_STATUSES = (Status.HEALTHY, Status.DEGRADED, Status.UNHEALTHY)


@dataclass(frozen=True)
class Measurement:
    """One figure a probe read, exported as a component-specific gauge.

    ``metric`` is a key of ``exporter.collector.MEASUREMENT_METRICS`` so that the
    set of series stays bounded and documented.
    """

    metric: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeResult:
    """What one run of one probe found. A failure is data, never an exception."""

    status: Status
    latency_seconds: float = 0.0
    error: str | None = None
    measurements: tuple[Measurement, ...] = ()
    detail: str | None = None

    @classmethod
    def unhealthy(cls, error: str, latency_seconds: float = 0.0) -> ProbeResult:
        return cls(Status.UNHEALTHY, latency_seconds=latency_seconds, error=error)
