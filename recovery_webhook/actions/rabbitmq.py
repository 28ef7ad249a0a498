"""``rabbitmq_park``, ``rabbitmq_unpark`` and ``rabbitmq_purge``.

Park moves the messages waiting in a queue to a parking queue (``<queue>.parking``
by default) so that consumers stuck on them can be restarted; unpark moves them
back. Each message is re-published with publisher confirms and only then
acknowledged on the source, so a crash mid-way duplicates at worst and never
loses an article. Purge deletes messages and refuses to run unless the config
says ``allow_data_loss: true``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import ClassVar, Literal

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pydantic import Field, SecretStr, field_validator

from exporter.probes.base import url_password
from exporter.probes.rabbitmq import (
    RabbitmqConfig,
    broker_error,
    check_amqp_url,
    connection_parameters,
)
from recovery_webhook.actions.base import ActionConfig, ActionContext, ActionError, BaseAction


class _QueueActionConfig(ActionConfig):
    url: SecretStr | None = Field(
        default=None, description="default: the component's rabbitmq probe's url"
    )
    queue: str | None = Field(
        default=None,
        description="default: the alert's `queue` label, else the probe's only queue",
    )

    @field_validator("url")
    @classmethod
    def _usable(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None:
            check_amqp_url(url.get_secret_value())
        return url


class _MoveConfig(_QueueActionConfig):
    parking_queue: str | None = Field(default=None, description="default: <queue>.parking")
    max_messages: int | None = Field(
        default=None, ge=1, description="move at most this many (default: all waiting now)"
    )


class ParkConfig(_MoveConfig):
    type: Literal["rabbitmq_park"]


class UnparkConfig(_MoveConfig):
    type: Literal["rabbitmq_unpark"]


class PurgeConfig(_QueueActionConfig):
    type: Literal["rabbitmq_purge"]
    # Validated even when left out, so that the error names this field (and its
    # value) rather than the whole action.
    allow_data_loss: bool = Field(default=False, validate_default=True)

    @field_validator("allow_data_loss")
    @classmethod
    def _consent(cls, allowed: bool) -> bool:
        if not allowed:
            raise ValueError(
                "rabbitmq_purge deletes articles' messages; it runs only with"
                " allow_data_loss: true (rabbitmq_park keeps them instead)"
            )
        return allowed


def move_messages(
    channel: BlockingChannel,
    source: str,
    destination: str,
    limit: int | None,
    deadline: float | None = None,
) -> int:
    """Move up to ``limit`` (default: those waiting now) messages, confirming each.

    Stops at ``deadline`` (time.monotonic()): the thread this runs on cannot be
    cancelled, and the next action must not start while messages still move.
    """
    waiting = channel.queue_declare(source, passive=True).method.message_count
    ensure_queue(channel, destination)
    target_before = channel.queue_declare(destination, passive=True).method.message_count
    channel.confirm_delivery()
    budget = waiting if limit is None else min(limit, waiting)
    moved = 0
    while moved < budget:
        if deadline is not None and time.monotonic() > deadline:
            raise ActionError(
                f"out of time after moving {moved} of {budget} message(s) from {source!r}"
                f" to {destination!r}; the rest stay in {source!r}"
            )
        method, properties, body = channel.basic_get(source, auto_ack=False)
        if method is None:
            break
        try:
            # mandatory + confirms: basic_publish raises unless the broker has
            # routed and stored the copy.
            channel.basic_publish("", destination, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
            channel.basic_nack(method.delivery_tag, requeue=True)
            raise ActionError(
                f"broker refused a message for {destination!r}; it stays in {source!r}"
            ) from None
        channel.basic_ack(method.delivery_tag)
        moved += 1
    target_after = channel.queue_declare(destination, passive=True).method.message_count
    if target_after < target_before + moved:
        # A consumer on the destination may have taken some: say so, don't hide it.
        raise ActionError(
            f"moved {moved} message(s) but {destination!r} grew by only"
            f" {target_after - target_before}: is something consuming it?"
        )
    return moved


def ensure_queue(channel: BlockingChannel, queue: str) -> None:
    """Create ``queue`` (durable) only when it does not exist.

    An existing queue is never redeclared: its own durability and arguments
    would not match ours, and the broker would close the channel. The check
    runs on a channel of its own, which a 404 closes.
    """
    check = channel.connection.channel()
    try:
        check.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 404:
            raise
        channel.queue_declare(queue, durable=True)
    else:
        check.close()


class _QueueAction(BaseAction):
    config: _QueueActionConfig

    def _url(self, context: ActionContext) -> str:
        if self.config.url is not None:
            return self.config.url.get_secret_value()
        return context.probe_config(RabbitmqConfig, "url").url.get_secret_value()

    def _queue(self, context: ActionContext) -> str:
        if self.config.queue:
            return self.config.queue
        if context.labels.get("queue"):
            return context.labels["queue"]
        probes = context.probe_configs(RabbitmqConfig)
        queues = [q.name for p in probes for q in p.queues]
        if len(queues) == 1:
            return queues[0]
        raise ActionError(
            f"{self.kind}: which queue? set `queue:` on the action (the alert has no"
            " queue label and the probe watches "
            + (f"{len(queues)} queues)" if queues else "no queue)"),
            permanent=True,
        )

    async def run(self, context: ActionContext) -> str:
        url, queue = self._url(context), self._queue(context)
        params = connection_parameters(url, min(context.timeout, 30.0))
        loop = asyncio.get_running_loop()
        try:
            # The thread cannot be cancelled: it stops itself a little before
            # the engine gives up on the action.
            deadline = time.monotonic() + context.timeout * 0.9
            return await loop.run_in_executor(None, self._blocking, params, queue, deadline)
        except pika.exceptions.ChannelClosedByBroker as exc:
            permanent = exc.reply_code == 404
            raise ActionError(f"queue {queue!r}: {broker_error(exc)}", permanent) from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise ActionError(broker_error(exc)) from None

    def _blocking(self, params: pika.URLParameters, queue: str, deadline: float) -> str:
        connection = pika.BlockingConnection(params)
        try:
            return self.on_channel(connection.channel(), queue, deadline)
        finally:
            if connection.is_open:
                connection.close()

    def on_channel(self, channel: BlockingChannel, queue: str, deadline: float) -> str:
        raise NotImplementedError

    def secrets(self) -> Iterable[str]:
        if self.config.url is None:
            return ()
        url = self.config.url.get_secret_value()
        return [url, *url_password(url)]


class Park(_QueueAction):
    kind: ClassVar[str] = "rabbitmq_park"
    Config: ClassVar[type[ParkConfig]] = ParkConfig
    config: ParkConfig

    def on_channel(self, channel: BlockingChannel, queue: str, deadline: float) -> str:
        parking = self.config.parking_queue or f"{queue}.parking"
        moved = move_messages(channel, queue, parking, self.config.max_messages, deadline)
        return f"parked {moved} message(s) from {queue!r} in {parking!r}"


class Unpark(_QueueAction):
    kind: ClassVar[str] = "rabbitmq_unpark"
    Config: ClassVar[type[UnparkConfig]] = UnparkConfig
    config: UnparkConfig

    def on_channel(self, channel: BlockingChannel, queue: str, deadline: float) -> str:
        parking = self.config.parking_queue or f"{queue}.parking"
        moved = move_messages(channel, parking, queue, self.config.max_messages, deadline)
        return f"moved {moved} message(s) from {parking!r} back to {queue!r}"


class Purge(_QueueAction):
    kind: ClassVar[str] = "rabbitmq_purge"
    Config: ClassVar[type[PurgeConfig]] = PurgeConfig
    config: PurgeConfig

    def on_channel(self, channel: BlockingChannel, queue: str, deadline: float) -> str:
        frame = channel.queue_purge(queue)
        return f"purged {frame.method.message_count} message(s) from {queue!r} (data loss allowed)"
