"""``redis``: PING, and the length of each configured list or stream."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import ClassVar, Literal

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import Field, SecretStr, field_validator

from exporter.model import Measurement, Status
from exporter.probes._queues import QueueCheck, judge_queue, queues_outcome
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeContext,
    ProbeFailure,
    checked_url,
    describe_error,
    url_password,
)


class RedisKey(QueueCheck):
    kind: Literal["auto", "list", "stream"] = Field(
        default="auto", description="auto reads the key's type on each run"
    )


class RedisConfig(ProbeConfig):
    type: Literal["redis"]
    url: SecretStr = Field(description="redis://[:password@]host:6379/0")
    keys: list[RedisKey] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _usable(cls, url: SecretStr) -> SecretStr:
        check_redis_url(url.get_secret_value())
        return url


def check_redis_url(url: str) -> None:
    """Refuse at start-up what redis-py would refuse at run time: it parses the
    URL, then hands every query parameter to its connection as an argument."""
    checked_url(url, ("redis", "rediss", "unix"), "redis://[:password@]host:6379/0")
    try:
        pool = aioredis.ConnectionPool.from_url(url)
        pool.make_connection()  # type: ignore[no-untyped-call]  # builds it; connects not
    except (ValueError, TypeError) as exc:
        raise ValueError(f"redis-py cannot use this URL: {exc}") from None


def redis_error(exc: BaseException, where: str, timeout: float) -> str:
    """redis-py's "Error 111 connecting to h:6379. Connect call failed (...)." in words."""
    if isinstance(exc, redis.exceptions.TimeoutError):
        return f"no answer from {where} within {timeout:.1f}s ({describe_error(exc)})"
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, redis.exceptions.ConnectionError) and isinstance(cause, OSError):
        if cause.errno:
            verb = "cannot connect to" if "connecting" in str(exc) else "lost the connection to"
            return f"{verb} {where}: {os.strerror(cause.errno)}"
    return describe_error(exc)


class Probe(BaseProbe):
    kind: ClassVar[str] = "redis"
    Config: ClassVar[type[RedisConfig]] = RedisConfig
    config: RedisConfig

    def __init__(self, config: RedisConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        self._client: aioredis.Redis | None = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            self._client = aioredis.Redis.from_url(
                self.config.url.get_secret_value(),
                socket_connect_timeout=self.timeout * 0.9,
                socket_timeout=self.timeout * 0.9,
                retry_on_timeout=False,
                client_name="pipeline-monitor",
            )
        return self._client

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        client = self._redis()
        try:
            await client.ping()
            verdicts = [
                judge_queue(key, await self._length(client, key), None) for key in self.config.keys
            ]
        except (redis.exceptions.RedisError, OSError) as exc:
            await self.reset()
            kwargs = client.connection_pool.connection_kwargs
            where = f"{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}"
            raise ProbeFailure(redis_error(exc, where, self.timeout * 0.9)) from None
        except asyncio.CancelledError:
            await self.reset()
            raise
        return queues_outcome(verdicts, f"PONG; {len(verdicts)} key(s) checked")

    async def _length(self, client: aioredis.Redis, key: RedisKey) -> int:
        kind: str = key.kind
        if kind == "auto":
            found = await client.type(key.name)
            kind = found.decode() if isinstance(found, bytes) else str(found)
            if kind == "none":
                return 0  # an empty list or stream does not exist in Redis
        if kind == "list":
            return int(await client.llen(key.name))
        if kind == "stream":
            return int(await client.xlen(key.name))
        raise ProbeFailure(f"key {key.name!r} is a {kind}, not a list or stream")

    async def reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.aclose(), 1.0)
            except (asyncio.TimeoutError, redis.exceptions.RedisError, OSError):
                pass

    def secrets(self) -> Iterable[str]:
        url = self.config.url.get_secret_value()
        return [url, *url_password(url)]
