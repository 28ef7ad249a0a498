"""Editors' words: can I publish, what is wrong, is anyone on it.

One function decides the headline and the message; the editor-message endpoint
and the status page both show its result, so they never disagree. Every phrase
the status page shows about the pipeline comes from here (the page itself only
knows its own chrome, and what to say when it cannot reach the monitor).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, overload

from exporter.model import Status
from exporter.state import ComponentState, PipelineState
from recovery_webhook.incidents import (
    FIXED_BY_ENGINEERS,
    ONGOING,
    RECOVERED_BY_ITSELF,
    REPAIRED_AUTOMATICALLY,
    Incident,
)
from recovery_webhook.schemas import EditorComponent, EditorState
from recovery_webhook.schemas import Incident as IncidentBody

OPERATIONAL: Final = "operational"
DELAYED: Final = "delayed"
DOWN: Final = "down"
UNKNOWN: Final = "unknown"

ICONS = {OPERATIONAL: "✅", DELAYED: "⚠️", DOWN: "🚨", UNKNOWN: "❔"}

HEADLINE_TEXT = {
    OPERATIONAL: "Publishing Pipeline: OPERATIONAL",
    DELAYED: "Publishing Pipeline: DELAYED",
    DOWN: "Publishing Pipeline: DOWN",
    UNKNOWN: "Publishing Pipeline: STATUS UNKNOWN",
}

HEADLINES = {state: f"{ICONS[state]} **{text}**" for state, text in HEADLINE_TEXT.items()}

SHORT = {
    OPERATIONAL: "Yes, you can publish.",
    DELAYED: "Yes, you can publish, but articles may take longer to go live.",
    DOWN: "No, please don't publish right now.",
    UNKNOWN: "We can't tell right now.",
}

WORKING, SLOW, NOT_WORKING, NOT_CHECKED = (
    "Working normally",
    "Slow or partly working",
    "Not working",
    "Not checked yet",
)
ENGINEERS_ON_IT = "engineers are working on it"
REPAIR_UNDER_WAY = "an automatic repair is under way"

OUTCOME_WORDS = {
    ONGOING: "Ongoing",
    REPAIRED_AUTOMATICALLY: "Repaired automatically",
    RECOVERED_BY_ITSELF: "Recovered by itself",
    FIXED_BY_ENGINEERS: "Fixed by engineers",
}


@dataclass(frozen=True)
class ComponentView:
    name: str
    display_name: str
    status: str
    words: str
    since: float
    repair_in_progress: bool
    manual_intervention: bool
    since_text: str = ""
    error: str | None = None

    def body(self) -> EditorComponent:
        return EditorComponent(
            name=self.name,
            display_name=self.display_name,
            status=Status(self.status),
            words=self.words,
            since=iso(self.since),
            since_text=self.since_text,
            repair_in_progress=self.repair_in_progress,
            manual_intervention=self.manual_intervention,
            error=self.error,
        )


@dataclass(frozen=True)
class EditorView:
    state: EditorState
    can_publish: bool
    status: Status
    message: str
    headline: str
    short: str
    details: list[str]
    advice: list[str]
    notified_at: float | None
    components: list[ComponentView] = field(default_factory=list)
    headline_text: str = ""


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: float | None) -> str | None: ...
def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def component_words(component: ComponentState, repairing: bool, manual: bool) -> str:
    if component.status is Status.HEALTHY:
        return WORKING
    if component.status is Status.UNKNOWN:
        return NOT_CHECKED
    words = SLOW if component.status is Status.DEGRADED else NOT_WORKING
    if manual:
        return f"{words}: {ENGINEERS_ON_IT}"
    if repairing:
        return f"{words}: {REPAIR_UNDER_WAY}"
    return words


def editor_view(
    state: PipelineState,
    *,
    now: float,
    max_age: float,
    tz: str,
    repairing: Callable[[str], bool],
    manual: Callable[[str], bool],
    notified_at: Callable[[str], float | None],
    contact: str | None = None,
) -> EditorView:
    zone = zoneinfo.ZoneInfo(tz)
    components = [
        ComponentView(
            c.name,
            c.display_name,
            c.status.value,
            component_words(c, repairing(c.name), manual(c.name)),
            c.since,
            repairing(c.name),
            manual(c.name),
            since_text="" if c.status is Status.UNKNOWN else f"since {when(c.since, zone, now)}",
            error=None if c.status is Status.HEALTHY else c.error,
        )
        for c in state.components.values()
    ]
    overall = state.overall_status()
    stale = not state.is_current(max_age, now)
    down = [
        c for c in state.components.values() if c.blocks_publishing and c.status is Status.UNHEALTHY
    ]
    troubled = [
        c
        for c in state.components.values()
        if c.status in (Status.DEGRADED, Status.UNHEALTHY) and c not in down
    ]
    details: list[str] = []
    advice: list[str] = []
    notified: float | None = None
    view_state: EditorState

    if overall is Status.UNKNOWN or stale:
        view_state = UNKNOWN
        details.append(
            "The monitor's checks are late, so this page may be out of date."
            if overall is not Status.UNKNOWN
            else "The monitor has just started and is checking the pipeline."
        )
        advice.append("If you must publish now, ask the engineers on call first.")
    elif down:
        view_state = DOWN
        for c in down:
            details.append(f"{c.display_name}: not working since {when(c.since, zone, now)}.")
        times = [t for t in (notified_at(c.name) for c in down) if t is not None]
        notified = min(times) if times else None
        someone = any(manual(c.name) for c in down)
        fixing = any(repairing(c.name) for c in down)
        if notified is not None:
            line = f"Engineers were notified at {_clock(notified, zone)}"
            line += " and are working on it." if someone else "."
        else:
            line = "Engineers are being notified automatically."
        if fixing and not someone:
            line += " An automatic repair is under way."
        details.append(line)
        advice += [
            "Keep your article as a draft: nothing you have saved is lost.",
            "Don't resubmit articles that are already waiting: they will go out.",
            "Check back here; this page updates itself when publishing is back.",
        ]
        if contact:
            advice.append(f"Urgent story? Contact {contact}.")
    elif troubled:
        view_state = DELAYED
        for c in troubled:
            if c.status is Status.DEGRADED:
                details.append(f"{c.display_name}: slow or partly working.")
            else:
                details.append(f"{c.display_name}: not working, but articles still go out.")
        details.append("Articles wait in the queue and will go out; there is no need to resubmit.")
        advice.append("Publish as usual; allow extra minutes before an article appears.")
    else:
        view_state = OPERATIONAL
        details.append("All systems are running normally.")

    headline = HEADLINES[view_state]
    message = headline + "\n\n" + " ".join(details)
    if advice:
        message += "\n\n" + "\n".join(f"• {line}" for line in advice)
    return EditorView(
        state=view_state,
        can_publish=view_state in (OPERATIONAL, DELAYED),
        status=overall,
        message=message,
        headline=headline.replace("**", ""),
        short=SHORT[view_state],
        details=details,
        advice=advice,
        notified_at=notified,
        components=components,
        headline_text=HEADLINE_TEXT[view_state],
    )


def incident_view(
    incident: Incident,
    display_name: str,
    *,
    now: float,
    tz: str,
    repairing: bool = False,
    manual: bool = False,
) -> IncidentBody:
    """One incident in editors' words (plus the times and the technical error)."""
    zone = zoneinfo.ZoneInfo(tz)
    outcome = incident.outcome
    outcome_text = OUTCOME_WORDS[outcome]
    if outcome == ONGOING and manual:
        outcome_text += f": {ENGINEERS_ON_IT}"
    elif outcome == ONGOING and repairing:
        outcome_text += f": {REPAIR_UNDER_WAY}"
    length = duration_words(incident.duration(now))
    return IncidentBody.model_validate(
        {
            "component": incident.component,
            "display_name": display_name,
            "status": incident.status,
            "outcome": outcome,
            "started_at": iso(incident.started_at),
            "ended_at": iso(incident.ended_at),
            "duration_seconds": round(incident.duration(now), 1),
            "repair_attempts": incident.repair_attempts,
            "escalated": incident.escalated,
            "error": incident.error,
            "what": NOT_WORKING if incident.status == Status.UNHEALTHY.value else SLOW,
            "when_text": _started(incident.started_at, zone, now),
            "outcome_text": outcome_text,
            "duration_text": f"{length} so far" if incident.ongoing else f"took {length}",
        }
    )


