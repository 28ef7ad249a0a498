"""``storage_failover`` and ``storage_failback``: switch the component's storage
between its primary and secondary bucket or directory.

The choice is persisted (it survives a restart) and shown in the status and on
/metrics (``pipeline_storage_active_target``), so that the publishing side and
the people on call know where articles' files go.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from recovery_webhook.actions.base import ActionConfig, ActionContext, ActionError, BaseAction


class FailoverConfig(ActionConfig):
    type: Literal["storage_failover"]


class FailbackConfig(ActionConfig):
    type: Literal["storage_failback"]


class _Switch(BaseAction):
    target: ClassVar[str]

    async def run(self, context: ActionContext) -> str:
        storage = context.storage
        if storage is None:
            raise ActionError(
                f"component {context.component!r} has no storage probe with a secondary"
                " target (set secondary_path or secondary)",
                permanent=True,
            )
        previous = storage.active
        if previous == self.target:
            return f"already on the {self.target} target"
        await storage.switch(self.target)
        return f"switched {context.component} storage from {previous} to {self.target}"


class Failover(_Switch):
    kind: ClassVar[str] = "storage_failover"
    Config: ClassVar[type[FailoverConfig]] = FailoverConfig
    target: ClassVar[str] = "secondary"


class Failback(_Switch):
    kind: ClassVar[str] = "storage_failback"
    Config: ClassVar[type[FailbackConfig]] = FailbackConfig
    target: ClassVar[str] = "primary"
