#!/usr/bin/env python3
"""The demo pipeline's own parts, which `make run` starts when there is no config.

    python deploy/demo.py break                  crash the demo's validation service
    python deploy/demo.py start-validator DIR    start it (detached) and wait until it answers
    python deploy/demo.py validator DIR          the validation service itself
    python deploy/demo.py worker DIR             the article worker

The demo is a small newsroom pipeline on this machine: a stand-in for the article
validation service, and an article worker that takes articles from the demo's
RabbitMQ queue, has each one validated and writes it to the demo's storage
directory (DIR/storage/published); every few seconds it also queues a new article,
as the newsroom would. Everything lives in DIR (the state directory's ``demo/``):
the demo's config, its state, its servers and what it publishes. It never touches
the user's queues, databases or files.

``break`` kills the validation service, as a crash would. Then the loop runs on
its own: the monitor sees it (the page says not to publish), Prometheus fires
PipelineComponentDown, Alertmanager calls the monitor's webhook, the repair (this
program's ``start-validator``) starts the service again, the monitor verifies it,
and the page is green again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PLAN = "demo.json"  # what localstack started: ports, queue, broker URL
QUEUE_EVERY = 5.0  # seconds between two demo articles
KEEP_PUBLISHED = 50  # the newest articles kept in storage/published


def demo_dir(environ: dict[str, str] | None = None) -> Path:
    """``demo/`` in the state directory the monitor would use without a config."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PIPELINE_CONFIG", None)
    from exporter.config import MonitorConfig, load_config

    return load_config(MonitorConfig, None, env).state_dir.resolve() / "demo"


def read_plan(directory: Path) -> dict[str, Any]:
    path = directory / PLAN
    try:
        plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SystemExit(
            f"demo: no demo runs here ({path} is missing); `make run` starts one"
        ) from None
    return plan


def write_plan(directory: Path, plan: dict[str, Any]) -> None:
    (directory / PLAN).write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def _pid_of(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is still ours (its command line has ``marker``)."""
    try:
        pid = int(pidfile.read_text(encoding="utf-8").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline and __file__.rsplit("/", 1)[-1] in cmdline else None


# -- the validation service -------------------------------------------------------------


class Validation(BaseHTTPRequestHandler):
    """GET /health answers {"status": "ok"}; POST /validate accepts every article."""

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        if self.path == "/health":
            self._answer(200, {"status": "ok", "pid": os.getpid()})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer(200 if self.path == "/validate" else 404, {"valid": True})

    def log_message(self, format: str, *args: object) -> None:
        pass  # the probe calls every second


def validator(directory: Path) -> int:
    plan = read_plan(directory)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", plan["validator_port"]), Validation)
    (directory / "validator.pid").write_text(f"{os.getpid()}\n", encoding="utf-8")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
    return 0


def start_validator(directory: Path) -> int:
    """Start the service in its own session (it outlives this command, as a daemon
    does) and wait until it answers: the repair the demo's config names."""
    plan = read_plan(directory)
    port = plan["validator_port"]
    if _pid_of(directory / "validator.pid", "validator") and answers(port):
        print(f"demo validation service already answers on 127.0.0.1:{port}")
        return 0
    with open(directory / "validator.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "validator", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if answers(port):
            print(f"demo validation service started; it answers on 127.0.0.1:{port}")
            return 0
        time.sleep(0.05)
    print(f"demo validation service did not come up on 127.0.0.1:{port}", file=sys.stderr)
    return 1


def stop_validator(directory: Path) -> None:
    pid = _pid_of(directory / "validator.pid", "validator")
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def break_it(directory: Path) -> int:
    plan = read_plan(directory)
    pid = _pid_of(directory / "validator.pid", "validator")
    if pid is None:
        print("demo: the validation service is not running (already broken?)", file=sys.stderr)
        return 1
    os.kill(pid, signal.SIGKILL)  # a crash: no goodbye
    print(
        f"demo: killed the validation service (pid {pid}). Watch {plan['monitor_url']}/ :"
        " within seconds it says not to publish, then the monitor restarts the service"
        " and it turns green again."
    )
    return 0


# -- the article worker ----------------------------------------------------------------


def worker(directory: Path) -> int:
    import urllib.request

    import pika

    plan = read_plan(directory)
    queue = plan["queue"]
    published = directory / "storage" / "published"
    published.mkdir(parents=True, exist_ok=True)
    params = pika.URLParameters(plan["amqp_url"])
    params.client_properties = {"connection_name": "pipeline-demo-worker"}
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue, durable=False, auto_delete=False)
    number = 0

    def queue_article() -> None:
        nonlocal number
        number += 1
        article = {"id": number, "title": f"Demo article {number}", "queued": time.time()}
        channel.basic_publish("", queue, json.dumps(article).encode())
        connection.call_later(QUEUE_EVERY, queue_article)

    def validated(body: bytes) -> bool:
        request = urllib.request.Request(
            f"{plan['validator_url']}/validate", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(json.load(response).get("valid"))
        except OSError:
            return False

    def on_article(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        if not validated(body):
            # The article waits in the queue until validation works again.
            connection.sleep(1.0)
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        article = json.loads(body)
        (published / f"{article['id']:06d}.json").write_bytes(body)
        for old in sorted(published.iterdir())[:-KEEP_PUBLISHED]:
            old.unlink(missing_ok=True)
        ch.basic_ack(method.delivery_tag)

    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, on_article)
    (directory / "worker.ready").write_text(f"{os.getpid()}\n", encoding="utf-8")
    queue_article()
    channel.start_consuming()  # until SIGTERM ends the process (the broker cleans up)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["break", "start-validator", "validator", "worker"])
    parser.add_argument("dir", nargs="?", type=Path, help="the demo's directory")
    args = parser.parse_args(argv)
    directory = args.dir.resolve() if args.dir else demo_dir()
    run = {
        "break": break_it,
        "start-validator": start_validator,
        "validator": validator,
        "worker": worker,
    }
    return run[args.what](directory)


if __name__ == "__main__":
    sys.exit(main())
