"""Alertmanager's webhook payload (version 4), validated.

Unknown fields are ignored, as Alertmanager may add some; a missing or mistyped
field is an error that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_ALERTS = 10_000
MAX_LABELS = 64
MAX_TEXT = 8192


class PayloadError(ValueError):
    """A payload we refuse: ``field`` says where, ``message`` what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=MAX_TEXT)


class AlertModel(_Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str  # noqa: N815 - Alertmanager's spelling
    endsAt: str | None = None  # noqa: N815
    generatorURL: str | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)

    @field_validator("labels")
    @classmethod
    def _has_alertname(cls, labels: dict[str, str]) -> dict[str, str]:
        if "alertname" not in labels:
            raise ValueError("alertname is missing")
        if len(labels) > MAX_LABELS:
            raise ValueError(f"more than {MAX_LABELS} labels")
        return labels

    @field_validator("startsAt")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an RFC 3339 timestamp") from None
        return value


class WebhookPayload(_Lenient):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""  # noqa: N815
    alerts: list[AlertModel] = Field(max_length=MAX_ALERTS)


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    fingerprint: str

    @property
    def key(self) -> str:
        """One alert instance: Alertmanager repeats it with the same fingerprint and
        startsAt, and so does a second Alertmanager of an HA pair."""
        return f"{self.fingerprint}@{self.starts_at}"

    @property
    def alertname(self) -> str:
        return self.labels["alertname"]

    @property
    def component(self) -> str | None:
        return self.labels.get("component")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "warning")


def parse_payload(data: Any) -> list[Alert]:
    """Validate a decoded JSON body. Raises PayloadError naming the field."""
    if not isinstance(data, dict):
        raise PayloadError("(body)", "expected a JSON object")
    try:
        payload = WebhookPayload.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "(body)"
        raise PayloadError(field, error["msg"]) from None
    return [
        Alert(a.status, dict(a.labels), dict(a.annotations), a.startsAt, a.fingerprint)
        for a in payload.alerts
    ]
