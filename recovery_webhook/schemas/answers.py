"""Short answers: the webhook's, errors, liveness.

The webhook's answer and the error body are TypedDicts: plain dicts, written
as they are by the webhook's fast path and the request guard."""

from __future__ import annotations

from typing import Literal

from pydantic import with_config
from typing_extensions import NotRequired, TypedDict

from recovery_webhook.schemas.base import DOCUMENTED, Body


@with_config(DOCUMENTED)
class WebhookAnswer(TypedDict):
    """Alerts recorded and repairs queued."""

    status: Literal["accepted"]
    received: int
    """Alerts in the notification."""
    new: int
    """Alert instances (fingerprint and startsAt) not seen before."""
    duplicates: int
    resolved: int
    repairs_queued: int


@with_config(DOCUMENTED)
class ErrorBody(TypedDict):
    """What was wrong with a request."""

    error: str
    field: NotRequired[str]
    """Where in the request, for a field that is invalid."""
    valid_components: NotRequired[list[str]]
    """For an unknown component: the configured ones."""


class Health(Body):
    status: Literal["ok"]
