"""What a ``command`` action's program receives: one namespace per source.

PIPELINE_COMPONENT is the monitor's; each alert label is ALERT_LABEL_<NAME>;
labels whose names collide after normalising are all left out, whatever their
order; the monitor's own variables (PIPELINE_*, the seed's secrets) never reach
the program."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recovery.recovery_support import build_config, make_alert, rule, wait_until
from recovery_webhook.actions.command import (
    COMPONENT_VARIABLE,
    LABEL_PREFIX,
    child_environment,
    label_environment,
)
from recovery_webhook.config import AppConfig

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"

MONITOR_ENV = {
    "PIPELINE_API_TOKEN": "monitor-token-0123456789",
    "PIPELINE_API_TOKEN_FILE": "/run/secrets/token",
    "PIPELINE_HISTORY_URL": "postgresql://monitor:pw@db/history",
    "DATABASE_URL": "postgresql://monitor:pw@db/articles",
    "ALERT_WEBHOOK_URL": "https://hooks.example/secret-path",
    "ALERT_WEBHOOK_URL_FILE": "/run/secrets/hook",
    "ALERT_LABEL_SEVERITY": "from the monitor's environment",
}


@pytest.mark.integration
async def test_a_command_gets_labels_in_their_own_namespace(
    app_factory, state_dir, tmp_path, unused_port, monkeypatch
):
    for name, value in MONITOR_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_OF_THE_SCRIPTS", "/opt/scripts")  # an ordinary variable
    dump = tmp_path / "env.json"
    down = {"probes": [{"type": "tcp", "targets": [f"127.0.0.1:{unused_port}"], "timeout": 0.5}]}
    config = build_config(
        state_dir,
        {"network": down},
        [
            rule(
                "network",
                {
                    "type": "command",
                    "argv": [sys.executable, "-c", DUMP_ENV, str(dump)],
                    "env": {"DESK": "sports"},
                    "verify": False,
                },
            )
        ],
    )
    app = await app_factory(config)
    await wait_until(lambda: _is_down(app), message="network down")
    alert = make_alert(
        "network",
        COMPONENT="database",
        webhook_url="http://attacker.example/",
        **{"Alert-Name": "a", "alert_name": "b", "api_token": "t", "instance": "db-1:9100"},
    )
    await app.post_alerts(alert)
    await wait_until(dump.exists, timeout=20, message="the command ran")
    env = json.loads(dump.read_text())

    assert env[COMPONENT_VARIABLE] == "network"  # the label COMPONENT does not replace it
    assert env["ALERT_LABEL_ALERTNAME"] == "PipelineComponentDown"
    assert env["ALERT_LABEL_INSTANCE"] == "db-1:9100"
    assert env["ALERT_LABEL_WEBHOOK_URL"] == "http://attacker.example/"
    assert env["ALERT_LABEL_API_TOKEN"] == "t"
    # component and COMPONENT, Alert-Name and alert_name: left out, not one of each.
    assert "ALERT_LABEL_ALERT_NAME" not in env
    assert "ALERT_LABEL_COMPONENT" not in env
    assert env["DESK"] == "sports"
    assert env["HOME_OF_THE_SCRIPTS"] == "/opt/scripts"
    for name in MONITOR_ENV:
        assert name not in env or name.startswith(LABEL_PREFIX), name
    assert env.get("ALERT_LABEL_SEVERITY") == "critical"  # the alert's, not the environment's
    assert "ALERT_WEBHOOK_URL" not in env
    assert [name for name in env if name.startswith("PIPELINE_")] == [COMPONENT_VARIABLE]


async def _is_down(app) -> bool:
    return await app.component_status("network") == "unhealthy"


LABELS = st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=8)


@pytest.mark.unit
@given(labels=LABELS, component=st.sampled_from(["network", "database"]))
def test_labels_never_set_the_monitors_variables(labels: dict[str, str], component: str) -> None:
    env = label_environment(component, labels)
    assert env[COMPONENT_VARIABLE] == component
    assert all(name.startswith(LABEL_PREFIX) for name in env if name != COMPONENT_VARIABLE)
    # Each variable comes from exactly one label, and the same ones whatever the order.
    assert label_environment(component, dict(reversed(list(labels.items())))) == env
    assert set(env.values()) - {component} <= {v.replace("\0", "") for v in labels.values()}


@pytest.mark.unit
def test_the_monitors_own_variables_are_not_inherited() -> None:
    inherited = child_environment({**MONITOR_ENV, "PATH": "/usr/bin", "PIPELINE_CONFIG": "x"})
    assert inherited == {"PATH": "/usr/bin"}


@pytest.mark.unit
@pytest.mark.parametrize(
    "name", ["PIPELINE_COMPONENT", "PIPELINE_API_TOKEN", "ALERT_LABEL_SEVERITY", "A=B", "1X"]
)
def test_an_action_env_may_not_use_the_monitors_names(name: str) -> None:
    data = {
        "components": {"network": {"probes": [{"type": "tcp", "targets": ["h:1"]}]}},
        "recovery": {
            "rules": [
                {
                    "alertname": "*",
                    "actions": [{"type": "command", "argv": ["/bin/true"], "env": {name: "x"}}],
                }
            ]
        },
    }
    with pytest.raises(ValueError, match="set by the monitor|not a variable name"):
        AppConfig.model_validate(data)
