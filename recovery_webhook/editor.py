"""Editors' words: can I publish, what is wrong, is anyone on it.

One function decides the headline and the message; the editor-message endpoint
and the status page both show its result, so they never disagree.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from exporter.model import Status
from exporter.state import ComponentState, PipelineState

OPERATIONAL, DELAYED, DOWN, UNKNOWN = "operational", "delayed", "down", "unknown"

HEADLINES = {
    OPERATIONAL: "✅ **Publishing Pipeline: OPERATIONAL**",
    DELAYED: "⚠️ **Publishing Pipeline: DELAYED**",
    DOWN: "🚨 **Publishing Pipeline: DOWN**",
    UNKNOWN: "❔ **Publishing Pipeline: STATUS UNKNOWN**",
}

SHORT = {
    OPERATIONAL: "Yes, you can publish.",
    DELAYED: "Yes, you can publish, but articles may take longer to go live.",
    DOWN: "No, please don't publish right now.",
    UNKNOWN: "We can't tell right now.",
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

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "status": self.status,
            "words": self.words,
            "since": iso(self.since),
            "repair_in_progress": self.repair_in_progress,
            "manual_intervention": self.manual_intervention,
        }


@dataclass(frozen=True)
class EditorView:
    state: str
    can_publish: bool
    status: str
    message: str
    headline: str
    short: str
    details: list[str]
    advice: list[str]
    notified_at: float | None
    components: list[ComponentView] = field(default_factory=list)


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def component_words(component: ComponentState, repairing: bool, manual: bool) -> str:
    if component.status is Status.HEALTHY:
        return "Working normally"
    if component.status is Status.UNKNOWN:
        return "Not checked yet"
    words = "Slow or partly working" if component.status is Status.DEGRADED else "Not working"
    if manual:
        return f"{words}: engineers are working on it"
    if repairing:
        return f"{words}: an automatic repair is under way"
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
    components = [
        ComponentView(
            c.name,
            c.display_name,
            c.status.value,
            component_words(c, repairing(c.name), manual(c.name)),
            c.since,
            repairing(c.name),
            manual(c.name),
        )
        for c in state.components.values()
    ]
    zone = zoneinfo.ZoneInfo(tz)
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
            details.append(f"{c.display_name}: not working since {_clock(c.since, zone)}.")
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
            details.append(f"{c.display_name}: slow or partly working.")
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
        status=overall.value,
        message=message,
        headline=headline.replace("**", ""),
        short=SHORT[view_state],
        details=details,
        advice=advice,
        notified_at=notified,
        components=components,
    )


def _clock(ts: float, zone: zoneinfo.ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, zone).strftime("%H:%M %Z")
