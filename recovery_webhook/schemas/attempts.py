"""A repair attempt, as the API, the history feed and the seed's Python API
(``RecoveryAttempt``) give it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ConfigDict, with_config
from typing_extensions import NotRequired, TypedDict

from recovery_webhook.schemas.base import DOCUMENTED, Body
from recovery_webhook.states import AttemptStatus, Trigger

if TYPE_CHECKING:
    from recovery_webhook.store import AttemptRow


# A plain dict (the seed's Python API hands out ``attempt.actions[0]["action"]``);
# keys an action kind adds beyond these are kept.
@with_config(ConfigDict(**DOCUMENTED, extra="allow"))
class ActionResult(TypedDict):
    """One action of an attempt and what it did."""

    action: str
    """The action's name in the recovery rule."""
    type: str
    """Its kind (``command``, ``http``, ``systemd``, ...)."""
    result: str
    """``success``, ``failure`` or ``dry_run``."""
    verified: NotRequired[bool]
    """Whether re-probing found the component healthy after it."""
    permanent: NotRequired[bool]
    """It failed in a way that trying again cannot help."""
    output: NotRequired[str]
    """What the action printed (truncated, secrets scrubbed); only for requests
    with the bearer token."""
    error: NotRequired[str | None]
    duration_ms: NotRequired[float]


class Attempt(Body):
    """One repair attempt, successful or not."""

    attempt_id: str
    """``<component>_<milliseconds since the epoch>``, e.g. ``network_1732900000123``."""
    component: str
    alertname: str | None
    """The alert that started it; null for a manual repair."""
    trigger: Trigger
    started_at: float
    """Seconds since the epoch."""
    ended_at: float | None
    """Seconds since the epoch; null while it runs."""
    status: AttemptStatus
    success: bool
    error_message: str | None
    duration_ms: float | None
    actions: list[ActionResult]
    monitor: str | None
    """The monitor that ran it (null for attempts of releases before groups)."""

    @classmethod
    def from_row(cls, row: AttemptRow) -> Attempt:
        """The attempt as stored; its states are checked against the ones above."""
        ended = row.ended_at
        return cls.model_validate(
            {
                "attempt_id": row.attempt_id,
                "component": row.component,
                "alertname": row.alertname,
                "trigger": row.trigger,
                "started_at": row.started_at,
                "ended_at": ended,
                "status": row.status,
                "success": row.status == "success",
                "error_message": row.error,
                "duration_ms": None if ended is None else round((ended - row.started_at) * 1000, 1),
                "actions": row.actions,
                "monitor": row.monitor,
            }
        )
