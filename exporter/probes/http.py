"""``http``: does an endpoint answer with the expected status (and body)?"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import AnyHttpUrl, Field, model_validator

from exporter.model import Measurement, Status
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeFailure,
    describe_error,
    url_password,
)
from exporter.redact import looks_secret

_MAX_BODY = 1 << 20


class HttpConfig(ProbeConfig):
    type: Literal["http"]
    url: AnyHttpUrl
    method: Literal["GET", "HEAD", "POST"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    expected_status: list[int] = Field(
        default_factory=list, description="accepted status codes; empty means any 2xx"
    )
    body_contains: str | None = None
    json_match: dict[str, Any] = Field(
        default_factory=dict,
        description="dotted paths into a JSON body and the value each must have,"
        " e.g. {'status': 'ok', 'checks.db': true}",
    )
    tls_verify: bool = True

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> HttpConfig:
        # aiohttp refuses the request at run time otherwise.
        if self.url.username and any(k.lower() == "authorization" for k in self.headers):
            raise ValueError("give credentials in the url or an Authorization header, not both")
        return self


def json_path(document: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            raise KeyError(path)
    return document


class Probe(BaseProbe):
    kind: ClassVar[str] = "http"
    Config: ClassVar[type[HttpConfig]] = HttpConfig
    config: HttpConfig

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        config = self.config
        url = str(config.url)
        timeout = aiohttp.ClientTimeout(total=self.timeout * 0.95)
        try:
            async with self.context.session.request(
                config.method,
                url,
                headers=config.headers,
                timeout=timeout,
                ssl=None if config.tls_verify else False,
                allow_redirects=False,
            ) as response:
                status = response.status
                needs_body = config.body_contains is not None or bool(config.json_match)
                body = await response.content.read(_MAX_BODY) if needs_body else b""
        except asyncio.TimeoutError:
            raise ProbeFailure(f"no answer from {url} within {timeout.total:.1f}s") from None
        except aiohttp.ClientConnectorError as exc:
            errno_ = exc.os_error.errno
            # A lookup failure's errno is negative (EAI_*): its own text says more.
            reason = os.strerror(errno_) if errno_ and errno_ > 0 else describe_error(exc.os_error)
            raise ProbeFailure(f"{url}: cannot connect: {reason}") from None
        except aiohttp.ClientError as exc:
            raise ProbeFailure(f"{url}: {describe_error(exc)}") from None

        accepted = (
            status in config.expected_status if config.expected_status else 200 <= status < 300
        )
        if not accepted:
            raise ProbeFailure(f"{url} answered HTTP {status}")
        text = body.decode("utf-8", "replace")
        if config.body_contains is not None and config.body_contains not in text:
            raise ProbeFailure(f"{url}: body does not contain {config.body_contains!r}")
        if config.json_match:
            self._match_json(url, text)
        return Status.HEALTHY, [], f"HTTP {status}"

    def _match_json(self, url: str, text: str) -> None:
        try:
            document = json.loads(text)
        except ValueError:
            raise ProbeFailure(f"{url}: body is not JSON") from None
        for path, expected in self.config.json_match.items():
            try:
                actual = json_path(document, path)
            except KeyError:
                raise ProbeFailure(f"{url}: JSON body has no {path!r}") from None
            if actual != expected:
                raise ProbeFailure(f"{url}: JSON {path} is {actual!r}, expected {expected!r}")

    def secrets(self) -> Iterable[str]:
        return url_password(str(self.config.url)) + [
            value for name, value in self.config.headers.items() if looks_secret(name)
        ]
