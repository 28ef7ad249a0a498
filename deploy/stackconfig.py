"""Prometheus's and Alertmanager's configs for the local stack, and a stand-in for Slack.

The local stack (deploy/localstack.py) and the end-to-end tests render the
shipped deploy/prometheus(-fast).yml and deploy/alertmanager.yml with their own
addresses, secrets files and receivers; Slack messages go to :class:`SlackSink`,
which keeps and prints them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent


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


def _print_now(line: str) -> None:
    # At once, also when stdout is a pipe (make run | tee, a test reading it).
    print(line, flush=True)


@dataclass
class SlackSink:
    """Stands in for Slack's incoming webhook (and the heartbeat): keeps and prints."""

    port: int = 0
    echo: Callable[[str], None] | None = field(default_factory=lambda: _print_now)
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
