"""Prometheus and Alertmanager configuration: rules, routing, inhibition, runbooks.

Runs the real promtool, amtool and alertmanager (Debian packages `prometheus` and
`prometheus-alertmanager`); a missing binary fails the test, it never skips.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alert_rules.yml"
RULE_TESTS = sorted((ROOT / "tests" / "rules").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DEPLOY = ROOT / "deploy"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager.yml"
TEMPLATES = DEPLOY / "alertmanager-templates"
RUNBOOK_URL = "https://github.com/pipeline-recovery/pipeline-recovery/blob/main/docs/runbooks.md"

# The recovery webhook's contract: these, and only these, reach it.
AUTO_ALERTS = {
    "PipelineComponentDown",
    "PipelineQueueBacklog",
    "PipelineQueueNoConsumers",
    "PipelineStorageLowSpace",
    "PipelineDatabaseConnectionsHigh",
}
DEFAULT_COMPONENTS = ("network", "validation_service", "database", "storage", "queue")
NORMAL_EVALUATION_SECONDS = 15
FAST_EVALUATION_SECONDS = 1


def binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        f"{' or '.join(names)} not found on PATH: install the Debian packages "
        "prometheus and prometheus-alertmanager (make test-deps does)"
    )


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def load_render_fast_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_fast_rules", DEPLOY / "render_fast_rules.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Prometheus -------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    assert_ok(run(binary("promtool"), "check", "rules", str(RULES)))


def test_there_are_rule_tests() -> None:
    assert {path.name for path in RULE_TESTS} >= {"components.yml", "resources.yml", "slo.yml"}


# The SLO's file replays days of samples a minute at a time: about 20 s on an idle
# machine, several times that on a busy one.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", RULE_TESTS, ids=lambda path: path.name)
def test_rules_pass_their_unit_tests(path: Path) -> None:
    assert_ok(run(binary("promtool"), "test", "rules", str(path), timeout=280))


def test_every_alert_has_unit_tests_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts without a firing test"
    # The Watchdog fires by definition: there is no case where it must not.
    assert names - silent == {"Watchdog"}, "alerts without a not-firing test"


@pytest.mark.parametrize("profile", ["prometheus.yml", "prometheus-fast.yml"])
def test_prometheus_profiles_pass_promtool_check(profile: str) -> None:
    # promtool also checks the rule files the config names.
    assert_ok(run(binary("promtool"), "check", "config", str(DEPLOY / profile)))


@pytest.mark.parametrize(
    ("profile", "interval", "rule_file"),
    [
        ("prometheus.yml", NORMAL_EVALUATION_SECONDS, RULES),
        ("prometheus-fast.yml", FAST_EVALUATION_SECONDS, DEPLOY / "alert_rules-fast.yml"),
    ],
)
def test_prometheus_profile_scrapes_the_monitor(
    profile: str, interval: int, rule_file: Path
) -> None:
    config = yaml.safe_load((DEPLOY / profile).read_text())
    assert config["global"]["scrape_interval"] == f"{interval}s"
    assert config["global"]["evaluation_interval"] == f"{interval}s"
    assert [(DEPLOY / path).resolve() for path in config["rule_files"]] == [rule_file]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "pipeline-monitor"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    (alertmanager,) = config["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]


def test_fast_rules_are_up_to_date() -> None:
    render_fast_rules = load_render_fast_rules()
    factor = render_fast_rules.speedup()
    assert factor == NORMAL_EVALUATION_SECONDS / FAST_EVALUATION_SECONDS
    expected = render_fast_rules.render(RULES.read_text(), factor)
    assert (DEPLOY / "alert_rules-fast.yml").read_text() == expected, (
        "deploy/alert_rules-fast.yml is out of date: run python deploy/render_fast_rules.py"
    )


@pytest.mark.parametrize(
    ("path", "interval"),
    [
        (RULES, NORMAL_EVALUATION_SECONDS),
        (DEPLOY / "alert_rules-fast.yml", FAST_EVALUATION_SECONDS),
    ],
)
def test_for_durations_span_at_least_two_scrapes(path: Path, interval: int) -> None:
    parse = load_render_fast_rules().parse_duration_ms
    for rule in alert_rules(path):
        if "for" in rule:
            assert parse(rule["for"]) >= 2 * interval * 1000, rule["alert"]


def test_fast_rules_differ_only_in_for_durations() -> None:
    def without_for(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in rule.items() if k != "for"} for rule in rules]

    fast = alert_rules(DEPLOY / "alert_rules-fast.yml")
    assert without_for(fast) == without_for(alert_rules())


def test_fast_rules_keep_the_groups_pace() -> None:
    parse = load_render_fast_rules().parse_duration_ms
    factor = NORMAL_EVALUATION_SECONDS / FAST_EVALUATION_SECONDS

    def intervals(path: Path) -> dict[str, int]:
        groups = yaml.safe_load(path.read_text())["groups"]
        return {g["name"]: parse(g["interval"]) for g in groups if "interval" in g}

    normal, fast = intervals(RULES), intervals(DEPLOY / "alert_rules-fast.yml")
    assert normal, "no group with its own interval"
    assert fast == {name: round(ms / factor) for name, ms in normal.items()}


# --- the rules' contract ------------------------------------------------------------


def github_anchors(markdown: str) -> list[str]:
    """The anchors GitHub gives the headings of a markdown document, in order."""
    anchors: list[str] = []
    seen: dict[str, int] = {}
    fence: str | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        if fence or not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match[1]).replace("`", "").lower()
        anchor = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.append(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def test_github_anchors_follow_githubs_rules() -> None:
    markdown = "# Top\n## Component: validation_service\n```\n# not a heading\n```\n## Top\n"
    assert github_anchors(markdown) == ["top", "component-validation_service", "top-1"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_carries_the_labels_and_annotations_of_the_contract(rule: dict[str, Any]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels["severity"] in {"critical", "warning", "none"}
    assert labels["recovery"] == ("auto" if rule["alert"] in AUTO_ALERTS else "manual")
    assert labels["component"] in {"{{ $labels.component }}", "monitor", "publishing"}
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    assert annotations["runbook_url"] == f"{RUNBOOK_URL}#{rule['alert'].lower()}"


def test_every_runbook_anchor_exists() -> None:
    anchors = set(github_anchors(RUNBOOKS.read_text()))
    wanted = {rule["annotations"]["runbook_url"].partition("#")[2] for rule in alert_rules()}
    wanted |= {f"component-{name}" for name in DEFAULT_COMPONENTS}
    assert wanted - anchors == set(), "headings missing from docs/runbooks.md"


def test_runbook_links_point_at_existing_headings() -> None:
    markdown = RUNBOOKS.read_text()
    anchors = set(github_anchors(markdown))
    assert set(re.findall(r"\]\(#([^)]+)\)", markdown)) - anchors == set()


# --- Alertmanager -------------------------------------------------------------------


def test_alertmanager_config_passes_amtool_check() -> None:
    assert_ok(run(binary("amtool"), "check-config", str(ALERTMANAGER_CONFIG)))


def test_alertmanager_loads_the_templates() -> None:
    # Neither amtool nor Alertmanager minds a glob that matches nothing; the
    # notifications would then fail on their first `template` call.
    (pattern,) = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["templates"]
    assert sorted(ALERTMANAGER_CONFIG.parent.glob(pattern)) == sorted(TEMPLATES.glob("*.tmpl"))
    assert {path.name for path in TEMPLATES.glob("*.tmpl")} == {"slack.tmpl", "email.tmpl"}


def routed_receivers(labels: dict[str, str]) -> list[str]:
    result = run(
        binary("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert_ok(result)
    return sorted(result.stdout.strip().split(","))


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        pytest.param(
            {
                "alertname": "PipelineComponentDown",
                "component": "database",
                "severity": "critical",
                "recovery": "auto",
            },
            ["email", "recovery-webhook", "slack"],
            id="auto-critical",
        ),
        pytest.param(
            {
                "alertname": "PipelineQueueBacklog",
                "component": "queue",
                "queue": "articles",
                "severity": "warning",
                "recovery": "auto",
            },
            ["recovery-webhook", "slack"],
            id="auto-warning",
        ),
        pytest.param(
            {
                "alertname": "PipelineProbeStale",
                "component": "queue",
                "severity": "warning",
                "recovery": "manual",
            },
            ["slack"],
            id="manual-warning",
        ),
        pytest.param(
            {
                "alertname": "PipelineEscalated",
                "component": "database",
                "severity": "critical",
                "recovery": "manual",
            },
            ["email", "slack"],
            id="manual-critical",
        ),
        pytest.param(
            {
                "alertname": "Watchdog",
                "component": "monitor",
                "severity": "none",
                "recovery": "manual",
            },
            ["heartbeat"],
            id="watchdog",
        ),
    ],
)
def test_routing(labels: dict[str, str], receivers: list[str]) -> None:
    assert routed_receivers(labels) == receivers


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_reaches_its_receivers(rule: dict[str, Any]) -> None:
    labels = {"alertname": rule["alert"], **rule["labels"]}
    if labels["component"].startswith("{{"):
        labels["component"] = "database"
    if rule["alert"] == "Watchdog":
        expected = ["heartbeat"]
    else:
        expected = ["slack"]
        expected += ["email"] if labels["severity"] == "critical" else []
        expected += ["recovery-webhook"] if labels["recovery"] == "auto" else []
    assert routed_receivers(labels) == sorted(expected)


def render_template(name: str, data: dict[str, Any], tmp_path: Path) -> str:
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    result = run(
        binary("amtool"),
        "template",
        "render",
        f"--template.glob={TEMPLATES}/*.tmpl",
        f"--template.data={data_file}",
        f"--template.text={{{{ template {json.dumps(name)} . }}}}",
    )
    assert_ok(result)
    return result.stdout


def notification(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's template data for a group of alerts."""
    common_labels = dict(set.intersection(*(set(a["labels"].items()) for a in alerts)))
    common_annotations = dict(set.intersection(*(set(a["annotations"].items()) for a in alerts)))
    return {
        "receiver": "slack",
        "status": status,
        "alerts": list(alerts),
        "groupLabels": {k: common_labels[k] for k in ("alertname", "component")},
        "commonLabels": common_labels,
        "commonAnnotations": common_annotations,
        "externalURL": "http://127.0.0.1:9093",
    }


