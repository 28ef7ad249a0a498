"""Deployment files: the Dockerfile, the Docker Compose stack, the systemd unit.

Docker does not run on the test machines, so the compose stack is checked by
reading it: every mounted file exists, every service name the configs use is a
service, the compose variants of the Prometheus and Alertmanager configs pass
promtool/amtool in the layout the containers see and match the host profiles in
all but addresses, the monitor's compose config passes `pipeline-monitor
check-config`, and the commands in the Dockerfile and the unit are ones the CLI
accepts. The systemd unit also goes through `systemd-analyze verify`.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from helpers import console_script

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT_FILE = DEPLOY / "pipeline-monitor.service"
MONITOR_CONFIG = COMPOSE_DIR / "pipeline.yml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "pipeline.yml"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"

STATE_DIR = "/var/lib/pipeline-monitor"
CONFIG_PATH = "/etc/pipeline-monitor/pipeline.yml"
SERVICES = {
    "postgres",
    "rabbitmq",
    "s3",
    "validation",
    "article-worker",
    "stack-init",
    "monitor",
    "prometheus",
    "alertmanager",
    "grafana",
}


def binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: install the Debian package {package}")
    return path


def clean_env() -> dict[str, str]:
    """This process's environment without the variables that override a config."""
    overrides = ("PIPELINE_", "DATABASE_URL", "AUDIT_LOG_FILE", "ALERT_WEBHOOK_URL")
    return {k: v for k, v in os.environ.items() if not k.startswith(overrides)}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args], capture_output=True, text=True, timeout=60, env=clean_env()
    )


def assert_cli_accepts(argv: list[str], config_flag: str = "--config") -> None:
    """Run ``argv`` (a `pipeline-monitor` command line) with its config file replaced
    by a missing one: the CLI must get as far as reading the config (exit 2,
    "cannot read"), which proves the subcommand and every option are accepted,
    and nothing starts serving."""
    assert PurePosixPath(argv[0]).name == "pipeline-monitor", argv
    args = list(argv[1:])
    index = args.index(config_flag)
    missing = "/nonexistent/pipeline-monitor-test/pipeline.yml"
    args[index + 1] = missing
    result = run_cli(*args)
    assert "usage:" not in result.stderr, f"{argv}: the CLI refused it:\n{result.stderr}"
    assert result.returncode == 2 and f"{missing}: cannot read" in result.stderr, (
        f"{argv}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


# -- Dockerfile ---------------------------------------------------------------------


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def dockerfile(keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile_instructions() if kw == keyword]


def exec_form(text: str) -> list[str]:
    argv = json.loads(text)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), text
    return argv


def test_dockerfile_base_image_user_and_port() -> None:
    stages = dockerfile("FROM")
    assert all(stage.split()[0] == "python:3.11-slim" for stage in stages), stages
    assert stages[-1] == "python:3.11-slim"
    user = dockerfile("USER")[-1]
    assert user.split(":")[0] not in ("root", "0"), "the monitor must not run as root"
    assert "8000" in dockerfile("EXPOSE")
    (source,) = [c.split()[-1] for c in dockerfile("COPY") if c.startswith(". ")]
    assert f"pip install {source}" in " ".join(dockerfile("RUN")), "installs the project"
    assert any(c.startswith("--from=build /opt/pipeline-monitor/.venv") for c in dockerfile("COPY"))


def test_dockerfile_keeps_state_in_a_volume() -> None:
    env = " ".join(dockerfile("ENV"))
    assert f"PIPELINE_STATE_DIR={STATE_DIR}" in env
    volumes = [v for text in dockerfile("VOLUME") for v in exec_form(text)]
    assert STATE_DIR in volumes


