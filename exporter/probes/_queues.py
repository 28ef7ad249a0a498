"""Backlog and consumer thresholds shared by the queue probe kinds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from exporter.model import Measurement, Status
from exporter.probes.base import ProbeFailure, StrictModel


class QueueCheck(StrictModel):
    """One queue (RabbitMQ) or key (Redis) and what counts as stuck.

    A plain string in the config is the name with default thresholds.
    """

    name: str = Field(min_length=1)
    backlog_degraded: int | None = Field(default=1000, ge=0)
    backlog_unhealthy: int | None = Field(default=None, ge=0)
    min_consumers: int = Field(default=0, ge=0)
    too_few_consumers: Literal["degraded", "unhealthy"] = "degraded"

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


def judge_queue(
    check: QueueCheck, messages: int, consumers: int | None
) -> tuple[Status, list[Measurement], str | None]:
    """Status, gauges and (when not healthy) the reason for one queue."""
    labels = {"queue": check.name}
    measurements = [Measurement("queue_messages", messages, labels)]
    if consumers is not None:
        measurements.append(Measurement("queue_consumers", consumers, labels))
    if check.backlog_unhealthy is not None and messages > check.backlog_unhealthy:
        return (
            Status.UNHEALTHY,
            measurements,
            f"{check.name}: {messages} messages waiting (unhealthy over {check.backlog_unhealthy})",
        )
    if consumers is not None and consumers < check.min_consumers:
        return (
            Status(check.too_few_consumers),
            measurements,
            f"{check.name}: {consumers} consumers, expected at least {check.min_consumers}",
        )
    if check.backlog_degraded is not None and messages > check.backlog_degraded:
        return (
            Status.DEGRADED,
            measurements,
            f"{check.name}: {messages} messages waiting (degraded over {check.backlog_degraded})",
        )
    return Status.HEALTHY, measurements, None


def queues_outcome(
    verdicts: list[tuple[Status, list[Measurement], str | None]], summary: str
) -> tuple[Status, list[Measurement], str | None]:
    """Combine per-queue verdicts: the worst decides, every gauge is kept."""
    status = Status.worst(v[0] for v in verdicts) if verdicts else Status.HEALTHY
    measurements = [m for v in verdicts for m in v[1]]
    if status is not Status.HEALTHY:
        raise ProbeFailure("; ".join(v[2] for v in verdicts if v[2]), status, measurements)
    return status, measurements, summary
