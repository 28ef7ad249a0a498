"""The states of repairs and attempts, declared once.

The store writes them, the engine moves alerts and attempts between them, and
the API and the status page show them: all read these enums, never string
literals of their own.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - Python 3.10

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)


class RepairState(StrEnum):
    """Where the repair of one alert instance stands."""

    NONE = "none"
    """A resolved alert never seen firing: nothing to repair."""
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_PENDING = "retry_pending"
    """A repair failed; the next try is due at the alert's ``retry_at``."""
    WAITING = "waiting"
    """Held back, re-examined at ``retry_at``; the alert's ``note`` says why
    (another monitor sees the component healthy, say)."""
    SUCCEEDED = "succeeded"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    NOT_NEEDED = "not_needed"
    NO_RULE = "no_rule"
    NO_COMPONENT = "no_component"
    UNKNOWN_COMPONENT = "unknown_component"
    DISABLED = "disabled"
    MANUAL = "manual"
    """The component was already with people: no automatic repair."""
    DRY_RUN = "dry_run"


#: A repair is still owed for an alert in these states (while it fires).
OWED = (RepairState.QUEUED, RepairState.RETRY_PENDING, RepairState.WAITING, RepairState.RUNNING)
#: States a resolution ends: the repair had not started.
CANCELLED_BY_RESOLUTION = (RepairState.QUEUED, RepairState.RETRY_PENDING, RepairState.WAITING)


class AttemptStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    INTERRUPTED = "interrupted"
    """Cut off: its monitor stopped or died, or lost its lease."""
    DRY_RUN = "dry_run"


#: Attempt statuses that count as a failed repair against the escalation limit.
FAILED = (AttemptStatus.FAILURE, AttemptStatus.INTERRUPTED)


class Trigger(StrEnum):
    """What started an attempt."""

    ALERT = "alert"
    RETRY = "retry"
    RESUME = "resume"
    """Taken up again after its monitor stopped, died or lost its lease."""
    MANUAL = "manual"


AUTOMATIC_TRIGGERS = (Trigger.ALERT, Trigger.RETRY, Trigger.RESUME)
