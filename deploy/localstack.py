#!/usr/bin/env python3
"""The local stack: the monitor, Prometheus and Alertmanager wired together on loopback.

    python deploy/localstack.py [--config FILE] [--fast] [--port 8000]

Prometheus scrapes the monitor and evaluates alert_rules.yml; Alertmanager routes
the alerts as deploy/alertmanager.yml does, with two local substitutes: Slack
messages and Watchdog heartbeats go to a small sink that prints them here, and
the webhook's bearer token is the monitor's own. Without the Prometheus or
Alertmanager binaries (Debian: prometheus, prometheus-alertmanager) the monitor
runs alone. Ctrl-C stops everything and leaves nothing running.

The functions that render the two configs are also what the end-to-end tests use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from exporter.config import ConfigError, load_config
from recovery_webhook.auth import resolve_token
from recovery_webhook.config import AppConfig

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent


def find_binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def prometheus_binary() -> str | None:
    return find_binary("prometheus")


def alertmanager_binary() -> str | None:
    return find_binary("prometheus-alertmanager", "alertmanager")


def render_prometheus(out_dir: Path, monitor: str, alertmanager: str | None, fast: bool) -> Path:
    """deploy/prometheus(-fast).yml with this stack's addresses and absolute rule paths."""
    source = DEPLOY / ("prometheus-fast.yml" if fast else "prometheus.yml")
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["rule_files"] = [str((source.parent / p).resolve()) for p in config["rule_files"]]
    for job in config["scrape_configs"]:
        if job["job_name"] == "pipeline-monitor":
            job["static_configs"] = [{"targets": [monitor]}]
    if alertmanager is None:
        config.pop("alerting", None)
    else:
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def render_alertmanager(
    out_dir: Path,
    webhook_url: str,
    token: str,
    slack_url: str,
    heartbeat_url: str,
    timing: dict[str, str] | None = None,
) -> Path:
    """deploy/alertmanager.yml with local secrets files and receivers.

    ``timing`` overrides group_wait/group_interval/repeat_interval on every route
    (the fast profile and the tests shorten them).
    """
    config = yaml.safe_load((DEPLOY / "alertmanager.yml").read_text(encoding="utf-8"))
    secrets = out_dir / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    _write_secret(secrets / "slack_webhook_url", slack_url)
    _write_secret(secrets / "pipeline_api_token", token)
    _write_secret(secrets / "smtp_password", "unused")
    config["templates"] = [str((DEPLOY / p).resolve()) for p in config["templates"]]
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(secrets / "slack_webhook_url")
        for hook in receiver.get("webhook_configs", []):
            if receiver["name"] == "heartbeat":
                hook["url"] = heartbeat_url
            else:
                hook["url"] = webhook_url
                hook["http_config"]["authorization"]["credentials_file"] = str(
                    secrets / "pipeline_api_token"
                )
        # No mail server here: the email receiver keeps its route, sends nothing.
        receiver.pop("email_configs", None)
    config["global"].pop("smtp_auth_password_file", None)
    if timing:
        _retime(config["route"], timing)
    path = out_dir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _retime(route: dict[str, Any], timing: dict[str, str], root: bool = True) -> None:
    # The root's values are inherited; children that set their own get them too.
    for key, value in timing.items():
        if root or key in route:
            route[key] = value
    for child in route.get("routes", []):
        _retime(child, timing, root=False)


def _write_secret(path: Path, value: str) -> None:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)


