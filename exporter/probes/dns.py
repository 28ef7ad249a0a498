"""``dns``: does a name resolve (to the expected addresses)?"""

from __future__ import annotations

import socket
from typing import ClassVar, Literal

import aiohttp.resolver
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
        # aiohttp's resolver, as the http probes use: the system's (threaded)
        # lookup, or c-ares (cancellable) when aiodns is installed.
        resolver = aiohttp.resolver.DefaultResolver()
        try:
            found = await resolver.resolve(self.config.hostname, 0, family=socket.AF_UNSPEC)
        except OSError as exc:
            raise ProbeFailure(
                f"cannot resolve {self.config.hostname}: {describe_error(exc)}"
            ) from None
        finally:
            await resolver.close()
        addresses = sorted({str(result["host"]) for result in found})
        expected = self.config.expected_addresses
        if expected and not set(addresses) & set(expected):
            raise ProbeFailure(
                f"{self.config.hostname} resolves to {', '.join(addresses)},"
                f" none of the expected {', '.join(expected)}"
            )
        return Status.HEALTHY, [], ", ".join(addresses)
