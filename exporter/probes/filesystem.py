"""``filesystem``: can articles' files be written, read back and removed, and is
there room left? A secondary directory makes the storage fail-over-able."""

from __future__ import annotations

import errno
import os
import secrets as random
import shutil
import threading
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from exporter.model import Measurement, Status
from exporter.probes.base import BaseProbe, ProbeConfig, ProbeContext, ProbeFailure
from exporter.units import Bytes

CANARY_PREFIX = ".pipeline-monitor-canary-"


class FilesystemConfig(ProbeConfig):
    type: Literal["filesystem"]
    path: Path
    secondary_path: Path | None = Field(
        default=None, description="where storage_failover switches to"
    )
    create_missing: bool = Field(
        default=False, description="create the directory when it does not exist"
    )
    free_bytes_degraded: Bytes | None = 1 << 30
    free_bytes_unhealthy: Bytes | None = 100 << 20


def canary_round_trip(directory: Path, create_missing: bool, canary_name: str) -> int:
    """Write, read back and delete a small file; return the free bytes. Blocking."""
    if create_missing:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ProbeFailure(f"{directory}: cannot create: {_os_error(exc)}") from None
    if not directory.is_dir():
        raise ProbeFailure(f"{directory} does not exist or is not a directory")
    payload = random.token_bytes(64)
    canary = directory / canary_name
    try:
        with open(canary, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if canary.read_bytes() != payload:
            raise ProbeFailure(f"{directory}: canary file read back different bytes")
    except OSError as exc:
        raise ProbeFailure(f"{directory}: cannot write: {_os_error(exc)}") from None
    finally:
        try:
            canary.unlink(missing_ok=True)
        except OSError:
            pass
    try:
        return shutil.disk_usage(directory).free
    except OSError as exc:
        raise ProbeFailure(f"{directory}: cannot read free space: {_os_error(exc)}") from None


def _os_error(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror} ({name})" if name else str(exc)


class Probe(BaseProbe):
    kind: ClassVar[str] = "filesystem"
    Config: ClassVar[type[FilesystemConfig]] = FilesystemConfig
    config: FilesystemConfig

    def __init__(self, config: FilesystemConfig, context: ProbeContext) -> None:
        super().__init__(config, context)
        # Its own name: two probes (or monitors) on one directory must not
        # delete or overwrite each other's canary.
        self.canary_name = f"{CANARY_PREFIX}{os.getpid()}-{random.token_hex(4)}"
        self.targets: tuple[str, ...] = (
            ("primary", "secondary") if config.secondary_path else ("primary",)
        )
        self.active_target = "primary"
        # Set while a canary round trip runs in its thread. A file operation has
        # no timeout (a hung mount blocks it for good): one blocked thread per
        # probe is enough, more would drain the pool the other probes share.
        self._blocked = threading.Event()

    @property
    def directory(self) -> Path:
        if self.active_target == "secondary" and self.config.secondary_path is not None:
            return self.config.secondary_path
        return self.config.path

    def switch_to(self, target: str) -> None:
        if target not in self.targets:
            raise ValueError(f"unknown storage target {target!r}; known: {self.targets}")
        self.active_target = target

    def _round_trip(self, directory: Path) -> int:
        self._blocked.set()
        try:
            return canary_round_trip(directory, self.config.create_missing, self.canary_name)
        finally:
            self._blocked.clear()

    async def check(self) -> tuple[Status, list[Measurement], str | None]:
        directory = self.directory
        if self._blocked.is_set():
            raise ProbeFailure(f"{directory}: the previous check is still blocked (a hung mount?)")
        free = await self.context.in_thread(self._round_trip, directory)
        measurements = [Measurement("storage_free_bytes", float(free))]
        low_unhealthy = self.config.free_bytes_unhealthy
        low_degraded = self.config.free_bytes_degraded
        if low_unhealthy is not None and free < low_unhealthy:
            raise ProbeFailure(
                f"{directory}: only {_human(free)} free (unhealthy below {_human(low_unhealthy)})",
                measurements=measurements,
            )
        if low_degraded is not None and free < low_degraded:
            raise ProbeFailure(
                f"{directory}: only {_human(free)} free (degraded below {_human(low_degraded)})",
                Status.DEGRADED,
                measurements,
            )
        return (
            Status.HEALTHY,
            measurements,
            f"{directory} ({self.active_target}), {_human(free)} free",
        )


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