def sample_alert(status: str, queue: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "PipelineQueueBacklog",
            "component": "queue",
            "queue": queue,
            "severity": "warning",
            "recovery": "auto",
            "instance": "127.0.0.1:8000",
            "job": "pipeline-monitor",
        },
        "annotations": {
            "summary": f"Queue {queue} on queue has a backlog",
            "description": f"Queue {queue} (queue) holds 1500 ready messages.",
            "runbook_url": f"{RUNBOOK_URL}#pipelinequeuebacklog",
        },
        "startsAt": "2025-10-15T14:23:15Z",
        "endsAt": "2025-10-15T14:40:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": queue,
    }


def test_slack_message_tells_what_where_and_what_to_do(tmp_path: Path) -> None:
    data = notification("firing", sample_alert("firing", "articles"))
    assert render_template("slack.pipeline.title", data, tmp_path) == (
        "[FIRING:1] PipelineQueueBacklog (queue)"
    )
    assert render_template("slack.pipeline.title_link", data, tmp_path) == (
        f"{RUNBOOK_URL}#pipelinequeuebacklog"
    )
    assert render_template("slack.pipeline.color", data, tmp_path) == "warning"
    text = render_template("slack.pipeline.text", data, tmp_path)
    assert "*Queue articles on queue has a backlog*" in text
    assert "Queue articles (queue) holds 1500 ready messages." in text
    assert "*Component:* `queue`" in text
    assert "*Queue:* `articles`" in text
    assert "*Repair:* automatic, by the monitor" in text
    assert "*Since:* 2025-10-15 14:23:15 UTC" in text
    assert f"<{RUNBOOK_URL}#pipelinequeuebacklog|PipelineQueueBacklog>" in text


