"""``rabbitmq_park`` and ``rabbitmq_unpark`` move real messages, and lose none.

N persistent messages, each with its own body, id and headers, wait in a test
queue on the real broker; the probe calls that backlog unhealthy; the alert's
repair parks them; they come back with unpark, bodies and properties intact.
``rabbitmq_purge`` needs the config's explicit consent to lose data.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import yaml
from pika.adapters.blocking_connection import BlockingChannel

from recovery.recovery_support import action_context, build_config, make_alert, rule, wait_until
from recovery_webhook.actions import build_action
from recovery_webhook.actions.rabbitmq import ParkConfig, UnparkConfig

pytestmark = pytest.mark.integration

N = 25


def _channel(url: str) -> tuple[pika.BlockingConnection, BlockingChannel]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    return connection, connection.channel()


def _test_queue(url: str, durable: bool) -> Iterator[str]:
    """A test queue; it and its parking queue are deleted at the end."""
    name = f"test.recovery.{uuid.uuid4().hex[:10]}"
    connection, channel = _channel(url)
    channel.queue_declare(name, durable=durable)
    connection.close()
    yield name
    connection, channel = _channel(url)
    for q in (name, f"{name}.parking"):
        channel.queue_delete(q)
    connection.close()


@pytest.fixture
def queue(amqp_url: str) -> Iterator[str]:
    yield from _test_queue(amqp_url, durable=True)


def _publish(url: str, queue: str) -> dict[str, tuple[bytes, pika.BasicProperties]]:
    sent = {}
    connection, channel = _channel(url)
    channel.confirm_delivery()
    for i in range(N):
        body = json.dumps({"article": i, "title": f"Match report {i}", "text": "é" * i}).encode()
        props = pika.BasicProperties(
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=f"article-{i}",
            correlation_id=f"corr-{i}",
            priority=i % 5,
            headers={"article-id": i, "desk": "sports", "tags": ["a", f"t{i}"]},
        )
        channel.basic_publish("", queue, body, props, mandatory=True)
        sent[props.message_id] = (body, props)
    connection.close()
    return sent


def _counts(url: str, *queues: str) -> list[int]:
    connection, channel = _channel(url)
    try:
        return [channel.queue_declare(q, passive=True).method.message_count for q in queues]
    finally:
        connection.close()


def _peek(url: str, queue: str) -> dict[str, tuple[bytes, pika.BasicProperties]]:
    """Every message of ``queue``, read without acknowledging (all go back on close)."""
    seen = {}
    connection, channel = _channel(url)
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        seen[props.message_id] = (body, props)
    connection.close()
    return seen


def _take(url: str, queue: str) -> dict[str, tuple[bytes, pika.BasicProperties]]:
    taken = {}
    connection, channel = _channel(url)
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        taken[props.message_id] = (body, props)
    connection.close()
    return taken


def _same(got: dict, sent: dict) -> None:
    assert sorted(got) == sorted(sent)
    for message_id, (body, props) in sent.items():
        got_body, got_props = got[message_id]
        assert got_body == body
        for attr in (
            "content_type",
            "content_encoding",
            "delivery_mode",
            "correlation_id",
            "priority",
            "headers",
        ):
            assert getattr(got_props, attr) == getattr(props, attr), (message_id, attr)


async def test_park_then_unpark_moves_every_message_intact(app_factory, state_dir, queue, amqp_url):
    sent = await asyncio.to_thread(_publish, amqp_url, queue)
    parking = f"{queue}.parking"
    config = build_config(
        state_dir,
        {
            "queue": {
                "probes": [
                    {
                        "type": "rabbitmq",
                        "url": amqp_url,
                        "timeout": 0.9,
                        "queues": [{"name": queue, "backlog_unhealthy": N - 1}],
                    }
                ]
            }
        },
        [rule("queue", {"type": "rabbitmq_park"})],
    )
    app = await app_factory(config)
    await wait_until(lambda: _is(app, "unhealthy"), message="the backlog is seen")

    await app.post_alerts(make_alert("queue", queue=queue))
    events = await wait_until(lambda: _attempt_events(app), timeout=20, message="the repair")
    (event,) = events
    assert event["status"] == "success", event
    assert event["actions"][0]["output"] == (f"parked {N} message(s) from {queue!r} in {parking!r}")
    assert await app.component_status("queue") == "healthy"
    assert await asyncio.to_thread(_counts, amqp_url, queue, parking) == [0, N]
    _same(await asyncio.to_thread(_peek, amqp_url, parking), sent)
    # Peeking gave them back: still all N parked.
    assert await asyncio.to_thread(_counts, amqp_url, queue, parking) == [0, N]

    unpark = build_action(UnparkConfig(type="rabbitmq_unpark"))
    output = await unpark.run(action_context(app.service.monitor, "queue"))
    assert output == f"moved {N} message(s) from {parking!r} back to {queue!r}"
    assert await asyncio.to_thread(_counts, amqp_url, queue, parking) == [N, 0]
    _same(await asyncio.to_thread(_take, amqp_url, queue), sent)


def test_purge_without_consent_is_refused_by_check_config(tmp_path: Path, amqp_url: str):
    config = {
        "components": {
            "queue": {"probes": [{"type": "rabbitmq", "url": amqp_url, "queues": ["articles"]}]}
        },
        "recovery": {
            "rules": [
                {
                    "alertname": "PipelineQueueBacklog",
                    "component": "queue",
                    "actions": [{"type": "rabbitmq_purge", "queue": "articles"}],
                }
            ]
        },
    }
    path = tmp_path / "purge.yml"
    path.write_text(yaml.safe_dump(config))
    result = _check_config(path)
    assert result.returncode == 2, result
    assert str(path) in result.stderr
    assert "recovery.rules.0.actions.0.allow_data_loss:" in result.stderr
    assert "(got False)" in result.stderr

    config["recovery"]["rules"][0]["actions"][0]["allow_data_loss"] = True
    path.write_text(yaml.safe_dump(config))
    result = _check_config(path)
    assert result.returncode == 0, result.stderr


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "pipeline-monitor"
    return subprocess.run(
        [str(script), "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _is(app, status: str) -> bool:
    return await app.component_status("queue") == status


async def _attempt_events(app) -> list[dict]:
    return [e for e in await app.history() if e["type"] == "recovery_attempt"]


@pytest.fixture
def transient_queue(amqp_url: str) -> Iterator[str]:
    """Not durable: unpark must put messages back without redeclaring it."""
    yield from _test_queue(amqp_url, durable=False)


async def test_park_and_unpark_keep_a_transient_queue_as_it_is(
    make_monitor, amqp_url: str, transient_queue: str
):
    sent = await asyncio.to_thread(_publish, amqp_url, transient_queue)
    monitor = make_monitor(
        {
            "components": {
                "queue": {
                    "probes": [{"type": "rabbitmq", "url": amqp_url, "queues": [transient_queue]}]
                }
            }
        }
    )
    context = action_context(monitor, "queue")
    parking = f"{transient_queue}.parking"

    await build_action(ParkConfig(type="rabbitmq_park")).run(context)
    assert await asyncio.to_thread(_counts, amqp_url, transient_queue, parking) == [0, N]
    output = await build_action(UnparkConfig(type="rabbitmq_unpark")).run(context)
    assert output == f"moved {N} message(s) from {parking!r} back to {transient_queue!r}"
    assert await asyncio.to_thread(_counts, amqp_url, transient_queue, parking) == [N, 0]
    _same(await asyncio.to_thread(_take, amqp_url, transient_queue), sent)
