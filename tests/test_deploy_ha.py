"""The high-availability stack (deploy/ha/): two monitors on one history store,
two clustered Alertmanagers, Prometheus sending to both.

Docker does not run on the test machines, so it is checked by reading: the
sample pipeline is the one of deploy/docker-compose.yml (extended, not copied),
the monitors share a store and have names of their own, the Alertmanagers gossip
with each other and deliver to both monitors, Prometheus scrapes both monitors
and sends to both Alertmanagers, every mounted file exists, and the configs pass
promtool, amtool and ``pipeline-monitor check-config`` with the monitors'
environment.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from helpers import console_script
from test_deploy_files import binary, clean_env, without_addresses

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
HA = ROOT / "deploy" / "ha"
MONITORS = ("monitor-a", "monitor-b")
ALERTMANAGERS = ("alertmanager-a", "alertmanager-b")


def ha() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((HA / "docker-compose.yml").read_text())
    return data


def base() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = ha()["services"]
    return found


def bind_mounts(name: str) -> list[tuple[Path, str]]:
    found = []
    for volume in services()[name].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found.append(((HA / source).resolve(), target))
    return found


def test_the_sample_pipeline_is_the_one_of_the_single_node_stack() -> None:
    extended = {name: spec["extends"] for name, spec in services().items() if "extends" in spec}
    assert set(extended) >= {"postgres", "rabbitmq", "s3", "validation", "article-worker"}
    for name, how in extended.items():
        assert (HA / how["file"]).resolve() == ROOT / "deploy" / "docker-compose.yml"
        assert how["service"] in base()["services"], name


def test_two_monitors_one_store_names_of_their_own() -> None:
    store = services()["history"]["environment"]
    urls, names = set(), set()
    for name in MONITORS:
        env = services()[name]["environment"]
        url = urlsplit(env["PIPELINE_HISTORY_URL"])
        assert url.scheme == "postgresql" and url.hostname == "history"
        assert url.username == store["POSTGRES_USER"]
        assert url.path == f"/{store['POSTGRES_DB']}"
        urls.add(env["PIPELINE_HISTORY_URL"])
        names.add(env["PIPELINE_INSTANCE"])
        assert env["PIPELINE_API_TOKEN_FILE"] == "/run/pipeline-secrets/api-token"
        states = [
            v for v in services()[name]["volumes"] if v.endswith(":/var/lib/pipeline-monitor")
        ]
        assert len(states) == 1, f"{name} needs a state volume of its own"
        assert services()[name]["depends_on"]["history"]["condition"] == "service_healthy"
    assert len(urls) == 1 and names == set(MONITORS)
    states = {
        v
        for m in MONITORS
        for v in services()[m]["volumes"]
        if v.endswith(":/var/lib/pipeline-monitor")
    }
    assert len(states) == 2, "each monitor keeps its own state directory"


def test_the_alertmanagers_gossip_with_each_other() -> None:
    for name in ALERTMANAGERS:
        command = services()[name]["command"]
        listen = [a for a in command if a.startswith("--cluster.listen-address=")]
        peers = [a.split("=", 1)[1] for a in command if a.startswith("--cluster.peer=")]
        (other,) = [a for a in ALERTMANAGERS if a != name]
        assert listen and peers == [f"{other}:9094"]


def test_every_mounted_file_exists() -> None:
    for name in services():
        for source, _ in bind_mounts(name):
            assert source.exists(), f"{name} mounts {source}, which is missing"


def test_ports_are_published_on_loopback_only() -> None:
    for name, spec in services().items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


def ha_alertmanager() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((HA / "alertmanager.yml").read_text())
    return data


def test_the_alertmanager_config_delivers_to_both_monitors() -> None:
    single = yaml.safe_load((ROOT / "deploy" / "compose" / "alertmanager.yml").read_text())
    ours = ha_alertmanager()
    (recovery,) = [r for r in ours["receivers"] if r["name"] == "recovery-webhook"]
    hosts = [urlsplit(hook["url"]).hostname for hook in recovery["webhook_configs"]]
    assert hosts == list(MONITORS)
    (one,) = [r for r in single["receivers"] if r["name"] == "recovery-webhook"]
    (hook,) = one["webhook_configs"]
    for ha_hook in recovery["webhook_configs"]:
        assert without_addresses(ha_hook) == without_addresses(hook)
    recovery["webhook_configs"] = recovery["webhook_configs"][:1]
    assert without_addresses(ours) == without_addresses(single), (
        "deploy/ha/alertmanager.yml must be the compose variant but for the webhook"
    )


def test_the_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    amtool = binary("amtool", "prometheus-alertmanager")
    (tmp_path / "alertmanager-templates").mkdir()
    for template in (ROOT / "deploy" / "alertmanager-templates").glob("*.tmpl"):
        shutil.copy(template, tmp_path / "alertmanager-templates")
    config = tmp_path / "alertmanager.yml"
    config.write_text((HA / "alertmanager.yml").read_text())
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_both_monitors_and_sends_to_both_alertmanagers(
    tmp_path: Path,
) -> None:
    ours = yaml.safe_load((HA / "prometheus.yml").read_text())
    single = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    assert ours["global"] == single["global"] and ours["rule_files"] == single["rule_files"]
    (job,) = ours["scrape_configs"]
    assert job["job_name"] == "pipeline-monitor"
    assert job["static_configs"] == [{"targets": [f"{m}:8000" for m in MONITORS]}]
    (alerting,) = ours["alerting"]["alertmanagers"]
    assert alerting["static_configs"] == [{"targets": [f"{a}:9093" for a in ALERTMANAGERS]}]
    promtool = binary("promtool", "prometheus")
    for source, target in bind_mounts("prometheus"):
        destination = tmp_path / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, destination)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "etc/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_monitor_config_passes_check_config_with_its_environment() -> None:
    for name in MONITORS:
        (config,) = [s for s, t in bind_mounts(name) if t == "/etc/pipeline-monitor/pipeline.yml"]
        env = {**clean_env(), **services()[name]["environment"]}
        env.pop("PIPELINE_API_TOKEN_FILE")
        result = subprocess.run(
            [console_script(), "check-config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
