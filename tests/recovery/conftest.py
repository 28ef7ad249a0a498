"""Fixtures of the recovery webhook's tests: the service on a real port, its
config, a stand-in validation service process, and moto S3 servers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from recovery.recovery_support import (
    PYTHON,
    TOKEN,
    RunningApp,
    StandIn,
    free_port,
    port_answers,
    start_app,
    wait_until_sync,
)
from recovery_webhook.config import AppConfig


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service reads these; a developer's shell must not change what a test sees.
    for name in ("PIPELINE_API_TOKEN", "PIPELINE_API_TOKEN_FILE", "PIPELINE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
async def app_factory() -> AsyncIterator[Callable[..., Awaitable[RunningApp]]]:
    """Start services with ``await app_factory(config)``; all are stopped at the end."""
    started: list[RunningApp] = []

    async def start(config: AppConfig, token: str | None = TOKEN) -> RunningApp:
        running = await start_app(config, token)
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.stop()


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    """A stand-in validation service, already answering, as its own process."""
    service = StandIn(tmp_path)
    service.start()
    yield service
    service.cleanup()


class MotoServer:
    """moto's S3 server as a process of its own, so that a test can kill it."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        )
        wait_until_sync(lambda: port_answers(self.port), timeout=30, message="moto answers")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def close(self) -> None:
        self.kill()
        self._log.close()


@pytest.fixture
def moto_servers(tmp_path: Path) -> Iterator[Callable[[], MotoServer]]:
    """Start moto S3 servers on demand; each is killed at the end (its buckets die with it)."""
    servers: list[MotoServer] = []

    def start() -> MotoServer:
        server = MotoServer(tmp_path / f"moto-{len(servers)}.log")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
