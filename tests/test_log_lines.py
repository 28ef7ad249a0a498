"""No text from outside can forge or hide a log line.

Alert names, labels, annotations and header values reach the audit log (the
seed's text format and JSON lines) and the service log. Whatever they hold, each
record is exactly one line, under both "\\n" and str.splitlines(), and its fields
read back unchanged (URL secrets aside, which are masked on purpose)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.audit import LOGGER_NAME, AuditLog
from exporter.config import AuditConfig
from exporter.logsafe import OneLineFormatter, escape, key_values, unescape
from exporter.redact import mask_in, mask_url_secrets

pytestmark = pytest.mark.unit

# Everything Unicode has, surrogates included (a header decoded with
# surrogateescape holds them), and the characters that matter most, often.
NASTY = '\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00\x1b\x7f\x9b\u202e\u200b\ufeff\\",= '
TEXT = st.text(
    alphabet=st.one_of(st.characters(codec=None, categories=None), st.sampled_from(NASTY)),
    max_size=60,
)
FORGED = "x\n2026-01-01 00:00:00,000 - pipeline_monitor.audit - CRITICAL - ESCALATION: {}"

LINE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}) - (?P<logger>[\w.]+) - "
    r"(?P<level>[A-Z]+) - (?P<event>[A-Z_]+): (?P<payload>.*)$",
    re.S,
)


def one_line(text: str) -> str:
    """``text`` less its final newline, checked to be one line both ways."""
    assert text.endswith("\n"), repr(text)
    body = text[:-1]
    assert "\n" not in body, repr(text)
    assert len(text.splitlines()) == 1, repr(text)
    return body


def parse_key_values(text: str) -> dict[str, str]:
    """Read the seed's ``key=value, key=value`` back: a token is plain text up to
    its delimiter, or a JSON string."""
    decoder = json.JSONDecoder()

    def token(at: int, stop: str) -> tuple[str, int]:
        if text.startswith('"', at):
            value, end = decoder.raw_decode(text, at)
            assert isinstance(value, str)
            return value, end
        end = text.find(stop, at)
        end = len(text) if end == -1 else end
        return text[at:end], end

    fields: dict[str, str] = {}
    at = 0
    while True:
        key, at = token(at, "=")
        assert text[at] == "=", (text, at)
        value, at = token(at + 1, ",")
        assert key not in fields, f"{key!r} twice in {text!r}"
        fields[key] = value
        if at == len(text):
            return fields
        assert text.startswith(", ", at), (text, at)
        at += 2


def written(config: AuditConfig, emit: Any) -> str:
    stream = io.StringIO()
    audit = AuditLog(config, stream=stream, name=LOGGER_NAME)
    try:
        emit(audit)
    finally:
        audit.close()
    return stream.getvalue()


@settings(max_examples=300, deadline=None)
@given(alertname=TEXT, component=TEXT, fingerprint=TEXT, severity=TEXT)
def test_a_key_value_audit_line_is_one_line_and_reads_back(
    alertname: str, component: str, fingerprint: str, severity: str
) -> None:
    text = written(
        AuditConfig(),
        lambda audit: audit.alert_triggered(
            component, severity, alertname=alertname, fingerprint=fingerprint
        ),
    )
    match = LINE.match(one_line(text))
    assert match and match["event"] == "ALERT_TRIGGERED", text
    assert parse_key_values(match["payload"]) == mask_in(
        {
            "component": component,
            "severity": severity.upper(),
            "alertname": alertname,
            "fingerprint": fingerprint,
        }
    )


@settings(max_examples=200, deadline=None)
@given(component=TEXT, error=TEXT, output=TEXT, extra=st.dictionaries(TEXT, TEXT, max_size=3))
def test_a_json_payload_audit_line_is_one_line_and_reads_back(
    component: str, error: str, output: str, extra: dict[str, str]
) -> None:
    fields = {
        **extra,
        "attempt_id": "x_1",
        "component": component,
        "success": False,
        "error_message": error,
        "actions": [{"action": "command", "output": output}],
    }
    text = written(AuditConfig(), lambda audit: audit.recovery_attempt(fields))
    match = LINE.match(one_line(text))
    assert match and match["event"] == "RECOVERY_ATTEMPT", text
    assert json.loads(match["payload"]) == mask_in(fields)


@settings(max_examples=200, deadline=None)
@given(alertname=TEXT, component=TEXT, error=TEXT)
def test_json_lines_are_one_line_and_read_back(alertname: str, component: str, error: str) -> None:
    def emit(audit: AuditLog) -> None:
        audit.alert_triggered(component, "critical", alertname=alertname, fingerprint="f")
        audit.health_check(component, "unhealthy", 1.0, "e" + error)

    text = written(AuditConfig(format="json"), emit)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3, repr(text)
    assert len(text.splitlines()) == 2, repr(text)
    alert, check = (json.loads(line) for line in lines[:2])
    assert (alert["event"], alert["alertname"]) == ("ALERT_TRIGGERED", mask_url_secrets(alertname))
    assert alert["component"] == mask_url_secrets(component)
    assert (check["event"], check["error"]) == ("HEALTH_CHECK", mask_url_secrets("e" + error))


def service_log_line(record: logging.LogRecord) -> str:
    formatter = OneLineFormatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    return formatter.format(record) + "\n"


@settings(max_examples=300, deadline=None)
@given(text=TEXT, path=TEXT)
def test_a_service_log_record_is_one_line_and_reads_back(text: str, path: str) -> None:
    record = logging.LogRecord(
        "recovery_webhook.api", logging.ERROR, __file__, 1, "GET %s failed: %s", (path, text), None
    )
    line = one_line(service_log_line(record))
    stamp, name, level, message = line.split(" - ", 3)
    assert (name, level) == ("recovery_webhook.api", "ERROR")
    assert unescape(message) == mask_url_secrets(f"GET {path} failed: {text}")


@settings(max_examples=100, deadline=None)
@given(text=TEXT)
def test_a_traceback_stays_on_its_record_line(text: str) -> None:
    try:
        raise ValueError("e" + text)
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), exc_info)
    line = one_line(service_log_line(record))
    message = unescape(line.split(" - ", 3)[3])
    assert message.startswith("failed\nTraceback (most recent call last):\n")
    assert message.endswith(mask_url_secrets(f"ValueError: e{text}"))


@pytest.mark.parametrize(
    "char", list("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00\x1b\x7f\x9b\u202e")
)
def test_every_line_breaking_or_terminal_character_is_escaped(char: str) -> None:
    def alert(audit: AuditLog) -> None:
        audit.alert_resolved("c", alertname=f"a{char}b")

    for rendered in (
        escape(f"a{char}b"),
        key_values({"alertname": f"a{char}b"}),
        written(AuditConfig(), alert)[:-1],
        written(AuditConfig(format="json"), alert)[:-1],
    ):
        assert char not in rendered, (char, rendered)


def test_a_forged_line_in_an_alertname_stays_inside_its_field() -> None:
    text = written(
        AuditConfig(), lambda audit: audit.alert_triggered("db", "critical", alertname=FORGED)
    )
    match = LINE.match(one_line(text))
    assert match and match["event"] == "ALERT_TRIGGERED"
    assert parse_key_values(match["payload"])["alertname"] == FORGED


def test_a_value_holding_a_separator_cannot_add_a_key() -> None:
    payload = key_values({"component": "db, severity=LOW", "severity": "CRITICAL"})
    assert parse_key_values(payload) == {"component": "db, severity=LOW", "severity": "CRITICAL"}


def test_plain_values_keep_the_seed_format() -> None:
    assert key_values({"component": "database", "error": "Database connection lost"}) == (
        "component=database, error=Database connection lost"
    )
