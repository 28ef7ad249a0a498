"""Alertmanager's webhook payload (version 4), validated.

Unknown fields are ignored, as Alertmanager may add some; a missing or mistyped
field is an error that names it.

The webhook's hot path: every notification of an alert storm passes through
:func:`parse_body`. The payload is described by TypedDicts, so pydantic-core
validates the bytes straight into plain dicts with every constraint checked in
its Rust core (types, lengths, the RFC 3339 shape of ``startsAt``); what is left
for Python is one loop over the alerts for the two checks a schema cannot say
(``labels`` must hold ``alertname``; ``startsAt`` and ``endsAt`` must be real
moments, offsets included).

Most notifications of a storm are repeats: Alertmanager sends a group again
every ``group_interval``/``repeat_interval`` with the same alerts (it zeroes the
``endsAt`` of firing ones), the second Alertmanager of an HA pair sends the same
alerts (the same body, when both have the same external URL), and a sender
retries after a timeout. Such bodies are byte for byte those of before, so the
result of validating one is kept, by its bytes, and a repeat costs a dict lookup
(about 5 µs for 12 KB) instead of a parse (45-100 µs). :data:`PARSED` holds at
most 512 bodies and 8 MiB; what it returns is shared between notifications, so
it is read-only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import NotRequired, TypedDict

MAX_ALERTS = 10_000
MAX_LABELS = 64
MAX_TEXT = 8192

# RFC 3339 as Go writes it (up to nine fraction digits). ASCII digits only: the
# Rust regex engine's \d would take any Unicode digit.
_RFC3339 = (
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?"
    r"(?:[Zz]|[+-]([0-9]{2}):([0-9]{2}))$"
)
_RFC3339_PARTS = re.compile(_RFC3339)
_NOT_RFC3339 = "Value error, not an RFC 3339 timestamp"
# Timestamps found real: Alertmanager repeats an alert with the same startsAt
# (and endsAt), so a storm checks each one once. Bounded.
_KNOWN_TIMES: set[str] = set()
_KNOWN_TIMES_MAX = 8192

_LENIENT = ConfigDict(extra="ignore", str_max_length=MAX_TEXT)


@with_config(_LENIENT)
class Alert(TypedDict):
    """One alert of a notification, as validated (a plain dict)."""

    status: Literal["firing", "resolved"]
    # "required" and "format" only describe the checks of _checked() in the schema.
    labels: Annotated[
        dict[str, str],
        Field(max_length=MAX_LABELS, json_schema_extra={"required": ["alertname"]}),
    ]
    annotations: NotRequired[dict[str, str]]
    startsAt: Annotated[  # noqa: N815 - Alertmanager's
        str, StringConstraints(pattern=_RFC3339), Field(json_schema_extra={"format": "date-time"})
    ]
    endsAt: NotRequired[  # noqa: N815
        Annotated[
            str,
            StringConstraints(pattern=_RFC3339),
            Field(json_schema_extra={"format": "date-time"}),
        ]
        | None
    ]
    generatorURL: NotRequired[str | None]  # noqa: N815
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=64)]


@with_config(_LENIENT)
class WebhookPayload(TypedDict):
    """Alertmanager's webhook payload, version 4. Unknown fields are ignored."""

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: NotRequired[str]
    groupKey: NotRequired[str]  # noqa: N815
    alerts: Annotated[list[Alert], Field(max_length=MAX_ALERTS)]


_PAYLOAD: TypeAdapter[WebhookPayload] = TypeAdapter(WebhookPayload)