def test_dockerfile_healthcheck_asks_healthz_without_curl() -> None:
    (healthcheck,) = dockerfile("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], "python:3.11-slim has no curl or wget"
    assert "/healthz" in argv[2] and ":8000/" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


def test_dockerfile_cmd_is_a_real_command() -> None:
    (cmd,) = dockerfile("CMD")
    argv = exec_form(cmd)
    assert argv[:2] == ["pipeline-monitor", "run"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0", "reachable from outside the container"
    assert argv[argv.index("--config") + 1] == CONFIG_PATH
    assert_cli_accepts(argv)


def test_dockerfile_entrypoint_sets_a_private_umask_and_runs_the_cmd() -> None:
    (entrypoint,) = dockerfile("ENTRYPOINT")
    argv = exec_form(entrypoint)
    assert argv[:2] == ["/bin/sh", "-c"] and "umask 0077" in argv[2], argv
    # The entrypoint runs the CMD (or any command given to `docker run`) with that umask.
    done = subprocess.run(
        [*argv, "sh", "-c", "umask"], capture_output=True, text=True, timeout=30, env=clean_env()
    )
    assert (done.returncode, done.stdout.strip()) == (0, "0077"), done.stderr


def test_dockerfile_placeholder_config_is_the_built_in_default(tmp_path: Path) -> None:
    """`docker run` without a mounted config starts with the built-in default."""
    (run,) = [r for r in dockerfile("RUN") if CONFIG_PATH in r and "printf" in r]
    lines = re.findall(r"'(#[^']*)'", run)
    assert lines, run
    placeholder = tmp_path / "pipeline.yml"
    placeholder.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("check-config", str(placeholder))
    assert result.returncode == 0 and "OK (5 components" in result.stdout, result.stderr


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatch(prefix, c) for prefix in prefixes for c in candidates):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = dockerignore_patterns()
    for path in (".venv", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"):
        assert ignored(path, patterns), f"{path} belongs out of the build context"
    assert ignored("exporter/__pycache__/x.pyc", patterns)
    # What `pip install .` reads.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', pyproject, re.M)
    needed = ["pyproject.toml", "pipeline_monitor.py", "exporter", "recovery_webhook"]
    needed += [readme[1]] if readme else []
    needed += ["recovery_webhook/static"]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not ignored(path, patterns), f".dockerignore leaves out {path}"


# -- Docker Compose -----------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def service(name: str) -> dict[str, Any]:
    result: dict[str, Any] = compose()["services"][name]
    return result


def mounts(name: str) -> list[tuple[str, str, bool]]:
    """(source, target, is_bind) of a service's volumes (short syntax)."""
    found = []
    for volume in service(name).get("volumes", []):
        assert isinstance(volume, str), f"{name}: use the short volume syntax"
        source, target, *_ = volume.split(":")
        found.append((source, target, source.startswith((".", "/"))))
    return found


def host_path(source: str) -> Path:
    assert not source.startswith("/"), f"{source}: no host paths; relative to deploy/"
    return (DEPLOY / source).resolve()


def bind_source(name: str, target: str) -> Path:
    for source, mount_target, is_bind in mounts(name):
        if mount_target == target and is_bind:
            return host_path(source)
    raise AssertionError(f"{name} mounts nothing from the repository at {target}")


def volume_for(name: str, path: str) -> tuple[str, str]:
    """The named volume of service ``name`` that holds ``path``, and the path in it."""
    for source, target, is_bind in mounts(name):
        if not is_bind and PurePosixPath(path).is_relative_to(target):
            return source, str(PurePosixPath(path).relative_to(target))
    raise AssertionError(f"{name}: {path} is on no named volume")


def environment(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    assert isinstance(env, dict), f"{name}: use the mapping form of environment"
    return {k: str(v) for k, v in env.items()}


def monitor_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MONITOR_CONFIG.read_text(encoding="utf-8"))
    return data


def probes(kind: str) -> list[dict[str, Any]]:
    return [
        probe
        for component in monitor_config()["components"].values()
        for probe in component["probes"]
        if probe["type"] == kind
    ]


def test_compose_has_the_whole_stack() -> None:
    data = compose()
    assert set(data["services"]) == SERVICES
    assert data.get("name") == "pipeline-recovery"
    assert "version" not in data, "obsolete in Compose v2"


def test_compose_mounts_only_files_of_the_repository() -> None:
    declared = set(compose().get("volumes") or {})
    for name in compose()["services"]:
        for source, target, is_bind in mounts(name):
            assert target.startswith("/"), f"{name}: {target}"
            if is_bind:
                assert host_path(source).exists(), f"{name} mounts missing {source}"
                assert host_path(source).is_relative_to(ROOT), f"{name}: {source}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_compose_builds_the_monitor_from_the_dockerfile() -> None:
    for name in ("monitor", "stack-init", "article-worker"):
        build = service(name)["build"]
        context = host_path(build["context"])
        assert context == ROOT, "the build context is the repository root (.dockerignore)"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE
        assert service(name)["image"] == service("monitor")["image"]


def test_compose_images_are_pinned() -> None:
    for name, spec in compose()["services"].items():
        image = spec["image"]
        if "build" in spec:
            continue
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"


def test_compose_publishes_ports_on_loopback_only() -> None:
    published = {}
    for name, spec in compose()["services"].items():
        for port in spec.get("ports", []):
            host, host_port, container_port = str(port).split(":")
            assert host == "127.0.0.1", f"{name}: publish {port} on 127.0.0.1 only"
            published[name] = (int(host_port), int(container_port))
    assert published["monitor"] == (8000, 8000)
    assert published["prometheus"] == (9090, 9090)
    assert published["alertmanager"] == (9093, 9093)
    assert published["grafana"] == (3000, 3000)


def test_compose_dependencies_have_health_checks() -> None:
    services = compose()["services"]
    image_healthcheck = bool(dockerfile("HEALTHCHECK"))
    for name, spec in services.items():
        for dependency, condition in (spec.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = condition["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                check = target.get("healthcheck")
                if check is None:
                    assert "build" in target and image_healthcheck, dependency
                else:
                    assert not check.get("disable") and check.get("test"), dependency
            elif condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} runs once"
            else:
                assert condition == "service_started", condition


def test_compose_monitor_uses_the_image_defaults() -> None:
    monitor = service("monitor")
    assert "command" not in monitor, "the Dockerfile's CMD is the command"
    assert bind_source("monitor", CONFIG_PATH) == MONITOR_CONFIG
    env = environment("monitor")
    assert env["PIPELINE_STATE_DIR"] == STATE_DIR
    assert volume_for("monitor", STATE_DIR) == ("monitor-state", ".")
    assert "PIPELINE_API_TOKEN" not in env, "the token comes from a file"
    assert volume_for("monitor", env["PIPELINE_API_TOKEN_FILE"])[0] == "secrets"


def test_compose_monitor_config_passes_check_config() -> None:
    result = run_cli("check-config", str(MONITOR_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK (5 components" in result.stdout
    config = monitor_config()
    assert config["server"]["host"] == "0.0.0.0"
    assert config["server"]["port"] == 8000
    assert config["state_dir"] == STATE_DIR


def test_compose_monitor_config_watches_the_compose_services() -> None:
    services = compose()["services"]
    hosts = set()
    for probe in probes("tcp"):
        hosts |= {target.rsplit(":", 1)[0] for target in probe["targets"]}
    for probe in probes("http"):
        hosts.add(urlsplit(probe["url"]).hostname)
    for probe in probes("postgres"):
        hosts.add(urlsplit(probe["dsn"]).hostname)
    for probe in probes("rabbitmq"):
        hosts.add(urlsplit(probe["url"]).hostname)
    for probe in probes("s3"):
        hosts.add(urlsplit(probe["endpoint_url"]).hostname)
        hosts.add(urlsplit(probe["secondary"]["endpoint_url"]).hostname)
    assert hosts <= set(services), f"not compose services: {hosts - set(services)}"
    assert {"postgres", "rabbitmq", "s3", "validation"} <= hosts
    for probe in probes("filesystem"):
        assert PurePosixPath(probe["path"]).is_relative_to(STATE_DIR), "on the state volume"


def test_compose_demo_credentials_agree() -> None:
    (postgres,) = probes("postgres")
    dsn = urlsplit(postgres["dsn"])
    env = environment("postgres")
    assert (dsn.username, dsn.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert dsn.path.lstrip("/") == env["POSTGRES_DB"]
    healthcheck = service("postgres")["healthcheck"]["test"]
    assert env["POSTGRES_USER"] in healthcheck and env["POSTGRES_DB"] in healthcheck

    (rabbitmq,) = probes("rabbitmq")
    amqp = urlsplit(rabbitmq["url"])
    env = environment("rabbitmq")
    assert (amqp.username, amqp.password) == (
        env["RABBITMQ_DEFAULT_USER"],
        env["RABBITMQ_DEFAULT_PASS"],
    )
    worker = environment("article-worker")
    assert worker["AMQP_URL"] == rabbitmq["url"]
    queues = [q if isinstance(q, str) else q["name"] for q in rabbitmq["queues"]]
    assert worker["WORKER_QUEUE"] in queues


def test_compose_sample_services_run_the_mounted_scripts() -> None:
    for name in ("validation", "article-worker", "stack-init"):
        command = service(name)["command"]
        assert command[0] == "python"
        assert bind_source(name, command[1]).is_file(), f"{name}: {command[1]}"
    assert bind_source("stack-init", CONFIG_PATH) == MONITOR_CONFIG
    assert environment("stack-init")["PIPELINE_CONFIG"] == CONFIG_PATH
    port = environment("validation")["VALIDATION_PORT"]
    (http_probe,) = probes("http")
    assert urlsplit(http_probe["url"]).port == int(port)


def test_compose_shares_the_api_token_between_monitor_and_alertmanager() -> None:
    token_file = environment("monitor")["PIPELINE_API_TOKEN_FILE"]
    secrets_dir = environment("stack-init")["SECRETS_DIR"]
    assert volume_for("stack-init", secrets_dir) == ("secrets", ".")
    assert volume_for("monitor", token_file) == ("secrets", "api-token")
    receiver = receivers(compose_alertmanager())["recovery-webhook"]
    (webhook,) = receiver["webhook_configs"]
    credentials = webhook["http_config"]["authorization"]["credentials_file"]
    assert volume_for("alertmanager", credentials) == ("secrets", "api-token")
    (slack,) = receivers(compose_alertmanager())["slack"]["slack_configs"]
    assert volume_for("alertmanager", slack["api_url_file"]) == ("secrets", "slack_webhook_url")


# -- the sample services' scripts -------------------------------------------------


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, COMPOSE_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_init_writes_a_token_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_stack = load_script("init_stack")
    monkeypatch.setattr(init_stack, "SECRETS_DIR", tmp_path)
    monkeypatch.delenv("PIPELINE_API_TOKEN", raising=False)
    init_stack.api_token()
    token_file = tmp_path / "api-token"
    first = token_file.read_text().strip()
    assert len(first) >= 32
    assert token_file.stat().st_mode & 0o777 == 0o444, "alertmanager runs as another user"
    init_stack.api_token()
    assert token_file.read_text().strip() == first, "kept across restarts"
    monkeypatch.setenv("PIPELINE_API_TOKEN", "chosen-token-of-the-operator")
    init_stack.api_token()
    assert token_file.read_text().strip() == "chosen-token-of-the-operator"
    monkeypatch.setenv("PIPELINE_API_TOKEN", "short")
    with pytest.raises(SystemExit):
        init_stack.api_token()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_sample_validation_service_answers_the_monitors_probe() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(COMPOSE_DIR / "validation_service.py")],
        env={**clean_env(), "VALIDATION_PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.load(r)
                break
            except OSError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the validation service did not start"
                time.sleep(0.05)
        (http_probe,) = probes("http")
        for key, value in http_probe["json_match"].items():
            assert health[key] == value
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/validate",
            data=json.dumps({"title": "Budget passed", "body": "..."}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            assert json.load(response) == {"valid": True, "errors": []}
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode(errors="replace")
    assert process.returncode == 0, f"SIGTERM (docker stop) must end it cleanly:\n{output}"


# -- Prometheus and Alertmanager in compose ----------------------------------------


def replicate(name: str, root: Path) -> None:
    """Copy what ``name``'s container sees of the repository into ``root``."""
    for source, target, is_bind in mounts(name):
        if not is_bind:
            continue
        destination = root / target.lstrip("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if host_path(source).is_dir():
            shutil.copytree(host_path(source), destination)
        else:
            shutil.copy(host_path(source), destination)


def container_path(name: str, flag: str) -> str:
    for argument in service(name)["command"]:
        if argument.startswith(f"{flag}="):
            return str(argument.split("=", 1)[1])
    raise AssertionError(f"{name}: no {flag}")


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = binary("promtool", "prometheus")
    replicate("prometheus", tmp_path)
    config = tmp_path / container_path("prometheus", "--config.file").lstrip("/")
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rule files found" in result.stdout


def compose_prometheus() -> dict[str, Any]:
    path = bind_source("prometheus", container_path("prometheus", "--config.file"))
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def test_compose_prometheus_matches_the_normal_profile() -> None:
    host = yaml.safe_load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))
    ours = compose_prometheus()
    assert ours["global"] == host["global"]
    assert [Path(f).name for f in ours["rule_files"]] == [Path(f).name for f in host["rule_files"]]
    assert [job["job_name"] for job in ours["scrape_configs"]] == [
        job["job_name"] for job in host["scrape_configs"]
    ]
    (job,) = [j for j in ours["scrape_configs"] if j["job_name"] == "pipeline-monitor"]
    assert job["static_configs"] == [{"targets": ["monitor:8000"]}]
    (alertmanager,) = ours["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"] == [{"targets": ["alertmanager:9093"]}]
    retention = [a for a in service("prometheus")["command"] if "retention.time" in a]
    assert retention and int(re.sub(r"\D", "", retention[0])) >= 30, "30-day uptime panels"


def compose_alertmanager() -> dict[str, Any]:
    path = bind_source("alertmanager", container_path("alertmanager", "--config.file"))
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def receivers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {receiver["name"]: receiver for receiver in config["receivers"]}


def without_addresses(config: Any) -> Any:
    """``config`` with URLs and secret file paths blanked, for comparing the variants."""
    if isinstance(config, dict):
        return {
            key: "<address>"
            if key in ("url", "api_url", "api_url_file", "credentials_file")
            else without_addresses(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [without_addresses(item) for item in config]
    return config


def test_compose_alertmanager_passes_amtool(tmp_path: Path) -> None:
    amtool = binary("amtool", "prometheus-alertmanager")
    replicate("alertmanager", tmp_path)
    config = tmp_path / container_path("alertmanager", "--config.file").lstrip("/")
    result = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    templates = list((config.parent / "alertmanager-templates").glob("*.tmpl"))
    assert templates, "the templates are mounted where the config looks for them"


def test_compose_alertmanager_matches_the_host_config_but_for_addresses() -> None:
    host = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text(encoding="utf-8"))
    ours = compose_alertmanager()
    assert without_addresses(ours) == without_addresses(host), (
        "deploy/compose/alertmanager.yml must have the routes, receivers and inhibitions"
        " of deploy/alertmanager.yml"
    )
    (webhook,) = receivers(ours)["recovery-webhook"]["webhook_configs"]
    url = urlsplit(webhook["url"])
    (host_webhook,) = receivers(host)["recovery-webhook"]["webhook_configs"]
    assert url.hostname == "monitor" and url.port == 8000
    assert url.path == urlsplit(host_webhook["url"]).path == "/api/alertmanager/webhook"
    # Only the addresses differ: nothing else was blanked away by accident.
    changed = copy.deepcopy(ours)
    changed["route"]["group_wait"] = "1s"
    assert without_addresses(changed) != without_addresses(host)


# -- Grafana in compose -------------------------------------------------------------


def test_compose_grafana_provisioning() -> None:
    assert bind_source("grafana", "/etc/grafana/provisioning") == ROOT / "grafana" / "provisioning"
    (provider,) = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    dashboards = bind_source("grafana", provider["options"]["path"])
    assert dashboards == ROOT / "grafana" / "dashboards"
    assert list(dashboards.glob("*.json"))
    env = environment("grafana")
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert PurePosixPath(home).parent == PurePosixPath(provider["options"]["path"])
    assert (dashboards / PurePosixPath(home).name).is_file()
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    url = urlsplit(datasource["url"])
    assert url.hostname == "prometheus" and url.port == 9090


# -- systemd ------------------------------------------------------------------------


def unit(path: Path = UNIT_FILE) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (a key may repeat, as Environment= does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def single(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key)
    assert values and len(values) == 1, f"{key}= must be set once, got {values}"
    return values[0]


def test_unit_runs_the_monitor_as_its_own_user() -> None:
    service_section = unit()["Service"]
    assert single(service_section, "Type") == "exec"
    assert single(service_section, "User") == "pipeline"
    assert single(service_section, "EnvironmentFile") == "-/etc/pipeline-monitor/env"
    assert single(service_section, "Restart") == "on-failure"
    argv = shlex.split(single(service_section, "ExecStart"))
    assert argv == [
        "/opt/pipeline-monitor/.venv/bin/pipeline-monitor",
        "run",
        "--config",
        CONFIG_PATH,
    ]
    assert_cli_accepts(argv)
    assert unit()["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in " ".join(unit()["Unit"]["After"])


def test_unit_state_token_and_logs() -> None:
    service_section = unit()["Service"]
    environment_ = dict(line.split("=", 1) for line in service_section["Environment"])
    assert single(service_section, "StateDirectory") == "pipeline-monitor"
    assert environment_["PIPELINE_STATE_DIR"] == STATE_DIR
    name, _, source = single(service_section, "LoadCredential").partition(":")
    assert source.startswith("/etc/pipeline-monitor/")
    assert environment_["PIPELINE_API_TOKEN_FILE"] == f"%d/{name}"
    writable = single(service_section, "ReadWritePaths").split()
    assert STATE_DIR in writable
    audit_log = PurePosixPath(environment_["AUDIT_LOG_FILE"])
    assert str(audit_log.parent) in writable
    assert audit_log.parent == PurePosixPath("/var/log") / single(service_section, "LogsDirectory")
    # Private whatever else runs: the state directory 0700, a umask for what commands make.
    assert single(service_section, "StateDirectoryMode") == "0700"
    assert single(service_section, "UMask") == "0077"


def test_unit_is_hardened() -> None:
    service_section = unit()["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert single(service_section, key) == value, key
    families = single(service_section, "RestrictAddressFamilies").split()
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} <= set(families), "network and D-Bus"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """With ExecStart pointed at this checkout's console script, as an installation
    has it at /opt/pipeline-monitor/.venv/bin/pipeline-monitor."""
    systemd_analyze = binary("systemd-analyze", "systemd")
    text = UNIT_FILE.read_text(encoding="utf-8").replace(
        "/opt/pipeline-monitor/.venv/bin/pipeline-monitor", console_script()
    )
    copy_path = tmp_path / UNIT_FILE.name
    copy_path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [systemd_analyze, "verify", str(copy_path)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in result.stderr.splitlines() if UNIT_FILE.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr


def test_dockerfile_compose_and_unit_agree_on_paths() -> None:
    (cmd,) = dockerfile("CMD")
    docker_config = exec_form(cmd)[exec_form(cmd).index("--config") + 1]
    exec_start = shlex.split(single(unit()["Service"], "ExecStart"))
    unit_config = exec_start[exec_start.index("--config") + 1]
    assert docker_config == unit_config == CONFIG_PATH
    assert environment("monitor")["PIPELINE_STATE_DIR"] == STATE_DIR
