"""When automation must hand a component to people, and why."""

from __future__ import annotations

from recovery_webhook.config import RecoveryConfig, RecoveryRule
from recovery_webhook.store import AttemptRow


def escalation_reason(
    settings: RecoveryConfig, rule: RecoveryRule, attempt: AttemptRow, failed: int
) -> str | None:
    """After a failed attempt: why people must take over, or None to retry.

    ``failed`` is the number of failed automatic attempts within the window."""
    if not rule.actions:
        return "no automatic repair is configured"
    if attempt.actions and all(action.get("permanent") for action in attempt.actions):
        return f"the repair cannot succeed: {attempt.error}"
    if failed >= settings.max_attempts:
        return f"{failed} failed repair(s) within {settings.window:g}s"
    return None
