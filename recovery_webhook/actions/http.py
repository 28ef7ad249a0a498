"""``http``: call an endpoint (a service's own restart or flush hook, a runbook
automation) and check its status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import AnyHttpUrl, Field

from exporter.probes.base import describe_error, url_password
from exporter.redact import looks_secret
from recovery_webhook.actions.base import (
    ActionConfig,
    ActionContext,
    ActionError,
    BaseAction,
    truncate,
)


class HttpActionConfig(ActionConfig):
    type: Literal["http"]
    url: AnyHttpUrl
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = None
    expected_status: list[int] = Field(
        default_factory=list, description="accepted status codes; empty means any 2xx"
    )
    tls_verify: bool = True


class Action(BaseAction):
    kind: ClassVar[str] = "http"
    Config: ClassVar[type[HttpActionConfig]] = HttpActionConfig
    config: HttpActionConfig

    async def run(self, context: ActionContext) -> str:
        config = self.config
        url = str(config.url)
        try:
            async with context.session.request(
                config.method,
                url,
                headers=config.headers,
                json=config.json_body,
                timeout=aiohttp.ClientTimeout(total=context.timeout),
                ssl=None if config.tls_verify else False,
            ) as response:
                body = (await response.content.read(8192)).decode("utf-8", "replace")
                status = response.status
        except asyncio.TimeoutError:
            raise ActionError(
                f"{config.method} {url}: no answer within {context.timeout:g}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise ActionError(f"{config.method} {url}: {describe_error(exc)}") from None
        accepted = (
            status in config.expected_status if config.expected_status else 200 <= status < 300
        )
        output = truncate(f"HTTP {status}\n{body}")
        if not accepted:
            permanent = status in (400, 401, 403, 404, 405)
            raise ActionError(f"{config.method} {url} answered HTTP {status}", permanent, output)
        return output

    def secrets(self) -> Iterable[str]:
        return url_password(str(self.config.url)) + [
            value for name, value in self.config.headers.items() if looks_secret(name)
        ]
