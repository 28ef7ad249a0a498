"""The end-to-end stack: the real monitor between real Prometheus, Alertmanager and services.

Everything listens on loopback, on free ports, and keeps its files in one work
directory:

* the monitor, ``pipeline-monitor run`` in its own process as in production,
  probing every 0.5 s, with recovery rules whose actions really repair;
* Prometheus on the fast profile (deploy/prometheus-fast.yml with
  deploy/alert_rules-fast.yml: 1 s scrapes and evaluations, ``for:`` / 15) and
  Alertmanager with deploy/alertmanager.yml and short timing, both rendered by
  deploy/localstack.py as the local stack renders them;
* localstack's SlackSink standing in for Slack's incoming webhook and for the
  heartbeat; a :class:`WebhookTap` between Alertmanager and the monitor's webhook
  that records each notification and the monitor's answer, and forwards both;
* the faults, made for real: stand-in services (separate processes, killed with
  SIGKILL, restarted by a ``command`` action), PostgreSQL and RabbitMQ behind
  FaultProxies switched to ``refuse``, put back to ``pass`` by an ``http`` action
  that calls :class:`ProxyControl` (the stand-in for "the service's own restart
  hook").

Each scenario owns its components (see COMPONENTS), so that the tests do not
depend on each other's order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pika
import yaml
from faults import ThreadedFaultProxy
from helpers import AMQP_URL, POSTGRES_DSN, host_port
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import localstack  # noqa: E402 - deploy/ is not a package

log = logging.getLogger(__name__)
T = TypeVar("T")

# The stand-in validation service of the recovery tests: GET /health -> 200,
# ``--detach`` starts it in its own session and waits until it answers.
STANDIN = ROOT / "tests" / "recovery" / "standin_service.py"

# The test servers (PIPELINE_TEST_*: those running here, or throwaway ones).
POSTGRES = host_port(POSTGRES_DSN)
RABBITMQ = host_port(AMQP_URL)

CHECK_INTERVAL = 0.5
# Alertmanager: notify at once, flush groups every second, repeat a firing
# group's notification every 2 s (production: 0s / 1m / 15m on the webhook route).
AM_TIMING = {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "2s"}
RECOVERY = {
    "max_attempts": 2,
    "window": "10m",
    "retry_delay": "1s",
    "action_timeout": "20s",
    "verify_timeout": "5s",
    "verify_interval": "0.2s",
}
# How long the slow repair of the repeat scenario takes before it restarts the
# service: long enough for Alertmanager to repeat the notification twice or more.
SLOW_REPAIR_SECONDS = 6

# Who uses which component (each test its own, so that order does not matter).
STANDIN_COMPONENTS = ("preview_service", "validation_service", "search_service")
PROXIED_COMPONENTS = ("database", "queue")
COMPONENTS = (*STANDIN_COMPONENTS, *PROXIED_COMPONENTS, "storage")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for(
    condition: Callable[[], T],
    timeout: float,
    message: str,
    explain: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    On the deadline, fail with ``message`` and what ``explain`` says about the
    state at that moment (history, alerts...), so a failure shows where the loop stopped.
    """
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            detail = ""
            if explain is not None:
                try:
                    detail = "\n" + explain()
                except Exception as exc:  # the explanation must not hide the failure
                    detail = f"\n(no explanation: {exc!r})"
            raise AssertionError(f"{message}: not within {timeout:g}s{detail}")
        time.sleep(interval)