class PayloadError(ValueError):
    """A payload we refuse: ``field`` says where, ``message`` what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class BodyNotJSON(ValueError):
    """A request body we cannot read as JSON: not UTF-8, not JSON, or JSON nested
    too deeply to parse. The message says which."""


def alert_key(alert: Alert) -> str:
    """One alert instance: Alertmanager repeats it with the same fingerprint and
    startsAt, and so does a second Alertmanager of an HA pair."""
    return f"{alert['fingerprint']}@{alert['startsAt']}"


def severity(alert: Alert) -> str:
    return alert["labels"].get("severity", "warning")


class ParsedBodies:
    """Validated payloads by their exact bytes, least recently used first out.

    Bounded by count and by bytes; a body over an eighth of the byte bound is
    not kept (it would push out many ordinary ones)."""

    def __init__(self, max_bodies: int = 512, max_bytes: int = 8 * 1024 * 1024) -> None:
        self.max_bodies = max_bodies
        self.max_bytes = max_bytes
        self.bytes = 0
        self._bodies: dict[bytes, tuple[Alert, ...]] = {}

    def __len__(self) -> int:
        return len(self._bodies)

    def get(self, body: bytes) -> tuple[Alert, ...] | None:
        bodies = self._bodies
        alerts = bodies.pop(body, None)
        if alerts is not None:
            bodies[body] = alerts  # now the most recently used
        return alerts

    def put(self, body: bytes, alerts: tuple[Alert, ...]) -> None:
        size = len(body)
        if size > self.max_bytes // 8 or body in self._bodies:
            return
        bodies = self._bodies
        while bodies and (len(bodies) >= self.max_bodies or self.bytes + size > self.max_bytes):
            oldest = next(iter(bodies))
            del bodies[oldest]
            self.bytes -= len(oldest)
        bodies[body] = alerts
        self.bytes += size

    def clear(self) -> None:
        self._bodies.clear()
        self.bytes = 0


PARSED = ParsedBodies()


def parse_body(body: bytes) -> Sequence[Alert]:
    """Decode and validate a request body in one pass; the alerts, read-only.

    pydantic-core's JSON parser validates straight from the bytes, with no
    intermediate objects; a body seen before is not parsed again (see
    :class:`ParsedBodies`). Raises BodyNotJSON or PayloadError; a bad body is
    not kept, so it is refused the same way every time.
    """
    alerts = PARSED.get(body)
    if alerts is None:
        alerts = tuple(_parse(body))
        PARSED.put(body, alerts)
    return alerts


def _parse(body: bytes) -> list[Alert]:
    try:
        payload = _PAYLOAD.validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["type"] == "json_invalid":
            if "recursion limit" in str(first.get("ctx", {}).get("error", "")):
                raise BodyNotJSON("the body's JSON is nested too deeply") from None
            try:
                body.decode("utf-8")
            except UnicodeDecodeError:
                raise BodyNotJSON("the body is not UTF-8") from None
            raise BodyNotJSON("the body is not JSON") from None
        raise _payload_error(exc) from None
    return _checked(payload["alerts"])


def _checked(alerts: list[Alert]) -> list[Alert]:
    for index, alert in enumerate(alerts):
        if "alertname" not in alert["labels"]:
            raise PayloadError(f"alerts.{index}.labels", "Value error, alertname is missing")
        if not _real_time(alert["startsAt"]):
            raise PayloadError(f"alerts.{index}.startsAt", _NOT_RFC3339)
        ends = alert.get("endsAt")
        if ends is not None and not _real_time(ends):
            raise PayloadError(f"alerts.{index}.endsAt", _NOT_RFC3339)
    return alerts


def _real_time(text: str) -> bool:
    """Whether a timestamp of RFC 3339's shape (the schema checked it) names a
    real moment, offset included: no month 13, no February 30, no +99:99."""
    known = _KNOWN_TIMES
    if text in known:
        return True
    match = _RFC3339_PARTS.match(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, offset_hours, offset_minutes = match.groups()
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return False
    if offset_hours is not None and (int(offset_hours) > 23 or int(offset_minutes) > 59):
        return False
    if len(known) >= _KNOWN_TIMES_MAX:
        known.clear()
    known.add(text)
    return True


def _payload_error(exc: ValidationError) -> PayloadError:
    error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    if not loc:
        return PayloadError("(body)", "expected a JSON object")
    field = ".".join(str(part) for part in loc)
    # The wording of the checks that were Python validators before.
    if error["type"] == "string_pattern_mismatch" and loc[-1] in ("startsAt", "endsAt"):
        return PayloadError(field, _NOT_RFC3339)
    if error["type"] == "too_long" and loc[-1] == "labels" and len(loc) == 3:
        return PayloadError(field, f"Value error, more than {MAX_LABELS} labels")
    return PayloadError(field, error["msg"])