def test_slack_message_of_a_resolved_group(tmp_path: Path) -> None:
    data = notification(
        "resolved", sample_alert("resolved", "articles"), sample_alert("resolved", "images")
    )
    assert render_template("slack.pipeline.title", data, tmp_path) == (
        "[RESOLVED] PipelineQueueBacklog (queue)"
    )
    assert render_template("slack.pipeline.color", data, tmp_path) == "good"
    text = render_template("slack.pipeline.text", data, tmp_path)
    assert text.count("Resolved:") == 2
    assert "*Until:* 2025-10-15 14:40:00 UTC" in text


def test_email_subject(tmp_path: Path) -> None:
    one = notification("firing", sample_alert("firing", "articles"))
    assert render_template("email.pipeline.subject", one, tmp_path) == (
        "[FIRING] PipelineQueueBacklog (queue): Queue articles on queue has a backlog"
    )
    two = notification(
        "firing", sample_alert("firing", "articles"), sample_alert("firing", "images")
    )
    assert render_template("email.pipeline.subject", two, tmp_path) == (
        "[FIRING] PipelineQueueBacklog (queue): 2 alerts"
    )


# --- a running Alertmanager ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Sink:
    """A loopback HTTP server that records the notifications posted to it."""

    url: str
    received: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)

    def posts(self, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(headers, body) for p, headers, body in list(self.received) if p == path]


