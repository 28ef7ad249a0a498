"""``command``: run a program (an argv list, never a shell string) with a timeout.

What the alert says reaches it as environment variables, never as part of the
command line, so that nothing an alert carries can change what runs. Each source
has its own namespace, so none can set another's variables:

- the monitor's: ``PIPELINE_COMPONENT``, the component being repaired;
- the alert's labels: ``ALERT_LABEL_<NAME>``, the name upper-cased and every
  character but A-Z, 0-9 and _ made a _. Labels whose names come out the same
  (``severity`` and ``Severity``, ``alert-name`` and ``alert_name``) are all
  left out, the same way every time, and the log says so;
- the action's own ``env:``, which may not use either prefix;
- the monitor's environment, less every ``PIPELINE_*`` and ``ALERT_LABEL_*``
  variable and the seed's (``DATABASE_URL``, ``ALERT_WEBHOOK_URL``,
  ``AUDIT_LOG_FILE``), with their ``_FILE`` forms: the monitor's secrets stay
  with the monitor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, ClassVar, Literal, Protocol

from pydantic import Field, field_validator

from recovery_webhook.actions.base import (
    MAX_OUTPUT,
    ActionConfig,
    ActionContext,
    ActionError,
    BaseAction,
    truncate,
)

log = logging.getLogger(__name__)

COMPONENT_VARIABLE = "PIPELINE_COMPONENT"
LABEL_PREFIX = "ALERT_LABEL_"
# The monitor's namespaces: set by the monitor for a command, never passed on.
MONITOR_PREFIXES = ("PIPELINE_", LABEL_PREFIX)
SEED_VARIABLES = frozenset({"DATABASE_URL", "ALERT_WEBHOOK_URL", "AUDIT_LOG_FILE"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CommandConfig(ActionConfig):
    type: Literal["command"]
    argv: list[str] = Field(min_length=1, description="program and arguments")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="more environment variables; not PIPELINE_* or ALERT_LABEL_*",
    )
    cwd: Path | None = None

    @field_validator("argv")
    @classmethod
    def _no_nul(cls, argv: list[str]) -> list[str]:
        if any("\0" in arg for arg in argv):
            raise ValueError("an argument may not contain a NUL character")
        return argv

    @field_validator("env")
    @classmethod
    def _own_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits and _)")
            if name.startswith(MONITOR_PREFIXES):
                raise ValueError(
                    f"{name}: names starting with {' or '.join(MONITOR_PREFIXES)} are set by"
                    " the monitor"
                )
            if "\0" in value:
                raise ValueError(f"{name}: a value may not contain a NUL character")
        return env


def _inherited(name: str) -> bool:
    return not name.startswith(MONITOR_PREFIXES) and name.removesuffix("_FILE") not in (
        SEED_VARIABLES
    )


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The monitor's environment as a command gets it: less the monitor's own."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if _inherited(name)}


def label_variable(label: str) -> str:
    """``ALERT_LABEL_`` + the name upper-cased, each character but A-Z, 0-9 and _ a _."""
    return LABEL_PREFIX + "".join(
        char.upper() if char.isascii() and (char.isalnum() or char == "_") else "_"
        for char in label
    )


def label_environment(component: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The monitor's variables for a repair of ``component`` triggered by ``labels``."""
    named: dict[str, list[str]] = {}
    for label in labels:
        named.setdefault(label_variable(label), []).append(label)
    env = {COMPONENT_VARIABLE: component}
    for name, found in named.items():
        if len(found) == 1:
            env[name] = labels[found[0]].replace("\0", "")
        else:
            log.warning(
                "labels %s are left out of the command's environment: all would be %s",
                ", ".join(repr(label) for label in sorted(found)),
                name,
            )
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
        env = {**self.config.env, **label_environment(context.component, context.labels)}
        return await run_argv(
            self.config.argv, context.timeout, env, self.config.cwd, context.process_groups
        )
