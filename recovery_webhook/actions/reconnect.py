"""``reconnect``: drop the component's probe clients so that they connect afresh.

The seed's "Reconnect" for the network and the database: a connection that a
firewall, a failover or a restart left half-open is thrown away.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from recovery_webhook.actions.base import ActionConfig, ActionContext, BaseAction


class ReconnectConfig(ActionConfig):
    type: Literal["reconnect"]


class Action(BaseAction):
    kind: ClassVar[str] = "reconnect"
    Config: ClassVar[type[ReconnectConfig]] = ReconnectConfig
    config: ReconnectConfig

    async def run(self, context: ActionContext) -> str:
        count = await context.reset_clients()
        return (
            f"dropped the cached connections of {context.component}'s {count} probe(s);"
            " their next runs connect afresh"
        )