@dataclass
class SlackSink:
    """Stands in for Slack's incoming webhook (and the heartbeat): keeps and prints."""

    port: int = 0
    echo: Callable[[str], None] | None = print
    messages: list[dict[str, Any]] = field(default_factory=list)
    heartbeats: int = 0

    def start(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's spelling
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")
                if self.path.startswith("/heartbeat"):
                    sink.heartbeats += 1
                    return
                try:
                    message = json.loads(body)
                except ValueError:
                    return
                sink.messages.append(message)
                if sink.echo is not None:
                    for attachment in message.get("attachments") or [message]:
                        title = attachment.get("title") or attachment.get("text", "")
                        sink.echo(f"[slack {message.get('channel', '')}] {title}")

            def log_message(self, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack"

    @property
    def heartbeat_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/heartbeat"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # The child gets its own copy of the descriptor; ours is closed at once.
    with open(log, "ab") as handle:
        return subprocess.Popen(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def start_alertmanager(
    binary: str, config: Path, work: Path, address: str
) -> subprocess.Popen[bytes]:
    """A single Alertmanager (no cluster) with its data and log in ``work``."""
    return start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={work / 'alertmanager'}",
            f"--web.listen-address={address}",
            "--cluster.listen-address=",
        ],
        work / "alertmanager.log",
    )


# Prometheus sends a firing alert to Alertmanager again only after the resend
# delay (1m by default), even when the first send was dropped because the
# Alertmanager was not discovered yet (the first evaluations after start-up):
# the fast profile shortens it as it shortens everything else (1m / 15).
FAST_PROMETHEUS_FLAGS = ["--rules.alert.resend-delay=4s"]


def start_prometheus(
    binary: str, config: Path, work: Path, address: str, fast: bool = False
) -> subprocess.Popen[bytes]:
    """Prometheus with its TSDB and log in ``work``."""
    return start(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'prometheus'}",
            f"--web.listen-address={address}",
            *(FAST_PROMETHEUS_FLAGS if fast else []),
        ],
        work / "prometheus.log",
    )


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            # It may exit between the poll and the kill.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def install_missing() -> None:
    """Install Prometheus and Alertmanager where this is Debian and we may."""
    if prometheus_binary() and alertmanager_binary():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print("local-stack: installing prometheus and prometheus-alertmanager (Debian packages)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(
        [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "prometheus",
            "prometheus-alertmanager",
        ],
        check=False,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="the monitor's config (default: built-in)")
    parser.add_argument(
        "--fast",
        action="store_true",
        help="1s scrapes and short alert delays, for demos (and a 1s check interval"
        " with the built-in config)",
    )
    parser.add_argument("--port", type=int, default=8000, help="the monitor's port (8000)")
    parser.add_argument("--prometheus-port", type=int, default=9090)
    parser.add_argument("--alertmanager-port", type=int, default=9093)
    parser.add_argument(
        "--no-install", action="store_true", help="don't apt-get install missing binaries"
    )
    args = parser.parse_args(argv)

    env = dict(os.environ)
    if args.fast and not args.config:
        # A config file keeps its own interval (its probe timeouts are sized for it).
        env.setdefault("PIPELINE_CHECK_INTERVAL", "1")
    try:
        # The monitor's own reading of its config: same state directory, same token.
        config = load_config(AppConfig, args.config, env)
    except ConfigError as exc:
        print(f"local-stack: {exc}", file=sys.stderr)
        return 2
    state = config.state_dir.resolve()
    work = state / "local-stack"
    work.mkdir(parents=True, exist_ok=True)
    if not args.no_install:
        install_missing()

    monitor_bin = Path(sys.executable).with_name("pipeline-monitor")
    command = [str(monitor_bin), "run", "--port", str(args.port)]
    if args.config:
        command += ["--config", args.config]

    processes: list[subprocess.Popen[bytes]] = []
    sink = SlackSink()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        monitor = start(command, work / "monitor.log", env)
        processes.append(monitor)
        monitor_url = f"http://127.0.0.1:{args.port}"
        wait_http(f"{monitor_url}/healthz", 30, monitor)
        urls = [
            ("Status page", f"{monitor_url}/"),
            ("Metrics", f"{monitor_url}/metrics"),
            ("API", f"{monitor_url}/api/pipeline/status"),
        ]

        prometheus, alertmanager = prometheus_binary(), alertmanager_binary()
        if prometheus is None or alertmanager is None:
            print("local-stack: prometheus/alertmanager not installed: running the monitor alone")
        else:
            token = resolve_token(config, env)
            sink.start()
            am_address = f"127.0.0.1:{args.alertmanager_port}"
            timing = {"group_wait": "1s", "group_interval": "5s"} if args.fast else None
            am_config = render_alertmanager(
                work,
                f"{monitor_url}/api/alertmanager/webhook",
                token,
                sink.url,
                sink.heartbeat_url,
                timing,
            )
            am = start_alertmanager(alertmanager, am_config, work, am_address)
            processes.append(am)
            prom_config = render_prometheus(work, f"127.0.0.1:{args.port}", am_address, args.fast)
            prom = start_prometheus(
                prometheus, prom_config, work, f"127.0.0.1:{args.prometheus_port}", args.fast
            )
            processes.append(prom)
            wait_http(f"http://{am_address}/-/ready", 30, am)
            wait_http(f"http://127.0.0.1:{args.prometheus_port}/-/ready", 30, prom)
            urls += [
                ("Prometheus", f"http://127.0.0.1:{args.prometheus_port}/alerts"),
                ("Alertmanager", f"http://{am_address}/"),
            ]

        print("\npipeline-recovery local stack is up:")
        for name, url in urls:
            print(f"  {name:<13} {url}")
        print(f"  Logs          {work}/*.log")
        print("Slack messages are printed here. Ctrl-C stops everything.\n", flush=True)
        while not stopping.is_set():
            for process in processes:
                if process.poll() is not None:
                    print(
                        f"local-stack: {process.args[0]} exited ({process.returncode}); see {work}",
                        file=sys.stderr,
                    )
                    return 1
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"local-stack: {exc}; see the logs in {work}", file=sys.stderr)
        return 1
    finally:
        print("local-stack: stopping", flush=True)
        stop_all(processes)
        if getattr(sink, "_server", None) is not None:
            sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
