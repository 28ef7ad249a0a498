"""``s3``: put, get and delete a canary object. A ``secondary`` bucket (on the
same or another endpoint) makes the storage fail-over-able."""

from __future__ import annotations

import functools
import secrets as random
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import boto3
import botocore.config
import botocore.exceptions
from pydantic import Field, SecretStr, field_validator

from exporter.model import Measurement, Status
from exporter.probes.base import (
    BaseProbe,
    ProbeConfig,
    ProbeContext,
    ProbeFailure,
    SecretsFromFiles,
    checked_url,
    describe_error,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

CANARY_KEY = ".pipeline-monitor-canary"


class S3Target(SecretsFromFiles):
    bucket: str = Field(min_length=3, max_length=63)
    endpoint_url: str | None = Field(default=None, description="omit for AWS itself")

    @field_validator("endpoint_url")
    @classmethod
    def _usable(cls, url: str | None) -> str | None:
        if url is not None:
            parts = checked_url(url, ("http", "https"), "http(s)://host[:port]")
            if not parts.hostname:
                raise ValueError("expected http(s)://host[:port]")
        return url

    region: str = "us-east-1"
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    key_prefix: str = ""


class S3Config(ProbeConfig, S3Target):
    type: Literal["s3"]
    secondary: S3Target | None = Field(
        default=None, description="where storage_failover switches to"
    )


def s3_error(exc: BaseException, bucket: str) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return f"bucket {bucket!r} does not exist"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            return f"access denied to bucket {bucket!r} ({code}): check the credentials"
        return f"bucket {bucket!r}: {code} {error.get('Message', '')}".strip()
    if isinstance(
        exc, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError
    ):
        return f"no answer from the S3 endpoint: {describe_error(exc)}"
    return describe_error(exc)


class Probe(BaseProbe):
    kind: ClassVar[str] = "s3"
    Config: ClassVar[type[S3Config]] = S3Config
    config: S3Config
    descriptors_per_run: ClassVar[int] = 4  # boto3's pooled connections to each target

    def __init__(self, config: S3Config, context: ProbeContext) -> None:
        super().__init__(config, context)
        self.targets: tuple[str, ...] = (
            ("primary", "secondary") if config.secondary else ("primary",)
        )
        self.active_target = "primary"
        self._clients: dict[str, S3Client] = {}
        self._lock = threading.Lock()

    def switch_to(self, target: str) -> None:
        if target not in self.targets:
            raise ValueError(f"unknown storage target {target!r}; known: {self.targets}")
        self.active_target = target

    def target(self, name: str) -> S3Target:
        if name == "secondary" and self.config.secondary is not None:
            return self.config.secondary
        return self.config

    def client(self, name: str) -> S3Client:
        # boto3 clients are thread-safe but expensive to create: one per target.
        with self._lock:
            if name not in self._clients:
                self._clients[name] = make_client(self.target(name), self.timeout)
            return self._clients[name]

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        name = self.active_target
        target = self.target(name)
        try:
            await self.context.in_thread(self._round_trip, name)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ProbeFailure(s3_error(exc, target.bucket)) from None
        return Status.HEALTHY, [], f"s3://{target.bucket} ({name})"

    def _round_trip(self, name: str) -> None:
        target = self.target(name)
        client = self.client(name)
        # A key per run: a run abandoned at its timeout may still finish in its
        # thread, and a second monitor may probe the same bucket; neither must
        # delete or overwrite this run's canary.
        key = f"{target.key_prefix}{CANARY_KEY}-{random.token_hex(8)}"
        payload = random.token_bytes(32)
        client.put_object(Bucket=target.bucket, Key=key, Body=payload)
        body = client.get_object(Bucket=target.bucket, Key=key)["Body"].read()
        client.delete_object(Bucket=target.bucket, Key=key)
        if body != payload:
            raise ProbeFailure(f"bucket {target.bucket!r}: canary object read back different bytes")

    async def reset(self) -> None:
        with self._lock:
            self._clients.clear()

    def secrets(self) -> Iterable[str]:
        for target in (self.config, self.config.secondary):
            if target is None:
                continue
            for secret in (target.access_key_id, target.secret_access_key):
                if secret is not None:
                    yield secret.get_secret_value()


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session for the process, its clients made under a lock (a session
    is not thread-safe). A new session loads and parses botocore's models again,
    which holds the GIL, and so the event loop, for 150-250 ms; from one session a
    client costs about 13 ms."""
    return boto3.session.Session()


def make_client(target: S3Target, timeout: float) -> S3Client:
    config = botocore.config.Config(
        connect_timeout=max(timeout * 0.5, 0.5),
        read_timeout=max(timeout * 0.8, 0.5),
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    with _SESSION_LOCK:
        return _session().client(
            "s3",
            endpoint_url=target.endpoint_url,
            region_name=target.region,
            aws_access_key_id=(
                target.access_key_id.get_secret_value() if target.access_key_id else None
            ),
            aws_secret_access_key=(
                target.secret_access_key.get_secret_value() if target.secret_access_key else None
            ),
            config=config,
        )
