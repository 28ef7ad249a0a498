"""rabbitmq and redis probes against the real RabbitMQ and Redis servers: real
queues, lists and streams filled over their thresholds, a missing queue, a wrong
password, an ACL user, refused and frozen connections."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from faults import FaultProxy, HangingListener
from helpers import AmqpQueue, Harness, assert_no_secret, host_port, wait_until, with_netloc

from exporter.model import ProbeResult, Status

pytestmark = pytest.mark.integration

SLACK = 0.5
TIMED_OUT = re.compile(r"timed out|no answer|timeout", re.IGNORECASE)
PASSWORD = "Qu3ue-pw!x"

Probes = Callable[..., Harness]


def gauges(result: ProbeResult) -> dict[tuple[str, str], float]:
    return {(m.metric, m.labels.get("queue", "")): m.value for m in result.measurements}


# -- RabbitMQ ------------------------------------------------------------------------------


async def test_rabbitmq_healthy_with_gauges(
    probe_harness: Probes, amqp_url: str, amqp_queue: AmqpQueue
) -> None:
    run = await probe_harness(
        {"type": "rabbitmq", "url": amqp_url, "queues": [amqp_queue.name]}
    ).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == "connected; 1 queue(s) checked"
    assert gauges(run.result) == {
        ("queue_messages", amqp_queue.name): 0,
        ("queue_consumers", amqp_queue.name): 0,
    }


async def test_rabbitmq_backlog_over_thresholds(
    probe_harness: Probes, amqp_url: str, amqp_queue: AmqpQueue
) -> None:
    name = amqp_queue.name
    degraded = probe_harness(
        {"type": "rabbitmq", "url": amqp_url, "queues": [{"name": name, "backlog_degraded": 2}]}
    )
    unhealthy = probe_harness(
        {
            "type": "rabbitmq",
            "url": amqp_url,
            "queues": [{"name": name, "backlog_degraded": 2, "backlog_unhealthy": 4}],
        }
    )
    await asyncio.to_thread(amqp_queue.publish, 2)
    assert (await degraded.run()).result.status is Status.HEALTHY  # 2 is not over 2

    await asyncio.to_thread(amqp_queue.publish, 3)
    run = await degraded.run()
    assert run.result.status is Status.DEGRADED
    assert run.result.error == f"{name}: 5 messages waiting (degraded over 2)"
    assert gauges(run.result)[("queue_messages", name)] == 5

    run = await unhealthy.run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{name}: 5 messages waiting (unhealthy over 4)"
    assert not run.component.up


async def test_rabbitmq_consumers(
    probe_harness: Probes, amqp_url: str, amqp_queue: AmqpQueue
) -> None:
    name = amqp_queue.name
    harness = probe_harness(
        {
            "type": "rabbitmq",
            "url": amqp_url,
            "queues": [{"name": name, "min_consumers": 1, "too_few_consumers": "unhealthy"}],
        }
    )
    run = await harness.run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"{name}: 0 consumers, expected at least 1"

    connection = await asyncio.to_thread(amqp_queue.connection)
    try:
        channel = await asyncio.to_thread(connection.channel)
        await asyncio.to_thread(channel.basic_consume, name, lambda *args: None)
        run = await harness.run()
        assert run.result.status is Status.HEALTHY, run.result
        assert gauges(run.result)[("queue_consumers", name)] == 1
    finally:
        await asyncio.to_thread(connection.close)


async def test_rabbitmq_missing_queue(probe_harness: Probes, amqp_url: str) -> None:
    missing = f"pm-missing-{uuid.uuid4().hex[:8]}"
    run = await probe_harness({"type": "rabbitmq", "url": amqp_url, "queues": [missing]}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"queue {missing!r} does not exist"


async def test_rabbitmq_wrong_password(probe_harness: Probes, amqp_url: str) -> None:
    wrong = with_netloc(amqp_url, password=PASSWORD)
    run = await probe_harness({"type": "rabbitmq", "url": wrong}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == "authentication failed (check the user name and password)"
    assert_no_secret(run.component.error, PASSWORD)


async def test_rabbitmq_missing_vhost(probe_harness: Probes, amqp_url: str) -> None:
    url = with_netloc(amqp_url, path="/no-such-vhost")
    run = await probe_harness({"type": "rabbitmq", "url": url}).run()
    assert run.result.status is Status.UNHEALTHY
    assert "vhost no-such-vhost not found" in (run.result.error or ""), run.result.error


async def test_rabbitmq_refused(probe_harness: Probes, unused_port: int) -> None:
    url = f"amqp://guest:{PASSWORD}@127.0.0.1:{unused_port}/%2F"
    run = await probe_harness({"type": "rabbitmq", "url": url}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == "cannot connect: [Errno 111] Connection refused"


async def test_rabbitmq_silent_broker_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        url = f"amqp://guest:{PASSWORD}@{listener.address}/%2F"
        run = await probe_harness({"type": "rabbitmq", "url": url, "timeout": 0.5}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error
    assert_no_secret(run.result.error, PASSWORD)


async def test_rabbitmq_broker_gone_then_back(probe_harness: Probes, amqp_url: str) -> None:
    async with FaultProxy(*host_port(amqp_url)) as proxy:
        harness = probe_harness(
            {"type": "rabbitmq", "url": with_netloc(amqp_url, port=proxy.port), "timeout": 1}
        )
        assert (await harness.run()).result.status is Status.HEALTHY
        await proxy.refuse()
        assert (await harness.run()).result.status is Status.UNHEALTHY
        await proxy.hang()
        run = await harness.run()
        assert TIMED_OUT.search(run.result.error or ""), run.result.error
        await proxy.pass_through()
        assert (await harness.run()).result.status is Status.HEALTHY


# -- Redis -----------------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_key(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """A key name no one uses, deleted afterwards."""
    key = f"pm-test:{uuid.uuid4().hex[:12]}"
    yield key
    await redis_client.delete(key)


async def test_redis_healthy_missing_key_is_empty(
    probe_harness: Probes, redis_url: str, redis_key: str
) -> None:
    run = await probe_harness({"type": "redis", "url": redis_url, "keys": [redis_key]}).run()
    assert run.result.status is Status.HEALTHY, run.result
    assert run.result.detail == "PONG; 1 key(s) checked"
    assert gauges(run.result) == {("queue_messages", redis_key): 0}


async def test_redis_list_backlog(
    probe_harness: Probes, redis_url: str, redis_client: aioredis.Redis, redis_key: str
) -> None:
    harness = probe_harness(
        {
            "type": "redis",
            "url": redis_url,
            "keys": [{"name": redis_key, "backlog_degraded": 2, "backlog_unhealthy": 4}],
        }
    )
    await redis_client.rpush(redis_key, "a1", "a2", "a3")
    run = await harness.run()
    assert run.result.status is Status.DEGRADED
    assert run.result.error == f"{redis_key}: 3 messages waiting (degraded over 2)"
    await redis_client.rpush(redis_key, "a4", "a5")
    run = await harness.run()
    assert run.result.status is Status.UNHEALTHY
    assert gauges(run.result)[("queue_messages", redis_key)] == 5


async def test_redis_stream_backlog(
    probe_harness: Probes, redis_url: str, redis_client: aioredis.Redis, redis_key: str
) -> None:
    for i in range(4):
        await redis_client.xadd(redis_key, {"article": str(i)})
    for kind in ("auto", "stream"):
        run = await probe_harness(
            {
                "type": "redis",
                "url": redis_url,
                "keys": [{"name": redis_key, "kind": kind, "backlog_degraded": 3}],
            }
        ).run()
        assert run.result.status is Status.DEGRADED, run.result
        assert gauges(run.result)[("queue_messages", redis_key)] == 4


async def test_redis_key_of_the_wrong_type(
    probe_harness: Probes, redis_url: str, redis_client: aioredis.Redis, redis_key: str
) -> None:
    await redis_client.hset(redis_key, "field", "value")
    run = await probe_harness({"type": "redis", "url": redis_url, "keys": [redis_key]}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"key {redis_key!r} is a hash, not a list or stream"

    run = await probe_harness(
        {"type": "redis", "url": redis_url, "keys": [{"name": redis_key, "kind": "list"}]}
    ).run()
    assert run.result.status is Status.UNHEALTHY
    assert "WRONGTYPE" in (run.result.error or ""), run.result.error


@pytest.fixture
async def redis_acl_user(redis_client: aioredis.Redis) -> AsyncIterator[str]:
    """An ACL user with PASSWORD, removed afterwards."""
    name = f"pm-test-{uuid.uuid4().hex[:8]}"
    await redis_client.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", "+@all", "~*")
    yield name
    await redis_client.execute_command("ACL", "DELUSER", name)


async def test_redis_acl_user_wrong_password(
    probe_harness: Probes, redis_url: str, redis_acl_user: str
) -> None:
    good = with_netloc(redis_url, user=redis_acl_user, password=PASSWORD)
    assert (await probe_harness({"type": "redis", "url": good}).run()).result.status is (
        Status.HEALTHY
    )
    wrong = with_netloc(redis_url, user=redis_acl_user, password=PASSWORD + "x")
    run = await probe_harness({"type": "redis", "url": wrong}).run()
    assert run.result.status is Status.UNHEALTHY
    assert "invalid username-password pair" in (run.result.error or ""), run.result.error
    assert_no_secret(run.component.error, PASSWORD)


async def test_redis_refused(probe_harness: Probes, unused_port: int) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{unused_port}/0"
    run = await probe_harness({"type": "redis", "url": url}).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.result.error == f"cannot connect to 127.0.0.1:{unused_port}: Connection refused"
    assert_no_secret(run.result.error, PASSWORD)


async def test_redis_silent_server_ends_at_the_timeout(probe_harness: Probes) -> None:
    with HangingListener() as listener:
        run = await probe_harness(
            {"type": "redis", "url": f"redis://{listener.address}/0", "timeout": 0.5}
        ).run()
    assert run.result.status is Status.UNHEALTHY
    assert run.elapsed < 0.5 + SLACK
    assert TIMED_OUT.search(run.result.error or ""), run.result.error


async def test_redis_frozen_connection_ends_at_the_timeout_and_recovers(
    probe_harness: Probes, redis_url: str
) -> None:
    async with FaultProxy(*host_port(redis_url)) as proxy:
        harness = probe_harness(
            {"type": "redis", "url": with_netloc(redis_url, port=proxy.port), "timeout": 0.5}
        )
        assert (await harness.run()).result.status is Status.HEALTHY
        await proxy.hang()
        run = await harness.run()
        assert run.result.status is Status.UNHEALTHY
        assert run.elapsed < 0.5 + SLACK
        assert TIMED_OUT.search(run.result.error or ""), run.result.error
        await proxy.pass_through()

        async def healthy() -> bool:
            return (await harness.run()).result.status is Status.HEALTHY

        await wait_until(healthy, timeout=5, message="the redis probe recovering")
