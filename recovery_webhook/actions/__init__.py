"""Repair action kinds, looked up by the config's ``type:``."""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import Any

from recovery_webhook.actions import (
    command,
    http,
    postgres_terminate,
    rabbitmq,
    reconnect,
    storage,
    systemd,
)
from recovery_webhook.actions.base import (
    Action,
    ActionConfig,
    ActionContext,
    ActionError,
    BaseAction,
)

ACTION_KINDS: dict[str, type[BaseAction]] = {
    kind.kind: kind
    for kind in (
        command.Action,
        http.Action,
        systemd.Action,
        reconnect.Action,
        postgres_terminate.Action,
        rabbitmq.Park,
        rabbitmq.Unpark,
        rabbitmq.Purge,
        storage.Failover,
        storage.Failback,
    )
}


def action_config_union() -> Any:
    return reduce(or_, (kind.Config for kind in ACTION_KINDS.values()))


def build_action(config: ActionConfig) -> Action:
    return ACTION_KINDS[config.type](config)  # type: ignore[return-value]


def default_rules() -> list[dict[str, Any]]:
    """The seed's recovery table, made safe (see docs/runbooks.md).

    Returned as plain data: the config model validates it like a user's rules.
    """
    down = ["PipelineComponentDown", "ManualRecovery"]
    return [
        {"alertname": down, "component": "network", "actions": [{"type": "reconnect"}]},
        # The seed marks the validation service "not auto-recoverable": hand it
        # to people with the manual steps, unless the config adds a restart.
        {"alertname": down, "component": "validation_service", "actions": []},
        {
            "alertname": down,
            "component": "database",
            "actions": [{"type": "reconnect"}, {"type": "postgres_terminate"}],
        },
        {
            "alertname": "PipelineDatabaseConnectionsHigh",
            "component": "database",
            "actions": [{"type": "postgres_terminate", "blocking": False}],
        },
        {
            "alertname": [*down, "PipelineStorageLowSpace"],
            "component": "storage",
            "actions": [{"type": "storage_failover"}],
        },
        # Instead of the seed's "clear queue", which would lose articles. Moving
        # stuck messages aside (rabbitmq_park) only helps together with a restart
        # of the consumers, which only the config can name: see
        # deploy/pipeline.example.yml for that rule.
        {"alertname": down, "component": "queue", "actions": [{"type": "reconnect"}]},
    ]


__all__ = [
    "ACTION_KINDS",
    "Action",
    "ActionConfig",
    "ActionContext",
    "ActionError",
    "build_action",
    "default_rules",
]
