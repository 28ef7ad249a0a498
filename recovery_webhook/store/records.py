"""What the store keeps, as the engine and the API hold it in memory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json


@dataclass(slots=True)
class AlertRow:
    """One alert instance (fingerprint + startsAt), recorded once in the group.

    Mutable: intake bumps ``notifications`` and ``last_seen`` in place for every
    repeat (the hot path of an alert storm). ``repair`` is the store's word once
    a repair has begun: monitors that only heard of the alert may hold an older
    one in memory."""

    key: str
    fingerprint: str
    starts_at: str
    alertname: str
    component: str | None
    labels: dict[str, str]
    status: str
    repair: str
    first_seen: float
    last_seen: float
    notifications: int
    retry_at: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class AttemptRow:
    attempt_id: str
    component: str
    alert_key: str | None
    alertname: str | None
    trigger: str
    started_at: float
    ended_at: float | None
    status: str
    error: str | None
    actions: list[dict[str, Any]]
    monitor: str | None = None
    """The monitor that ran it."""
    token: int | None = None
    """The fencing token of the lease it ran under."""

    def as_json(self) -> dict[str, Any]:
        """The attempt as the API shows it (:class:`recovery_webhook.schemas.Attempt`)."""
        from recovery_webhook.schemas.attempts import Attempt

        return Attempt.from_row(self).model_dump(mode="json")


@dataclass(frozen=True)
class Lease:
    """A held lease: ``token`` grows with every new holder (fencing)."""

    name: str
    holder: str
    """The holding monitor's incarnation (one per process start)."""
    token: int
    expires_at: float
    """In the store's clock."""


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    monitor: str
    holder: str
    token: int
    expires_at: float
    live: bool


@dataclass(frozen=True)
class ComponentSeen:
    """One monitor's view of one component."""

    status: str
    checked_at: float | None
    since: float
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": self.checked_at,
            "since": self.since,
            "error": self.error,
        }


@dataclass(frozen=True)
class MonitorRow:
    """A monitor of the group, as its last beat left it."""

    incarnation: str
    name: str
    started_at: float
    last_seen: float
    """In the store's clock."""
    view: dict[str, ComponentSeen] = field(default_factory=dict)
    stopped: bool = False


Event = tuple[float, str, "str | None", dict[str, Any]]
"""(time, kind, component, data): one history event."""


_encode_json = json.JSONEncoder(default=str).encode


def encode_json(value: Any) -> str:
    """Compact JSON, UTF-8 as is, as pydantic-core writes it (a quarter of
    json.dumps's time, for the labels and event of every new alert). Readers
    only ever json.loads() it."""
    try:
        return to_json(value, fallback=str).decode()
    except (ValueError, TypeError, UnicodeDecodeError):  # e.g. a lone surrogate
        return _encode_json(value)
