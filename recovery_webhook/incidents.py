"""Recent incidents, derived from the history's events.

An incident is one component's stretch of trouble: it opens when the component
turns degraded or unhealthy and closes when it is healthy again. The repair
attempts, escalations and clearances recorded meanwhile say how it ended:

* ``fixed_by_engineers``: it was handed to people (escalated), or a repair that a
  person asked for (trigger ``manual``) succeeded. Once a component is handed to
  people the engine runs no automatic repair on it, so whatever fixed it was them.
* ``repaired_automatically``: an automatic repair (alert, retry, resume) succeeded.
* ``recovered_by_itself``: healthy again with no successful repair.
* ``ongoing``: not healthy yet.

A repair is matched to an incident by when it *started*: its event is written
when it ends, which may be just after the re-probe that closed the incident.
A monitor restart does not close an incident: after it the component is
``unknown`` until probed, and the first probe either continues the incident or
closes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ONGOING = "ongoing"
REPAIRED_AUTOMATICALLY = "repaired_automatically"
RECOVERED_BY_ITSELF = "recovered_by_itself"
FIXED_BY_ENGINEERS = "fixed_by_engineers"
OUTCOMES = (ONGOING, REPAIRED_AUTOMATICALLY, RECOVERED_BY_ITSELF, FIXED_BY_ENGINEERS)

#: The history event kinds the derivation reads.
EVENT_KINDS = ("transition", "recovery_attempt", "escalation", "manual_intervention_cleared")

_TROUBLE = {"degraded": 1, "unhealthy": 2}
_AUTOMATIC_TRIGGERS = ("alert", "retry", "resume")


@dataclass
class Incident:
    component: str
    started_at: float
    status: str
    """The worst status reached: ``degraded`` or ``unhealthy``."""
    error: str | None = None
    """The error text of the first probe run that reached the worst status."""
    ended_at: float | None = None
    repair_attempts: int = 0
    repaired_automatically: bool = False
    repaired_by_person: bool = False
    escalated: bool = False
    attempt_ids: list[str] = field(default_factory=list)

    @property
    def ongoing(self) -> bool:
        return self.ended_at is None

    @property
    def outcome(self) -> str:
        if self.ended_at is None:
            return ONGOING
        if self.escalated or self.repaired_by_person:
            return FIXED_BY_ENGINEERS
        if self.repaired_automatically:
            return REPAIRED_AUTOMATICALLY
        return RECOVERED_BY_ITSELF

    def duration(self, now: float) -> float:
        end = now if self.ended_at is None else self.ended_at
        return max(0.0, end - self.started_at)

    def covers(self, ts: float) -> bool:
        return self.started_at <= ts and (self.ended_at is None or ts <= self.ended_at)


def derive_incidents(events: Iterable[Mapping[str, Any]], limit: int = 10) -> list[Incident]:
    """Incidents from history events (any order), newest first, at most ``limit``.

    ``events`` are rows as :meth:`History.events` returns them: ``timestamp``
    (seconds), ``type``, ``component`` and the event's data. Kinds other than
    :data:`EVENT_KINDS` are ignored.
    """
    ordered = sorted(events, key=lambda e: (float(e["timestamp"]), int(e.get("id") or 0)))
    found: list[Incident] = []
    open_: dict[str, Incident] = {}
    last_closed: dict[str, Incident] = {}

    def incident_at(component: str, ts: float) -> Incident | None:
        for candidate in (open_.get(component), last_closed.get(component)):
            if candidate is not None and candidate.covers(ts):
                return candidate
        return None

    for event in ordered:
        component = event.get("component")
        if not component:
            continue
        kind = event.get("type")
        ts = float(event["timestamp"])
        if kind == "transition":
            to = str(event.get("to"))
            current = open_.get(component)
            if to in _TROUBLE:
                if current is None:
                    current = Incident(component, ts, to, event.get("error"))
                    open_[component] = current
                    found.append(current)
                elif _TROUBLE[to] > _TROUBLE[current.status]:
                    current.status, current.error = to, event.get("error")
            elif to == "healthy" and current is not None:
                current.ended_at = ts
                last_closed[component] = open_.pop(component)
        elif kind == "recovery_attempt":
            started = float(event.get("started_at") or ts)
            incident = incident_at(component, started)
            if incident is None or event.get("status") in ("dry_run", "running"):
                continue
            incident.repair_attempts += 1
            if event.get("attempt_id"):
                incident.attempt_ids.append(str(event["attempt_id"]))
            if event.get("status") == "success":
                if event.get("trigger") in _AUTOMATIC_TRIGGERS:
                    incident.repaired_automatically = True
                else:
                    incident.repaired_by_person = True
        elif kind == "escalation":
            incident = incident_at(component, ts)
            if incident is not None:
                incident.escalated = True
        # manual_intervention_cleared needs nothing: the escalation already counts,
        # and a person's successful repair arrives as its own recovery_attempt.

    found.sort(key=lambda i: i.started_at, reverse=True)
    return found[:limit]