def http_json(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def http_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


# -- small HTTP servers of the test ---------------------------------------------------

Reply = tuple[int, bytes]


def serve(handle: Callable[[str, str, dict[str, str], bytes], Reply]) -> ThreadingHTTPServer:
    """A loopback HTTP server on a free port; ``handle(method, path, headers, body)``."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, reply = handle(self.command, self.path, dict(self.headers), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = _any  # noqa: N815 - http.server's spelling

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="e2e-http", daemon=True).start()
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def shutdown(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


@dataclass
class Delivery:
    """One notification Alertmanager sent to the recovery webhook, and the answer."""

    at: float
    status: int
    alerts: list[dict[str, Any]]
    answer: dict[str, Any]

    def about(self, alertname: str, component: str) -> list[dict[str, Any]]:
        return [
            a
            for a in self.alerts
            if a["labels"].get("alertname") == alertname
            and a["labels"].get("component") == component
        ]


class WebhookTap:
    """Records every notification for the monitor's webhook, then forwards it.

    Alertmanager's bearer token passes through untouched: the monitor still
    checks it. The monitor's answer (new / duplicates / repairs_queued) goes
    back to Alertmanager and into the record.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server = serve(self._handle)
        self.url = server_url(self._server) + "/api/alertmanager/webhook"

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        forward = urllib.request.Request(self.target, data=body, method="POST")
        forward.add_header("Content-Type", "application/json")
        if "Authorization" in headers:
            forward.add_header("Authorization", headers["Authorization"])
        try:
            with urllib.request.urlopen(forward, timeout=10) as response:
                status, reply = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, reply = exc.code, exc.read()
        except OSError as exc:
            status, reply = 502, json.dumps({"error": str(exc)}).encode()
        try:
            answer = json.loads(reply)
        except ValueError:
            answer = {"raw": reply.decode(errors="replace")}
        try:
            alerts = list(json.loads(body).get("alerts") or [])
        except ValueError:
            alerts = []
        with self._lock:
            self.deliveries.append(Delivery(time.time(), status, alerts, answer))
        return status, reply

    def about(self, alertname: str, component: str) -> list[tuple[Delivery, dict[str, Any]]]:
        """(delivery, alert) for each time the webhook was told about this alert."""
        with self._lock:
            deliveries = list(self.deliveries)
        return [(d, a) for d in deliveries for a in d.about(alertname, component)]

    def close(self) -> None:
        shutdown(self._server)


class ProxyControl:
    """``POST /proxies/<name>/pass``: the fault's own repair hook (an ``http`` action calls it)."""

    def __init__(self, proxies: dict[str, ThreadedFaultProxy]) -> None:
        self.proxies = proxies
        self.calls: dict[str, int] = dict.fromkeys(proxies, 0)
        self._server = serve(self._handle)
        self.url = server_url(self._server)

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        match = re.fullmatch(r"/proxies/(\w+)/pass", path)
        if method != "POST" or match is None or match[1] not in self.proxies:
            return 404, b'{"error": "no such hook"}'
        name = match[1]
        self.calls[name] += 1
        self.proxies[name].pass_through()
        return 200, json.dumps({"restarted": name}).encode()

    def hook(self, name: str) -> str:
        return f"{self.url}/proxies/{name}/pass"

    def close(self) -> None:
        shutdown(self._server)


# -- the stand-in services -------------------------------------------------------------


class StandIn:
    """A stand-in service on a fixed port, always started detached (as its restart is).

    Its pid is in its pidfile, written by whichever instance runs now: the one
    the test started or the one a repair started.
    """

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.port = free_port()
        self.pidfile = directory / f"{name}.pid"
        self.url = f"http://127.0.0.1:{self.port}/health"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            str(STANDIN),
            "--port",
            str(self.port),
            "--pidfile",
            str(self.pidfile),
            "--detach",
        ]

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def start(self) -> None:
        subprocess.run(self.argv(), check=True, capture_output=True, timeout=20)

    def answers(self) -> bool:
        return port_answers(self.port)

    def kill(self) -> int:
        """SIGKILL the running instance, as a crash would; return its pid."""
        pid = self.pid
        assert pid is not None and self.answers(), f"{self.name} is not running"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not self.answers(), 10, f"{self.name}'s port closes")
        return pid

    def stop(self) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    work: Path
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    monitor_url: str = ""
    prometheus_url: str = ""
    alertmanager_url: str = ""
    config_path: Path | None = None
    slack: localstack.SlackSink = field(default_factory=lambda: localstack.SlackSink(echo=None))
    standins: dict[str, StandIn] = field(default_factory=dict)
    proxies: dict[str, ThreadedFaultProxy] = field(default_factory=dict)
    queue_name: str = field(default_factory=lambda: f"pipeline-e2e-{uuid.uuid4().hex[:12]}")
    tap: WebhookTap | None = None
    control: ProxyControl | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)

    # -- start and stop ------------------------------------------------------------

    def start(self) -> None:
        prometheus = localstack.prometheus_binary()
        alertmanager = localstack.alertmanager_binary()
        if prometheus is None or alertmanager is None:
            raise RuntimeError(
                "prometheus and prometheus-alertmanager must be installed"
                " (Debian packages of those names; make test-deps installs them)"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        self.slack.start()
        self._cleanups.append(self.slack.stop)

        for name, (host, port) in (("database", POSTGRES), ("queue", RABBITMQ)):
            proxy = ThreadedFaultProxy(host, port).start()
            self.proxies[name] = proxy
            self._cleanups.append(proxy.stop)
        self.control = ProxyControl(self.proxies)
        self._cleanups.append(self.control.close)
        self._declare_queue()

        for name in STANDIN_COMPONENTS:
            standin = StandIn(name, self.work)
            self.standins[name] = standin
            self._cleanups.append(standin.stop)
            standin.start()

        port = free_port()
        self.monitor_url = f"http://127.0.0.1:{port}"
        self.config_path = self.work / "pipeline.yml"
        self.config_path.write_text(yaml.safe_dump(self.monitor_config(), sort_keys=False))
        self._cleanups.append(lambda: localstack.stop_all(self.processes))
        monitor = localstack.start(
            [
                str(Path(sys.executable).with_name("pipeline-monitor")),
                "run",
                "--config",
                str(self.config_path),
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ],
            self.work / "monitor.log",
            {**os.environ, "PIPELINE_API_TOKEN": self.token},
        )
        self.processes.append(monitor)
        localstack.wait_http(f"{self.monitor_url}/healthz", 30, monitor)
        wait_for(
            lambda: all(s == "healthy" for s in self.statuses().values()),
            30,
            "every component is healthy at the start",
            lambda: json.dumps(self.statuses()),
        )

        self.tap = WebhookTap(f"{self.monitor_url}/api/alertmanager/webhook")
        self._cleanups.append(self.tap.close)
        am_address = f"127.0.0.1:{free_port()}"
        am_config = localstack.render_alertmanager(
            self.work,
            self.tap.url,
            self.token,
            self.slack.url,
            self.slack.heartbeat_url,
            AM_TIMING,
        )
        am = localstack.start_alertmanager(alertmanager, am_config, self.work, am_address)
        self.processes.append(am)
        prom_address = f"127.0.0.1:{free_port()}"
        prom_config = localstack.render_prometheus(
            self.work, f"127.0.0.1:{port}", am_address, fast=True
        )
        prom = localstack.start_prometheus(
            prometheus, prom_config, self.work, prom_address, fast=True
        )
        self.processes.append(prom)
        self.alertmanager_url = f"http://{am_address}"
        self.prometheus_url = f"http://{prom_address}"
        localstack.wait_http(f"{self.alertmanager_url}/-/ready", 30, am)
        localstack.wait_http(f"{self.prometheus_url}/-/ready", 30, prom)
        # The whole path works: Prometheus scrapes the monitor and the Watchdog
        # has gone through Alertmanager to the heartbeat.
        wait_for(
            lambda: len(self.query("pipeline_component_up == 1")) == len(COMPONENTS),
            30,
            "Prometheus sees every component up",
            lambda: json.dumps(self.query("pipeline_component_up")),
        )
        wait_for(lambda: self.slack.heartbeats > 0, 30, "the Watchdog reaches the heartbeat")

    def monitor_config(self) -> dict[str, Any]:
        assert self.control is not None
        standin = self.standins
        probe_timeout = 0.4  # under the 0.5 s check interval
        components: dict[str, Any] = {
            name: {"probes": [{"type": "http", "url": standin[name].url, "timeout": probe_timeout}]}
            for name in STANDIN_COMPONENTS
        }
        components["preview_service"]["display_name"] = "Article previews"
        components["search_service"]["display_name"] = "Article search"
        components["database"] = {
            "probes": [
                {
                    "type": "postgres",
                    "dsn": f"postgresql://postgres@{self.proxies['database'].address}/test",
                    "timeout": probe_timeout,
                }
            ]
        }
        components["queue"] = {
            "probes": [
                {
                    "type": "rabbitmq",
                    "url": f"amqp://guest:guest@{self.proxies['queue'].address}/%2F",
                    "queues": [self.queue_name],
                    "timeout": probe_timeout,
                }
            ]
        }
        # With a secondary directory, so that the active-target gauge exists.
        components["storage"] = {
            "probes": [
                {
                    "type": "filesystem",
                    "path": str(self.work / "storage"),
                    "secondary_path": str(self.work / "storage-dr"),
                    "create_missing": True,
                }
            ]
        }
        down = ["PipelineComponentDown", "ManualRecovery"]
        rules = [
            # Scenario 1: a crashed service that a restart brings back.
            {
                "alertname": down,
                "component": "preview_service",
                "actions": [
                    {
                        "type": "command",
                        "name": "restart-preview",
                        "argv": standin["preview_service"].argv(),
                    }
                ],
            },
            # Scenario 2: the validation service's restart fails (as in the seed's
            # "Service restart failed"); after max_attempts it goes to people.
            {
                "alertname": down,
                "component": "validation_service",
                "actions": [
                    {
                        "type": "command",
                        "name": "restart-validator",
                        "argv": [
                            sys.executable,
                            "-c",
                            "import sys; sys.exit('Service restart failed: the validator"
                            " exited during start-up')",
                        ],
                    }
                ],
            },
            # The repeat scenario: a slow repair (the alert keeps firing meanwhile).
            {
                "alertname": down,
                "component": "search_service",
                "actions": [
                    {
                        "type": "command",
                        "name": "drain-requests",
                        "argv": [
                            sys.executable,
                            "-c",
                            f"import time; time.sleep({SLOW_REPAIR_SECONDS})",
                        ],
                        "verify": False,
                    },
                    {
                        "type": "command",
                        "name": "restart-search",
                        "argv": standin["search_service"].argv(),
                    },
                ],
            },
            # Scenario 3: the database and the queue come back through their restart hooks.
            *(
                {
                    "alertname": down,
                    "component": name,
                    "actions": [
                        {"type": "http", "name": "restart-hook", "url": self.control.hook(name)}
                    ],
                }
                for name in PROXIED_COMPONENTS
            ),
        ]
        return {
            "check_interval": CHECK_INTERVAL,
            "state_dir": str(self.work / "state"),
            "audit": {"file": str(self.work / "audit.log")},
            "components": components,
            "recovery": {**RECOVERY, "rules": rules},
            "status_page": {"newsroom_contact": "the news desk, ext. 4444"},
        }

    def _declare_queue(self) -> None:
        """A queue for the queue probe, with a consumer, deleted again at the end.

        The consumer keeps PipelineQueueNoConsumers quiet; heartbeats are off
        because nothing services this connection until the end of the session.
        """
        params = pika.URLParameters(f"amqp://guest:guest@{RABBITMQ[0]}:{RABBITMQ[1]}/%2F")
        params.heartbeat = 0
        params.socket_timeout = params.stack_timeout = 5
        params.connection_attempts = 1
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.queue_declare(self.queue_name, durable=False, auto_delete=False)
        tag = channel.basic_consume(self.queue_name, lambda *args: None, auto_ack=True)

        def remove() -> None:
            try:
                channel.basic_cancel(tag)
                channel.queue_delete(self.queue_name)
            finally:
                connection.close()

        self._cleanups.append(remove)

    def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception:  # the others must still run
                log.exception("e2e stack: clean-up step failed")
        self._cleanups.clear()

    # -- the monitor's API ---------------------------------------------------------------

    def get(self, path: str) -> Any:
        # As an engineer with the token reads it (repair outputs included).
        return http_json(self.monitor_url + path, headers={"Authorization": f"Bearer {self.token}"})

    def statuses(self) -> dict[str, str]:
        return dict(self.get("/api/pipeline/status")["components"])

    def history(self, limit: int = 1000) -> list[dict[str, Any]]:
        """History events, oldest first."""
        return list(reversed(self.get(f"/api/pipeline/history?limit={limit}")["events"]))

    def attempts(self, component: str) -> list[dict[str, Any]]:
        """The finished repair attempts of ``component`` in history, oldest first."""
        return [
            e
            for e in self.history()
            if e["type"] == "recovery_attempt" and e["component"] == component
        ]

    def events(self, kind: str, component: str) -> list[dict[str, Any]]:
        return [e for e in self.history() if e["type"] == kind and e["component"] == component]

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the monitor's /metrics, read as Prometheus would."""
        text = http_text(self.monitor_url + "/metrics")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def recover(self, component: str) -> dict[str, Any]:
        """POST /api/pipeline/recovery/<component>, as a person would."""
        return dict(
            http_json(
                f"{self.monitor_url}/api/pipeline/recovery/{component}",
                method="POST",
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=30,
            )
        )

    # -- Prometheus --------------------------------------------------------------------

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; raises if Prometheus says it is an error."""
        url = f"{self.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            answer = http_json(url)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"Prometheus refused {expr!r}: {exc.read().decode()}") from None
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        # Scalars and strings are [time, value]; vectors and matrices are lists of series.
        if answer["data"]["resultType"] in ("scalar", "string"):
            return [{"value": result}]
        return list(result)

    def alert_state(self, alertname: str, component: str) -> str | None:
        """``pending``/``firing`` in Prometheus, or None."""
        found = self.query(f'ALERTS{{alertname="{alertname}",component="{component}"}}')
        states = {series["metric"]["alertstate"] for series in found}
        return "firing" if "firing" in states else (states.pop() if states else None)

    # -- Slack -------------------------------------------------------------------------

    def slack_messages(
        self, alertname: str, component: str, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Slack attachments about this alert group, in arrival order."""
        found = []
        marker = f"{alertname} ({component})"
        for message in list(self.slack.messages):
            for attachment in message.get("attachments") or []:
                title = attachment.get("title", "")
                if not title.endswith(marker):
                    continue
                state = "resolved" if title.startswith("[RESOLVED]") else "firing"
                if status is None or state == status:
                    found.append({**attachment, "channel": message.get("channel"), "state": state})
        return found

    def explain(self, component: str) -> Callable[[], str]:
        """What the loop did about ``component`` so far, for a failure message."""

        def text() -> str:
            slack = [
                a.get("title")
                for m in list(self.slack.messages)
                for a in m.get("attachments") or []
                if f"({component})" in a.get("title", "")
            ]
            hooks = [
                (d.status, d.answer, [a["labels"].get("alertname") for a in d.alerts])
                for d in list(self.tap.deliveries if self.tap else [])
                if any(a["labels"].get("component") == component for a in d.alerts)
            ]
            events = [e for e in self.history(300) if e.get("component") == component]
            alerts = self.query(f'ALERTS{{component="{component}"}}')
            return (
                f"status: {self.statuses().get(component)}\n"
                f"ALERTS: {json.dumps([a['metric'] for a in alerts])}\n"
                f"slack: {slack}\nwebhook deliveries: {hooks}\n"
                f"history: {json.dumps(events, indent=1)[:6000]}\n"
                f"monitor log tail:\n{self.log_tail('monitor.log')}"
            )

        return text

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            return "\n".join((self.work / name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
