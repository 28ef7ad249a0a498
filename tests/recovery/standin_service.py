"""A stand-in for the article validation service, run as its own process.

``GET /health`` answers ``200 {"status": "ok"}``. A test kills the process with
SIGKILL (a crash) and a repair ``command`` starts it again::

    python standin_service.py --port 8123 --pidfile run/standin.pid
    python standin_service.py --port 8123 --pidfile run/standin.pid --detach

``--detach`` starts the service in its own session (so that it outlives the
command that started it, as a daemon would), waits until it answers, and exits
0; or exits 1 when it does not come up. ``--starts-file`` gets one line per start.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        body = json.dumps({"status": "ok", "pid": os.getpid()}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the probe calls every interval


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def detach(args: argparse.Namespace) -> int:
    argv = [sys.executable, os.path.abspath(__file__), "--port", str(args.port)]
    if args.pidfile:
        argv += ["--pidfile", args.pidfile]
    if args.starts_file:
        argv += ["--starts-file", args.starts_file]
    subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(args.port):
            print(f"stand-in validation service answers on port {args.port}")
            return 0
        time.sleep(0.05)
    print(f"stand-in validation service did not come up on port {args.port}", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pidfile")
    parser.add_argument("--starts-file")
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args()
    if args.detach:
        return detach(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Health)
    if args.pidfile:
        with open(args.pidfile, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    if args.starts_file:
        with open(args.starts_file, "a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
