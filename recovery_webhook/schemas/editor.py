"""What editors read: ``GET /api/pipeline/editor-message``, which the status
page shows, and the incidents in it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from typing_extensions import TypedDict

from exporter.model import Status
from recovery_webhook.schemas.base import Body, Timestamp

EditorState = Literal["operational", "delayed", "down", "unknown"]
Outcome = Literal["ongoing", "repaired_automatically", "recovered_by_itself", "fixed_by_engineers"]

# Keys that are not Python names: a TypedDict of the functional kind.
Uptime = TypedDict("Uptime", {"24h": float | None, "7d": float | None, "30d": float | None})


class EditorComponent(Body):
    """One component, in editors' words."""

    name: str
    display_name: str
    status: Status
    words: Annotated[str, Field(examples=["Working normally"])]
    since: Timestamp
    since_text: Annotated[str, Field(examples=["since 14:02 UTC"])]
    """Empty before the first check."""
    repair_in_progress: bool
    manual_intervention: bool
    error: str | None
    """The probes' error text (secrets removed); null while healthy."""


class Incident(Body):
    """One component's stretch of trouble, from history."""

    component: str
    display_name: str
    status: Literal["degraded", "unhealthy"]
    """The worst status reached."""
    outcome: Outcome
    started_at: Timestamp
    ended_at: Timestamp | None
    duration_seconds: float
    """Until now while ongoing."""
    repair_attempts: Annotated[int, Field(ge=0)]
    escalated: bool
    error: str | None
    what: Annotated[str, Field(examples=["Not working"])]
    when_text: Annotated[str, Field(examples=["Started at 14:02 UTC"])]
    outcome_text: Annotated[str, Field(examples=["Repaired automatically"])]
    duration_text: Annotated[str, Field(examples=["took 3 minutes"])]


class EditorMessage(Body):
    """Whether editors can publish: the seed's four fields first, then what the
    status page shows besides the message (same source, same moment)."""

    message: str
    status: Status
    can_publish: bool
    timestamp: Timestamp
    state: EditorState
    headline: Annotated[str, Field(examples=["✅ Publishing Pipeline: OPERATIONAL"])]
    headline_text: Annotated[str, Field(examples=["Publishing Pipeline: OPERATIONAL"])]
    """The headline without its emoji."""
    short: Annotated[str, Field(examples=["Yes, you can publish."])]
    details: list[str]
    advice: list[str]
    notified_at: Timestamp | None
    """When engineers were first alerted about what stops publishing."""
    components: list[EditorComponent]
    incidents: list[Incident]
    """Recent incidents from history, newest first (at most 10)."""
    uptime: Uptime
    """Share of each window when articles could be published; null before
    anything was measured."""
    history_available: bool
    """Whether the history store answers (incidents and uptime are the last known
    while it does not)."""
    title: str
    """``status_page.title``."""
    refresh_seconds: Annotated[int, Field(ge=1)]
    """``status_page.refresh_seconds``: how often the page reloads this."""
    timezone: str
    """``status_page.timezone``: the zone of the times in the words."""
