"""``rabbitmq``: connect to the broker and, for each configured queue, read its
ready messages and consumers with a passive declare (which never creates it)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar, Literal

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import (
    AMQPConnectorException,
    AMQPConnectorPhaseErrorBase,
    AMQPConnectorSocketConnectError,
    AMQPConnectorStackTimeout,
)
from pydantic import Field, SecretStr, field_validator

from exporter.model import Measurement, Status
from exporter.probes._queues import QueueCheck, judge_queue, queues_outcome
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeFailure,
    checked_url,
    describe_error,
    url_password,
)


class RabbitmqConfig(ProbeConfig):
    type: Literal["rabbitmq"]
    url: SecretStr = Field(description="amqp://user:password@host:5672/vhost")
    queues: list[QueueCheck] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _usable(cls, url: SecretStr) -> SecretStr:
        check_amqp_url(url.get_secret_value())
        return url


def check_amqp_url(url: str) -> None:
    """Refuse at start-up what pika would refuse at run time (a ValueError)."""
    checked_url(url, ("amqp", "amqps"), "amqp://user:password@host:5672/vhost")
    try:
        pika.URLParameters(url)
    except ValueError as exc:
        raise ValueError(f"pika cannot use this URL: {exc}") from None


def connection_parameters(url: str, timeout: float) -> pika.URLParameters:
    params = pika.URLParameters(url)
    # pika blocks in a thread that cannot be cancelled: every wait has a bound.
    params.socket_timeout = timeout
    params.stack_timeout = timeout
    params.blocked_connection_timeout = timeout
    params.connection_attempts = 1
    params.retry_delay = 0
    params.heartbeat = 0
    params.client_properties = {"connection_name": "pipeline-monitor"}
    return params


_OS_ERROR_TEXT = re.compile(r"\(\d+, '([^']+)'\)")


def broker_error(exc: BaseException) -> str:
    if isinstance(exc, pika.exceptions.ChannelClosedByBroker):
        return f"{exc.reply_code} {exc.reply_text}"
    if isinstance(exc, pika.exceptions.ProbableAuthenticationError):
        return "authentication failed (check the user name and password)"
    if isinstance(exc, AMQPConnectorStackTimeout):
        return "no answer from the broker during the AMQP handshake (timed out)"
    if isinstance(exc, pika.exceptions.IncompatibleProtocolError):
        # pika's "Probably incompatible Protocol Versions": in practice, a broker
        # (or a proxy before it) that hung up mid-handshake.
        return "the broker closed the connection during the AMQP handshake"
    if isinstance(exc, pika.exceptions.StreamLostError):
        # pika keeps only the text of the OS error: "...ConnectionResetError(104,
        # 'Connection reset by peer')".
        words = _OS_ERROR_TEXT.search(str(exc))
        return "the connection to the broker was lost" + (f": {words[1]}" if words else "")
    if isinstance(exc, pika.exceptions.AMQPConnectionError) and exc.args:
        inner = exc.args[0]
        if isinstance(inner, AMQPConnectorSocketConnectError):
            return f"cannot connect: {describe_error(inner.exception)}"
        if isinstance(inner, AMQPConnectorPhaseErrorBase):
            return describe_error(inner.exception)
        if isinstance(inner, BaseException):
            return broker_error(inner)
    return describe_error(exc)


class Probe(BaseProbe):
    kind: ClassVar[str] = "rabbitmq"
    Config: ClassVar[type[RabbitmqConfig]] = RabbitmqConfig
    config: RabbitmqConfig
    descriptors_per_run: ClassVar[int] = 4  # pika's socket and its wakeup pair

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        try:
            counts = await self.context.in_thread(self._blocking_check)
        # pika's connection workflow raises its own errors, not AMQPError, on a
        # handshake timeout.
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
            raise ProbeFailure(broker_error(exc)) from None
        verdicts = [
            judge_queue(check, messages, consumers)
            for check, (messages, consumers) in zip(self.config.queues, counts, strict=True)
        ]
        return queues_outcome(verdicts, f"connected; {len(counts)} queue(s) checked")

    def _blocking_check(self) -> list[tuple[int, int]]:
        params = connection_parameters(self.config.url.get_secret_value(), self.timeout * 0.9)
        connection = pika.BlockingConnection(params)
        try:
            counts = []
            for check in self.config.queues:
                channel = connection.channel()
                try:
                    frame = channel.queue_declare(check.name, passive=True)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code == 404:
                        raise ProbeFailure(f"queue {check.name!r} does not exist") from None
                    raise
                counts.append((frame.method.message_count, frame.method.consumer_count))
                if channel.is_open:
                    channel.close()
            return counts
        finally:
            if connection.is_open:
                connection.close()

    def secrets(self) -> Iterable[str]:
        url = self.config.url.get_secret_value()
        return [url, *url_password(url)]
