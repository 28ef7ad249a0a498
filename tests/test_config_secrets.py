"""check-config and every validation error mask what is or may be a secret: by the
key's name (in any case), beside a misspelled key, in header and env values named
like secrets, and in any URL that carries a password or a secret parameter."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from helpers import assert_no_secret

from exporter.redact import looks_secret, mask_url_secrets
from recovery_webhook.cli import main

pytestmark = pytest.mark.unit

SECRET = "Xq7-s3cret-v4lue"


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "pipeline.yml"
    path.write_text(textwrap.dedent(text))
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    return err


def probe(body: str) -> str:
    return f"components:\n  database:\n    probes:\n      - {body}\n"


CASES = {
    # A misspelled key is refused, and its value (a whole DSN) is not shown.
    "dns for dsn": probe(f"{{type: postgres, dsn: x, dns: 'postgresql://u:{SECRET}@h/db'}}"),
    "DSN for dsn": probe(f"{{type: postgres, dsn: x, DSN: 'postgresql://u:{SECRET}@h/db'}}"),
    "passwrd beside a url": probe(f"{{type: redis, url: 'redis://h:6379/0', passwrd: {SECRET}}}"),
    # A value of the wrong type, in a key named like a secret, in any case.
    "header named like a token": probe(
        "{type: http, url: 'http://h/health', headers: {X-Token: 739128346}}"
    ),
    "Authorization header": probe(
        "{type: http, url: 'http://h/health', headers: {Authorization: 739128346}}"
    ),
    # A URL with a password where a host:port was expected: our own message quotes it.
    "url in targets": probe(f"{{type: tcp, targets: ['amqp://u:{SECRET}@h:5672']}}"),
    "token parameter in targets": probe(f"{{type: tcp, targets: ['h/?token={SECRET}']}}"),
}


@pytest.mark.parametrize("case", CASES)
def test_validation_errors_never_show_a_secret(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = check(tmp_path, CASES[case], capsys)
    assert "invalid configuration" in err
    assert_no_secret(err, SECRET, "739128346")


def test_command_env_values_named_like_secrets_are_not_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = check(
        tmp_path,
        """\
        components: {network: {probes: [{type: tcp, targets: ['127.0.0.1:1']}]}}
        recovery:
          rules:
            - alertname: "*"
              actions:
                - type: command
                  argv: [/bin/true]
                  env: {DB_PASSWORD: 739128346}
        """,
        capsys,
    )
    assert "recovery.rules.0.actions.0.env.DB_PASSWORD" in err
    assert "739128346" not in err


def test_ordinary_values_are_still_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = check(tmp_path, probe("{type: tcp, targets: ['h:1'], timeout: nope}"), capsys)
    assert "(got 'nope')" in err


@pytest.mark.parametrize(
    "name",
    ["dsn", "DSN", "password", "DB_PASSWORD", "X-Api-Key", "apikey", "sessionToken", "sig",
     "X-Amz-Signature", "X-Amz-Credential", "Authorization", "Proxy-Authorization",
     "secret_access_key", "auth", "X-Auth-Token", "Cookie", "passphrase"],
)  # fmt: skip
def test_names_that_look_secret(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize("name", ["author", "keys", "timeout", "url", "host", "queues", "name"])
def test_names_that_do_not(name: str) -> None:
    assert not looks_secret(name)


def test_url_secrets_are_masked_in_any_text() -> None:
    text = (
        "GET https://svc.example/health?token=abc123&region=eu&X-Amz-Signature=f00d"
        " failed; see amqp://monitor:hunter2@mq:5672/ and http://h/?sig=1;api_key=2"
    )
    assert mask_url_secrets(text) == (
        "GET https://svc.example/health?token=***&region=eu&X-Amz-Signature=***"
        " failed; see amqp://monitor:***@mq:5672/ and http://h/?sig=***;api_key=***"
    )
    assert mask_url_secrets("component=db, error=x") == "component=db, error=x"
