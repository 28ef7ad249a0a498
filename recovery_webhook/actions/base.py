"""What every repair action kind shares: config base, protocol, error, context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

import aiohttp

from exporter.probes.base import ProbeConfig, SecretsFromFiles
from exporter.units import Seconds

ConfigT = TypeVar("ConfigT", bound=ProbeConfig)

MAX_OUTPUT = 4096


class ActionConfig(SecretsFromFiles):
    """Options every action kind has."""

    type: str
    name: str | None = None
    timeout: Seconds | None = None
    verify: bool = True

    @property
    def action_name(self) -> str:
        return self.name or self.type


class ActionError(Exception):
    """The action could not do its job.

    ``permanent`` means trying again cannot help (a missing unit, a component with
    no secondary target, data loss not allowed): the engine goes straight to the
    next action and does not retry this one.
    """

    def __init__(self, message: str, permanent: bool = False, output: str = "") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.output = output


class StorageSwitch(Protocol):
    """The component's storage targets, and the means to move between them."""

    @property
    def active(self) -> str: ...

    async def switch(self, target: str) -> None:
        """Make ``target`` the active one, here and for the whole group."""


@dataclass
class ActionContext:
    """What an action may touch, and nothing more: the alert's labels, the
    component's probe configs, a shared HTTP session, a reset of the component's
    clients and, for storage, its targets."""

    component: str
    probes: Sequence[ProbeConfig]
    session: aiohttp.ClientSession
    reset_clients: Callable[[], Awaitable[int]]
    """Drop the component's cached clients; how many probes had some."""
    storage: StorageSwitch | None = None
    process_groups: Any = None
    """Told of every command's process group (``actions.reaper.Reaper``)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0

    def probe_configs(self, kind: type[ConfigT]) -> list[ConfigT]:
        return [p for p in self.probes if isinstance(p, kind)]

    def probe_config(self, kind: type[ConfigT], what: str) -> ConfigT:
        found = self.probe_configs(kind)
        if not found:
            raise ActionError(
                f"component {self.component!r} has no {kind.__name__} probe to take the {what}"
                " from; set it on the action",
                permanent=True,
            )
        return found[0]


class Action(Protocol):
    name: str
    config: ActionConfig

    async def run(self, context: ActionContext) -> str:
        """Do the repair; return its output. Raise ActionError when it fails."""

    def secrets(self) -> Iterable[str]: ...


class BaseAction:
    kind: ClassVar[str]
    Config: ClassVar[type[ActionConfig]]

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name: str = config.action_name

    def secrets(self) -> Iterable[str]:
        return ()


def truncate(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    head = limit // 2
    return f"{text[:head]}\n… [{len(text) - limit} characters cut] …\n{text[-(limit - head) :]}"