@pytest.fixture
def sink() -> Iterator[Sink]:
    recorded = Sink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            recorded.received.append((self.path, dict(self.headers), json.loads(body or b"null")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recorded.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield recorded
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class RunningAlertmanager:
    url: str
    token: str

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def post(self, *alerts: dict[str, str]) -> None:
        self.request("POST", "/api/v2/alerts", [{"labels": labels} for labels in alerts])

    def status(self, labels: dict[str, str]) -> dict[str, Any]:
        for alert in self.request("GET", "/api/v2/alerts"):
            if alert["labels"] == labels:
                return dict(alert["status"])
        raise AssertionError(f"Alertmanager does not know {labels}")

    def wait_for_state(self, labels: dict[str, str], state: str) -> dict[str, Any]:
        # The inhibitor learns of source alerts asynchronously, within milliseconds.
        deadline = time.monotonic() + 10
        while True:
            status = self.status(labels)
            if status["state"] == state or time.monotonic() > deadline:
                assert status["state"] == state, f"{labels}: {status}"
                return status
            time.sleep(0.05)


def local_config(tmp_path: Path, sink: Sink, token: str) -> Path:
    """The shipped configuration with its secrets and endpoints on this test's loopback."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    config["templates"] = [str(TEMPLATES / "*.tmpl")]
    (tmp_path / "slack_webhook_url").write_text(f"{sink.url}/slack")
    (tmp_path / "pipeline_api_token").write_text(token)
    (tmp_path / "smtp_password").write_text("unused")
    config["global"]["smtp_auth_password_file"] = str(tmp_path / "smtp_password")
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{free_port()}"
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(tmp_path / "slack_webhook_url")
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = f"{sink.url}/{receiver['name']}"
            authorization = webhook.get("http_config", {}).get("authorization")
            if authorization:
                authorization["credentials_file"] = str(tmp_path / "pipeline_api_token")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    assert_ok(run(binary("amtool"), "check-config", str(path)))
    return path


@pytest.fixture
def alertmanager(tmp_path: Path, sink: Sink) -> Iterator[RunningAlertmanager]:
    token = "test-token-0123456789"
    config = local_config(tmp_path, sink, token)
    port = free_port()
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    running = RunningAlertmanager(url=f"http://127.0.0.1:{port}", token=token)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Alertmanager did not start:\n{log_path.read_text()}")
            try:
                urllib.request.urlopen(f"{running.url}/-/ready", timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def labels(alertname: str, component: str, instance: str, **extra: str) -> dict[str, str]:
    """The labels an alert of alert_rules.yml has when it reaches Alertmanager."""
    rule = next(rule for rule in alert_rules() if rule["alert"] == alertname)
    return {
        "alertname": alertname,
        "severity": rule["labels"]["severity"],
        "recovery": rule["labels"]["recovery"],
        "component": component,
        "instance": instance,
        "job": "pipeline-monitor",
        **extra,
    }


WATCHDOG = {
    "alertname": "Watchdog",
    "severity": "none",
    "recovery": "manual",
    "component": "monitor",
}


def test_monitor_down_holds_back_that_monitors_component_alerts(
    alertmanager: RunningAlertmanager,
) -> None:
    monitor_down = labels("PipelineMonitorDown", "monitor", "a:8000")
    database_down = labels("PipelineComponentDown", "database", "a:8000")
    backlog = labels("PipelineQueueBacklog", "queue", "a:8000", queue="articles")
    other_monitor = labels("PipelineComponentDown", "database", "b:8000")
    alertmanager.post(monitor_down, WATCHDOG)
    alertmanager.post(database_down, backlog, other_monitor)

    for target in (database_down, backlog):
        status = alertmanager.wait_for_state(target, "suppressed")
        assert len(status["inhibitedBy"]) == 1
    for untouched in (monitor_down, WATCHDOG, other_monitor):
        assert alertmanager.wait_for_state(untouched, "active")["inhibitedBy"] == []


def test_monitor_absent_holds_back_all_component_alerts(
    alertmanager: RunningAlertmanager,
) -> None:
    database_down = labels("PipelineComponentDown", "database", "a:8000")
    alertmanager.post(database_down, WATCHDOG)
    alertmanager.wait_for_state(database_down, "active")

    alertmanager.post(
        {
            "alertname": "PipelineMonitorAbsent",
            "severity": "critical",
            "recovery": "manual",
            "component": "monitor",
            "job": "pipeline-monitor",
        }
    )
    alertmanager.wait_for_state(database_down, "suppressed")
    alertmanager.wait_for_state(WATCHDOG, "active")


def test_network_down_holds_back_other_components_and_their_repairs(
    alertmanager: RunningAlertmanager, sink: Sink
) -> None:
    network_down = labels("PipelineComponentDown", "network", "a:8000")
    network_degraded = labels("PipelineComponentDegraded", "network", "a:8000")
    database_degraded = labels("PipelineComponentDegraded", "database", "a:8000")
    alertmanager.post(network_down, network_degraded, database_degraded)
    # Once the inhibitor holds back database_degraded it knows network_down, so the
    # alerts posted next meet it at once.
    alertmanager.wait_for_state(database_degraded, "suppressed")
    alertmanager.wait_for_state(network_degraded, "active")

    database_down = labels("PipelineComponentDown", "database", "a:8000")
    storage_low = labels("PipelineStorageLowSpace", "storage", "a:8000")
    # Another monitor's alert, in a group of its own: a group that has flushed
    # takes in newcomers only group_interval later.
    elsewhere = labels("PipelineQueueNoConsumers", "queue", "b:8000", queue="articles")
    alertmanager.post(database_down, storage_low, elsewhere)
    alertmanager.wait_for_state(database_down, "suppressed")
    alertmanager.wait_for_state(storage_low, "suppressed")
    alertmanager.wait_for_state(elsewhere, "active")

    # The webhook route has no group_wait: within a couple of seconds it has heard
    # of every auto alert that is not held back, and only of those.
    deadline = time.monotonic() + 10
    while len(sink.posts("/recovery-webhook")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)
    posts = sink.posts("/recovery-webhook")
    delivered = [alert["labels"] for _, body in posts for alert in body["alerts"]]
    assert sorted(delivered, key=lambda lbls: lbls["instance"]) == [network_down, elsewhere]
    for headers, body in posts:
        assert headers["Authorization"] == f"Bearer {alertmanager.token}"
        assert body["status"] == "firing"


def test_network_down_holds_back_no_budget_burn(alertmanager: RunningAlertmanager) -> None:
    network_down = labels("PipelineComponentDown", "network", "a:8000")
    database_degraded = labels("PipelineComponentDegraded", "database", "a:8000")
    publishing_burn = labels("PipelinePublishingBudgetBurn1h", "publishing", "a:8000")
    database_burn = labels("PipelineComponentBudgetBurn1h", "database", "a:8000")
    alertmanager.post(network_down, database_degraded, publishing_burn, database_burn)
    alertmanager.wait_for_state(database_degraded, "suppressed")
    alertmanager.wait_for_state(publishing_burn, "active")
    alertmanager.wait_for_state(database_burn, "active")


def test_escalation_holds_back_failing_repairs(alertmanager: RunningAlertmanager) -> None:
    escalated = labels("PipelineEscalated", "database", "a:8000")
    failing = labels("PipelineRecoveryFailing", "database", "a:8000")
    failing_elsewhere = labels("PipelineRecoveryFailing", "queue", "a:8000")
    alertmanager.post(escalated, failing, failing_elsewhere)
    alertmanager.wait_for_state(failing, "suppressed")
    alertmanager.wait_for_state(failing_elsewhere, "active")
    alertmanager.wait_for_state(escalated, "active")


def test_storage_full_soon_holds_back_filling_up(alertmanager: RunningAlertmanager) -> None:
    full_soon = labels("PipelineStorageFullSoon", "storage", "a:8000")
    filling_up = labels("PipelineStorageFillingUp", "storage", "a:8000")
    filling_up_elsewhere = labels("PipelineStorageFillingUp", "archive", "a:8000")
    alertmanager.post(full_soon, filling_up, filling_up_elsewhere)
    alertmanager.wait_for_state(filling_up, "suppressed")
    alertmanager.wait_for_state(filling_up_elsewhere, "active")
    alertmanager.wait_for_state(full_soon, "active")


def test_heartbeat_receives_the_watchdog(alertmanager: RunningAlertmanager, sink: Sink) -> None:
    alertmanager.post(WATCHDOG)
    deadline = time.monotonic() + 10
    while not sink.posts("/heartbeat") and time.monotonic() < deadline:
        time.sleep(0.1)
    (_, body), *_ = sink.posts("/heartbeat")
    assert [alert["labels"]["alertname"] for alert in body["alerts"]] == ["Watchdog"]
