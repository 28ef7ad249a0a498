"""A stand-in for the newsroom's article validation service, for the Docker Compose stack.

Standard library only (it runs in a plain python:3.11-slim container):

- ``GET /health`` answers ``{"status": "ok"}``, which the monitor's http probe checks;
- ``POST /validate`` checks that a JSON article has a title and a body.

Listens on ``$VALIDATION_PORT`` (default 8080) on every address. Stop its
container (``docker compose stop validation``) to watch the monitor escalate: the
seed marks the validation service as not automatically repairable.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1 << 20


class Handler(BaseHTTPRequestHandler):
    server_version = "article-validation/1.0"

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/health":
            self._reply(200, {"status": "ok", "service": "article-validation"})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path != "/validate":
            self._reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            self._reply(400, {"valid": False, "errors": ["send a JSON article"]})
            return
        try:
            article = json.loads(self.rfile.read(length))
        except ValueError:
            self._reply(400, {"valid": False, "errors": ["the body is not JSON"]})
            return
        if not isinstance(article, dict):
            self._reply(400, {"valid": False, "errors": ["the article must be a JSON object"]})
            return
        errors = [
            f"{field} is missing or empty"
            for field in ("title", "body")
            if not isinstance(article.get(field), str) or not article[field].strip()
        ]
        self._reply(200 if not errors else 422, {"valid": not errors, "errors": errors})

    def log_message(self, format: str, *args: Any) -> None:
        # Health checks every few seconds would drown everything else.
        if "/health" not in self.requestline:
            super().log_message(format, *args)


def main() -> None:
    port = int(os.environ.get("VALIDATION_PORT", "8080"))
    server = ThreadingHTTPServer(("", port), Handler)
    # `docker stop` sends SIGTERM: leave at once instead of waiting for SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"article validation service listening on :{port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
