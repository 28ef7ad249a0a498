"""Config validation and the ``pipeline-monitor`` command, run as the console
script in a subprocess: check-config's verdicts, the seed's environment
variables, secrets from files, and ``probe``'s table, JSON and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from helpers import address, assert_no_secret, console_script, with_netloc

from exporter.config import ConfigError, MonitorConfig, load_config
from recovery_webhook.cli import main
from recovery_webhook.config import AppConfig

pytestmark = pytest.mark.integration

SEED_ENV = ("PIPELINE_CONFIG", "PIPELINE_CHECK_INTERVAL", "DATABASE_URL", "DATABASE_URL_FILE",
            "AUDIT_LOG_FILE", "ALERT_WEBHOOK_URL", "ALERT_WEBHOOK_URL_FILE", "PIPELINE_STATE_DIR",
            "PIPELINE_API_TOKEN", "PIPELINE_API_TOKEN_FILE")  # fmt: skip
PASSWORD = "Cl1-secret!pw"


@pytest.fixture(autouse=True)
def _no_monitor_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's shell must not change what main() sees in this process."""
    for name in SEED_ENV:
        monkeypatch.delenv(name, raising=False)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run the console script; the monitor's variables come only from ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in SEED_ENV}
    return subprocess.run(
        [console_script(), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# -- check-config ---------------------------------------------------------------------


GOOD = """\
    check_interval: 30s
    components:
      database:
        probes:
          - type: postgres
            dsn: postgresql://postgres@127.0.0.1:5432/test
      queue:
        probes:
          - type: rabbitmq
            url: amqp://guest:guest@127.0.0.1:5672/%2F
            queues: [articles, {name: images, backlog_degraded: 50}]
    """


def test_check_config_good_file(tmp_path: Path) -> None:
    path = write(tmp_path / "good.yml", GOOD)
    done = cli("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{path}: OK (2 components, 2 probes")


BAD_CONFIGS = {
    "unknown key": (
        """\
        check_intervall: 30
        components: {network: {probes: [{type: tcp, targets: ["127.0.0.1:5432"]}]}}
        """,
        # Never with its value: an unknown key may be a misspelled secret one.
        ["check_intervall: Extra inputs are not permitted\n"],
    ),
    "unknown probe option": (
        """\
        components:
          network:
            probes: [{type: tcp, targets: ["127.0.0.1:5432"], retries: 3}]
        """,
        ["components.network.probes.0", "retries: Extra inputs are not permitted\n"],
    ),
    "wrong type": (
        """\
        components:
          database:
            probes:
              - {type: postgres, dsn: "postgresql://x@h/db", write_canary: maybe}
        """,
        ["components.database.probes.0", "write_canary", "valid boolean", "(got 'maybe')"],
    ),
    "bad duration": (
        """\
        check_interval: 5 minutes
        components: {network: {probes: [{type: tcp, targets: ["127.0.0.1:5432"]}]}}
        """,
        ["check_interval: expected a duration", "(got '5 minutes')"],
    ),
    "bad size": (
        """\
        components:
          storage: {probes: [{type: filesystem, path: /srv, free_bytes_degraded: lots}]}
        """,
        ["free_bytes_degraded", "expected a size", "(got 'lots')"],
    ),
    "timeout not shorter than the interval": (
        """\
        check_interval: 5s
        components:
          network: {probes: [{type: tcp, timeout: 10s, targets: ["127.0.0.1:5432"]}]}
        """,
        ["components.network.probes.0.timeout: 10s must be shorter than check_interval (5s)"],
    ),
    "unknown probe type": (
        """\
        components: {network: {probes: [{type: ping, host: 127.0.0.1}]}}
        """,
        ["components.network.probes.0", "ping"],
    ),
    "bad component name": (
        """\
        components: {Article-DB: {probes: [{type: tcp, targets: ["127.0.0.1:5432"]}]}}
        """,
        ["'Article-DB'", "lower-case"],
    ),
    "yaml syntax": (
        """\
        components:
          network:
            probes:
              - type: tcp
                targets: ["127.0.0.1:5432"
          queue: {
        """,
        ["line 6, column 3: YAML syntax error"],
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_check_config_bad_file(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process (the command's main()) to keep the suite fast; the console
    # script itself is run below.
    text, expected = BAD_CONFIGS[case]
    path = write(tmp_path / "bad.yml", text)
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"pipeline-monitor: {path}: ")
    for fragment in expected:
        assert fragment in err, err


def test_check_config_bad_file_console_script(tmp_path: Path) -> None:
    text, expected = BAD_CONFIGS["yaml syntax"]
    path = write(tmp_path / "bad.yml", text)
    done = cli("check-config", str(path))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert done.stderr == (
        f"pipeline-monitor: {path}: line 6, column 3: YAML syntax error:"
        " expected ',' or ']', but got '<scalar>'\n"
    )


def test_check_config_never_echoes_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "secret.yml",
        f"""\
        components:
          database: {{probes: [{{type: mysql, dsn: "postgresql://u:{PASSWORD}@h/db"}}]}}
          queue: {{probes: [{{type: redis, url: 12, timeout: nope}}]}}
        """,
    )
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "components.database.probes.0.dsn: expected a mysql://" in err
    assert "(got 'nope')" in err  # ordinary values are shown...
    assert_no_secret(err, PASSWORD)  # ...secrets never


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nope.yml'}: cannot read: No such file or directory" in err


# -- the seed's environment variables ----------------------------------------------------


def load(path: Path | None, **env: str) -> AppConfig:
    return load_config(AppConfig, path, environ={"PIPELINE_STATE_DIR": "/tmp/pm", **env})


def test_check_interval_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yml", GOOD)
    assert load(path).check_interval == 30
    assert load(path, PIPELINE_CHECK_INTERVAL="45").check_interval == 45
    for bad in ("soon", "0", "-5"):
        with pytest.raises(ConfigError, match="PIPELINE_CHECK_INTERVAL: expected seconds > 0"):
            load(path, PIPELINE_CHECK_INTERVAL=bad)


def test_database_url_switches_postgres_to_mysql(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yml", GOOD)
    url = f"mysql://pipeline:{PASSWORD}@db.internal:3306/articles"
    config = load(path, DATABASE_URL=url)
    (probe,) = config.components["database"].probes
    assert probe.type == "mysql"
    assert probe.dsn.get_secret_value() == url  # type: ignore[attr-defined]
    assert PASSWORD not in repr(config)

    back = load(path, DATABASE_URL="postgresql://postgres@127.0.0.1:5432/postgres")
    assert back.components["database"].probes[0].type == "postgres"

    with pytest.raises(ConfigError, match="DATABASE_URL: expected a postgresql:// or mysql://"):
        load(path, DATABASE_URL="sqlite:///articles.db")


def test_database_url_without_a_config_file() -> None:
    config = load(None, DATABASE_URL="mariadb://root@127.0.0.1:3306/test")
    assert set(config.components) == {
        "network",
        "validation_service",
        "database",
        "storage",
        "queue",
    }
    assert [p.type for p in config.components["database"].probes] == ["mysql"]


def test_database_url_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(f"mysql://root:{PASSWORD}@127.0.0.1:3306/test\n")  # trailing newline
    config = load(None, DATABASE_URL_FILE=str(secret))
    probe = config.components["database"].probes[0]
    assert probe.dsn.get_secret_value() == f"mysql://root:{PASSWORD}@127.0.0.1:3306/test"  # type: ignore[attr-defined]

    with pytest.raises(ConfigError, match="DATABASE_URL_FILE: cannot read secret file"):
        load(None, DATABASE_URL_FILE=str(tmp_path / "missing"))


def test_dsn_file_in_the_config(tmp_path: Path) -> None:
    secret = tmp_path / "dsn"
    secret.write_text(f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/test")
    path = write(
        tmp_path / "c.yml",
        f"""\
        components:
          database: {{probes: [{{type: postgres, dsn_file: {secret}}}]}}
        """,
    )
    probe = load(path).components["database"].probes[0]
    assert PASSWORD in probe.dsn.get_secret_value()  # type: ignore[attr-defined]

    both = write(
        tmp_path / "both.yml",
        f"""\
        components:
          database: {{probes: [{{type: postgres, dsn: "postgresql://x@h/db", dsn_file: {secret}}}]}}
        """,
    )
    with pytest.raises(ConfigError, match="give either dsn or dsn_file, not both"):
        load(both)


def test_audit_file_and_webhook_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yml", GOOD)
    config = load(
        path,
        AUDIT_LOG_FILE=str(tmp_path / "audit.log"),
        ALERT_WEBHOOK_URL="https://hooks.example/T000/B000/XXXX",
    )
    assert config.audit.file == tmp_path / "audit.log"
    assert config.alert_webhook.url == "https://hooks.example/T000/B000/XXXX"

    hook_file = tmp_path / "hook"
    hook_file.write_text("http://127.0.0.1:9/hook\n")
    assert load(path, ALERT_WEBHOOK_URL_FILE=str(hook_file)).alert_webhook.url == (
        "http://127.0.0.1:9/hook"
    )
    with pytest.raises(ConfigError, match="alert_webhook.url: .*http:// or https://"):
        load(path, ALERT_WEBHOOK_URL="ftp://hooks.example/x")


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yml", GOOD)
    config = load_config(MonitorConfig, None, environ={"PIPELINE_CONFIG": str(path)})
    assert set(config.components) == {"database", "queue"}


# -- probe ----------------------------------------------------------------------------------


def probe_config(tmp_path: Path, components: dict[str, Any]) -> Path:
    path = tmp_path / "probe.yml"
    path.write_text(json.dumps({"check_interval": 10, "components": components}))
    return path


def test_probe_table_and_exit_code(tmp_path: Path, pg_dsn: str, unused_port: int) -> None:
    healthy = {"database": {"probes": [{"type": "postgres", "dsn": pg_dsn}]}}
    done = cli("probe", "--config", str(probe_config(tmp_path, healthy)))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["COMPONENT", "PROBE", "STATUS", "LATENCY", "DETAIL"]
    assert lines[1].split()[:3] == ["database", "postgres", "HEALTHY"]
    assert lines[-1] == "overall: HEALTHY (can publish)"

    broken = {
        **healthy,
        "validation_service": {
            "probes": [{"type": "http", "url": f"http://127.0.0.1:{unused_port}/health"}]
        },
    }
    done = cli("probe", "--config", str(probe_config(tmp_path, broken)))
    assert done.returncode == 1
    row = next(line for line in done.stdout.splitlines() if line.startswith("validation_service"))
    assert "UNHEALTHY" in row and "Connection refused" in row
    assert done.stdout.splitlines()[-1] == "overall: UNHEALTHY (CANNOT publish)"


def test_probe_degraded_is_not_a_failure(tmp_path: Path, pg_dsn: str, unused_port: int) -> None:
    config = {
        "network": {
            "probes": [{"type": "tcp", "targets": [address(pg_dsn), f"127.0.0.1:{unused_port}"]}]
        }
    }
    done = cli("probe", "--json", "--config", str(probe_config(tmp_path, config)))
    assert done.returncode == 0, done.stdout
    assert json.loads(done.stdout)["overall_status"] == "degraded"


def test_probe_json_never_shows_a_password(
    tmp_path: Path,
    mysql_dsn: str,
    amqp_url: str,
    unused_port: int,
    mysql_user: Callable[..., str],
) -> None:
    user = mysql_user("right-" + PASSWORD)
    components = {
        # Nothing listens there.
        "database": {
            "probes": [
                {
                    "type": "postgres",
                    "dsn": f"postgresql://postgres:{quote(PASSWORD)}@127.0.0.1:{unused_port}/db",
                }
            ]
        },
        # Real servers, wrong passwords.
        "reports": {
            "probes": [
                {
                    "type": "mysql",
                    "dsn": with_netloc(mysql_dsn, user=user, password=quote(PASSWORD, safe="")),
                }
            ]
        },
        "queue": {
            "probes": [{"type": "rabbitmq", "url": with_netloc(amqp_url, password=PASSWORD)}]
        },
    }
    done = cli("probe", "--json", "--config", str(probe_config(tmp_path, components)))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["overall_status"] == "unhealthy"
    assert report["can_publish"] is False
    found = report["components"]
    assert "Connection refused" in found["database"]["probes"]["postgres"]["error"]
    assert f"Access denied for user '{user}'" in found["reports"]["probes"]["mysql"]["error"]
    assert found["queue"]["probes"]["rabbitmq"]["error"] == (
        "authentication failed (check the user name and password)"
    )
    for name in found:
        assert found[name]["status"] == "unhealthy", found[name]
        assert isinstance(found[name]["latency_ms"], float)
    assert_no_secret(done.stdout + done.stderr, PASSWORD, quote(PASSWORD), quote(PASSWORD, safe=""))

    table = cli("probe", "--config", str(probe_config(tmp_path, components)))
    assert table.returncode == 1
    assert_no_secret(table.stdout + table.stderr, PASSWORD, quote(PASSWORD, safe=""))


def test_probe_honours_database_url(tmp_path: Path, pg_dsn: str, mysql_dsn: str) -> None:
    config = probe_config(tmp_path, {"database": {"probes": [{"type": "postgres", "dsn": pg_dsn}]}})
    done = cli("probe", "--json", "--config", str(config), env={"DATABASE_URL": mysql_dsn})
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(json.loads(done.stdout)["components"]["database"]["probes"]) == {"mysql"}


def test_probe_with_a_bad_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bad.yml", "components: {network: {probes: []}}\n")
    assert main(["probe", "--config", str(path)]) == 2
    assert "components.network.probes" in capsys.readouterr().err
