"""``command``: run a program (an argv list, never a shell string) with a timeout.

The alert's labels reach it as environment variables (``ALERT_COMPONENT``,
``ALERT_ALERTNAME``...), never as part of the command line, so that nothing an
alert carries can change what runs.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, ClassVar, Literal, Protocol

from pydantic import Field

from recovery_webhook.actions.base import (
    MAX_OUTPUT,
    ActionConfig,
    ActionContext,
    ActionError,
    BaseAction,
    truncate,
)


class CommandConfig(ActionConfig):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1, description="program and arguments")
    env: dict[str, str] = Field(default_factory=dict)
    cwd: Path | None = None


_UNSAFE = re.compile(r"[^A-Z0-9_]")


# The monitor's own secrets stay with the monitor: a repair script gets the
# environment minus these (and their _FILE forms).
_PRIVATE_VARIABLES = ("PIPELINE_API_TOKEN", "DATABASE_URL", "ALERT_WEBHOOK_URL")


def child_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.removesuffix("_FILE") not in _PRIVATE_VARIABLES
    }


def label_environment(component: str, labels: Mapping[str, str]) -> dict[str, str]:
    env = {"PIPELINE_COMPONENT": component}
    for name, value in labels.items():
        key = "ALERT_" + _UNSAFE.sub("_", name.upper())
        env[key] = value.replace("\0", "")
    return env


class ProcessGroups(Protocol):
    """Told of every command's process group (see ``actions.reaper``)."""

    async def started(self, pgid: int) -> None: ...

    def ended(self, pgid: int) -> None: ...


async def run_argv(
    argv: list[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    groups: ProcessGroups | None = None,
) -> str:
    """Run ``argv``; return its output. Raise ActionError on failure or timeout.

    Output goes to a file, not a pipe: a command that starts a daemon would
    otherwise keep the pipe open, and reading it would wait for the daemon.
    ``groups`` is told of the command's process group while it runs, so that
    the command is ended if the monitor dies.
    """
    with tempfile.TemporaryFile() as output:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env={**child_environment(), **(env or {})},
                cwd=cwd,
                start_new_session=True,  # its own process group: a timeout kills it all
            )
        except OSError as exc:
            raise ActionError(
                f"cannot start {argv[0]}: {exc.strerror or exc}", permanent=True
            ) from None
        if groups is not None:
            await groups.started(process.pid)
        try:
            returncode = await asyncio.wait_for(process.wait(), timeout)
        except asyncio.TimeoutError:
            _kill_group(process.pid)
            await process.wait()
            raise ActionError(
                f"{argv[0]} did not finish within {timeout:g}s and was killed",
                output=_read(output),
            ) from None
        except asyncio.CancelledError:
            _kill_group(process.pid)
            raise
        finally:
            if groups is not None:
                groups.ended(process.pid)
        text = _read(output)
    if returncode != 0:
        raise ActionError(f"{argv[0]} exited with status {returncode}", output=text)
    return text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read(output: IO[bytes]) -> str:
    """The output, or its head and tail: a chatty command may write gigabytes."""
    size = output.seek(0, os.SEEK_END)
    output.seek(0)
    if size <= MAX_OUTPUT * 4:
        return truncate(output.read().decode("utf-8", "replace"))
    head = output.read(MAX_OUTPUT // 2).decode("utf-8", "replace")
    output.seek(size - MAX_OUTPUT // 2)
    tail = output.read().decode("utf-8", "replace")
    return f"{head}\n… [{size - MAX_OUTPUT} characters cut] …\n{tail}"


class Action(BaseAction):
    kind: ClassVar[str] = "command"
    Config: ClassVar[type[CommandConfig]] = CommandConfig
    config: CommandConfig

    async def run(self, context: ActionContext) -> str:
        env = {**label_environment(context.component, context.labels), **self.config.env}
        return await run_argv(
            self.config.argv, context.timeout, env, self.config.cwd, context.process_groups
        )
