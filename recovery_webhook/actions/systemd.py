"""``systemd``: restart (or start, or reload) a unit with systemctl."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from recovery_webhook.actions.base import ActionConfig, ActionContext, BaseAction
from recovery_webhook.actions.command import run_argv

_UNIT = re.compile(r"^[A-Za-z0-9:_.@\\-]+$")


class SystemdConfig(ActionConfig):
    type: Literal["systemd"]
    unit: str = Field(description="e.g. article-validator.service")
    operation: Literal["restart", "start", "reload-or-restart", "try-restart"] = "restart"
    user: bool = Field(default=False, description="the user's service manager (--user)")
    systemctl: str = "systemctl"

    @field_validator("unit")
    @classmethod
    def _unit_name(cls, unit: str) -> str:
        if not _UNIT.match(unit) or unit.startswith("-"):
            raise ValueError("not a systemd unit name")
        return unit


class Action(BaseAction):
    kind: ClassVar[str] = "systemd"
    Config: ClassVar[type[SystemdConfig]] = SystemdConfig
    config: SystemdConfig

    async def run(self, context: ActionContext) -> str:
        argv = [self.config.systemctl]
        if self.config.user:
            argv.append("--user")
        argv += [self.config.operation, "--", self.config.unit]
        return await run_argv(argv, context.timeout, groups=context.process_groups)