def when(ts: float, zone: zoneinfo.ZoneInfo, now: float) -> str:
    """``14:02 UTC`` (today), ``yesterday at 14:02 UTC`` or ``3 Oct at 14:02 UTC``."""
    day = _day(ts, zone, now)
    return _clock(ts, zone) if day is None else f"{day} at {_clock(ts, zone)}"


def _started(ts: float, zone: zoneinfo.ZoneInfo, now: float) -> str:
    day = _day(ts, zone, now)
    return f"Started at {_clock(ts, zone)}" if day is None else f"Started {when(ts, zone, now)}"


def _day(ts: float, zone: zoneinfo.ZoneInfo, now: float) -> str | None:
    """None for today, else ``yesterday``, ``3 Oct`` or ``3 Oct 2025``."""
    moment = datetime.fromtimestamp(ts, zone)
    today = datetime.fromtimestamp(now, zone)
    days = (today.date() - moment.date()).days
    if days <= 0:
        return None
    if days == 1:
        return "yesterday"
    day = f"{moment.day} {moment:%b}"
    return day if moment.year == today.year else f"{day} {moment.year}"


def duration_words(seconds: float) -> str:
    """``less than a minute``, ``5 minutes``, ``2 hours 5 minutes``, ``3 days 4 hours``."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        parts = [_plural(days, "day"), _plural(hours, "hour") if hours else ""]
    elif hours:
        parts = [_plural(hours, "hour"), _plural(minutes, "minute") if minutes else ""]
    else:
        parts = [_plural(minutes, "minute")]
    return " ".join(p for p in parts if p)


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _clock(ts: float, zone: zoneinfo.ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%H:%M %Z")
