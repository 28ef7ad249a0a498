"""What every probe kind shares: its config base, its protocol, and small helpers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import aiohttp
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from exporter.model import Measurement, ProbeResult, Status
from exporter.redact import mask_url_secrets
from exporter.units import Seconds

T = TypeVar("T")


class StrictModel(BaseModel):
    """Frozen, and unknown keys are an error: a typo in the config must not pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SecretsFromFiles(StrictModel):
    """Any ``SecretStr`` field ``x`` may instead be given as ``x_file: /path``.

    Mounted secrets (Docker, Kubernetes, systemd credentials) stay out of the YAML.
    """

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, info in cls.model_fields.items():
            key = f"{name}_file"
            if key not in data:
                continue
            if info.annotation not in (SecretStr, SecretStr | None):
                raise ValueError(f"{key}: {name} is not a secret field")
            if name in data:
                raise ValueError(f"give either {name} or {key}, not both")
            data[name] = read_secret_file(data.pop(key))
        return data


def read_secret_file(path: object) -> str:
    try:
        return Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path!s}: {exc.strerror}") from None


class ProbeConfig(SecretsFromFiles):
    """Options every probe kind has."""

    type: str
    name: str | None = None
    timeout: Seconds = 5.0
    latency_degraded: Seconds | None = None

    @property
    def probe_name(self) -> str:
        return self.name or self.type


@runtime_checkable
class Probe(Protocol):
    """One check of one dependency. ``run`` returns a result; only bugs raise."""

    name: str
    timeout: float

    async def run(self) -> ProbeResult: ...

    async def reset(self) -> None:
        """Drop cached clients so that the next run connects afresh."""

    async def close(self) -> None: ...

    def secrets(self) -> Iterable[str]:
        """Values that must never appear in an error text, a log or a metric."""


@runtime_checkable
class SwitchableProbe(Probe, Protocol):
    """A probe with a primary and a secondary target (storage failover)."""

    targets: tuple[str, ...]
    active_target: str

    def switch_to(self, target: str) -> None: ...


class ProbeContext:
    """Resources shared by all probes of one monitor.

    One HTTP session for every HTTP/TCP-style probe (connection pooling keeps a
    cycle of a thousand targets cheap) and one bounded thread pool for the
    blocking clients (pika, PyMySQL, boto3), which set their own socket
    timeouts because a thread cannot be cancelled.
    """

    def __init__(self, max_threads: int = 32, keepalive: float = 15.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._keepalive = keepalive
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix="probe"
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Idle connections must outlive the pause between two cycles, or
            # every cycle reconnects to every target.
            connector = aiohttp.TCPConnector(
                limit=0, ttl_dns_cache=60, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": "pipeline-monitor"},
                # Each probe sets its own timeout; none at the session level.
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def in_thread(self, func: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(func, *args))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class BaseProbe:
    """Convenience base: timing, latency threshold, no-op reset/close."""

    kind: ClassVar[str]
    Config: ClassVar[type[ProbeConfig]]
    #: Descriptors (sockets, files) one run may hold at once; the HTTP server
    #: keeps this many free for the probe (see exporter.descriptors).
    descriptors_per_run: ClassVar[int] = 2

    def __init__(self, config: ProbeConfig, context: ProbeContext) -> None:
        self.config = config
        self.context = context
        self.name = config.probe_name
        self.timeout = config.timeout

    async def run(self) -> ProbeResult:
        started = time.perf_counter()
        try:
            status, measurements, detail = await self.check()
        except ProbeFailure as failure:
            return ProbeResult(
                failure.status,
                latency_seconds=time.perf_counter() - started,
                error=str(failure),
                measurements=failure.measurements,
            )
        latency = time.perf_counter() - started
        error = None
        if status is Status.HEALTHY and self.config.latency_degraded is not None:
            if latency > self.config.latency_degraded:
                status = Status.DEGRADED
                error = (
                    f"slow: answered in {latency:.3f}s, "
                    f"over the {self.config.latency_degraded:g}s threshold"
                )
        return ProbeResult(status, latency, error, tuple(measurements), detail)

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        """Do the check. Raise ProbeFailure for a finding; return the status otherwise."""
        raise NotImplementedError

    async def reset(self) -> None:
        return None

    async def close(self) -> None:
        await self.reset()

    def descriptors(self) -> int:
        return self.descriptors_per_run

    def secrets(self) -> Iterable[str]:
        return ()


class ProbeFailure(Exception):
    """A finding (not a bug): the dependency is unhealthy or degraded."""

    def __init__(
        self,
        message: str,
        status: Status = Status.UNHEALTHY,
        measurements: Iterable[Measurement] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.measurements = tuple(measurements)


def describe_error(exc: BaseException) -> str:
    """A one-line, human error text: the type when the message says nothing."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if not text:
        return name
    return text if len(text) > 12 else f"{name}: {text}"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every secret value found in ``text`` with ``***``: the ``secrets``
    given, and any URL password or secret-named query parameter."""
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, "***")
    return mask_url_secrets(text)


def checked_url(url: str, schemes: tuple[str, ...], example: str) -> SplitResult:
    """``url`` split, if a client could use it: one of ``schemes``, a port that is
    a number from 1 to 65535. The ValueError never quotes the URL (it may hold a
    password); ``example`` shows the expected form."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        problem = "the port is not a number from 1 to 65535" if "ort" in str(exc) else str(exc)
        raise ValueError(f"{problem} (expected {example})") from None
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"expected {example}")
    if port == 0:
        raise ValueError(f"the port is not a number from 1 to 65535 (expected {example})")
    return parts


def url_password(url: str) -> list[str]:
    """The password of a URL/DSN, raw and percent-decoded, for scrubbing."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password, unquote(password)] if password else []


def redact_url(url: str) -> str:
    """The URL with its password and secret query parameters replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            netloc = parts.netloc.rsplit("@", 1)
            user = netloc[0].split(":", 1)[0]
            url = urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:
        return "<unparsable URL>"
    return mask_url_secrets(url)
