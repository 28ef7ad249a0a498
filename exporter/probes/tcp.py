"""``tcp``: can we open a TCP connection to each target?

With several targets the probe says how much of the network is reachable:
healthy when all answer, degraded when some do, unhealthy when none does.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from exporter.model import Measurement, Status
from exporter.probes.base import BaseProbe, ProbeConfig, ProbeFailure, describe_error


class TcpConfig(ProbeConfig):
    type: Literal["tcp"]
    targets: list[str] = Field(min_length=1, description="host:port pairs")

    @field_validator("targets")
    @classmethod
    def _host_port(cls, targets: list[str]) -> list[str]:
        for target in targets:
            split_host_port(target)
        return targets


_HOST = re.compile(
    r"^(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"  # a name or an IPv4 address
    r"|\[[0-9A-Fa-f:.]+(?:%[\w.-]+)?\])$"  # [IPv6], with a zone perhaps
)


def split_host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if (
        not sep
        or not _HOST.match(host)
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) < 65536
    ):
        raise ValueError(f"{target!r} is not host:port")
    return host.strip("[]"), int(port)


async def connect(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass


class Probe(BaseProbe):
    kind: ClassVar[str] = "tcp"
    Config: ClassVar[type[TcpConfig]] = TcpConfig
    config: TcpConfig

    def descriptors(self) -> int:
        return len(self.config.targets)  # all connected at once

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        targets = self.config.targets
        # Each connection gets what is left of the probe's budget, so one
        # silent host cannot use up the time of the others.
        budget = self.timeout * 0.9
        outcomes = await asyncio.gather(
            *(asyncio.wait_for(connect(*split_host_port(t)), budget) for t in targets),
            return_exceptions=True,
        )
        failed = {
            target: f"no answer within {budget:.1f}s"
            if isinstance(outcome, asyncio.TimeoutError)
            # asyncio's text ("Connect call failed ('127.0.0.1', 5432)") says less.
            else os.strerror(outcome.errno)
            if isinstance(outcome, OSError) and outcome.errno and outcome.errno > 0
            else describe_error(outcome)
            for target, outcome in zip(targets, outcomes, strict=True)
            if isinstance(outcome, BaseException)
        }
        if not failed:
            return Status.HEALTHY, [], f"{len(targets)} of {len(targets)} reachable"
        errors = "; ".join(f"{t}: {e}" for t, e in failed.items())
        status = Status.UNHEALTHY if len(failed) == len(targets) else Status.DEGRADED
        raise ProbeFailure(f"unreachable: {errors}", status)
