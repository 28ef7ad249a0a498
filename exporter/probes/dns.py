"""``dns``: does a name resolve (to the expected addresses)?"""

from __future__ import annotations

import asyncio
import socket
from typing import ClassVar, Literal

from pydantic import Field

from exporter.model import Measurement, Status
from exporter.probes.base import BaseProbe, ProbeConfig, ProbeFailure, describe_error


class DnsConfig(ProbeConfig):
    type: Literal["dns"]
    hostname: str = Field(min_length=1)
    expected_addresses: list[str] = Field(
        default_factory=list,
        description="when set, at least one resolved address must be among these",
    )


class Probe(BaseProbe):
    kind: ClassVar[str] = "dns"
    Config: ClassVar[type[DnsConfig]] = DnsConfig
    config: DnsConfig

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.config.hostname, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ProbeFailure(
                f"cannot resolve {self.config.hostname}: {describe_error(exc)}"
            ) from None
        addresses = sorted({str(info[4][0]) for info in infos})
        expected = self.config.expected_addresses
        if expected and not set(addresses) & set(expected):
            raise ProbeFailure(
                f"{self.config.hostname} resolves to {', '.join(addresses)},"
                f" none of the expected {', '.join(expected)}"
            )
        return Status.HEALTHY, [], ", ".join(addresses)
