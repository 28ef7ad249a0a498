"""The OpenAPI description, fuzzed with schemathesis against the running service.

The service runs on a real port (on its own event loop in a thread: schemathesis
calls it with a blocking HTTP client). Every operation is called with generated
valid and invalid input, with the bearer token so that the mutating endpoints
are fuzzed past the auth check, and every answer must be no 5xx and match the
spec: status code, content type, body schema and headers.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from recovery.recovery_support import (
    PYTHON,
    TOKEN,
    RunningApp,
    build_config,
    free_port,
    query_db,
    rule,
    start_app,
)
from recovery_webhook import openapi

pytestmark = pytest.mark.integration


class ServedInThread:
    """The service on its own event loop in a daemon thread."""

    def __init__(self, state_dir: Path, storage: Path) -> None:
        self.config = build_config(
            state_dir,
            {
                "validation_service": {
                    "probes": [
                        {
                            "type": "http",
                            "url": f"http://127.0.0.1:{free_port()}/health",
                            "timeout": 0.5,
                        }
                    ]
                },
                "storage": {
                    "probes": [
                        {
                            "type": "filesystem",
                            "path": str(storage),
                            "create_missing": True,
                            "free_bytes_degraded": None,
                            "free_bytes_unhealthy": None,
                            "timeout": 0.5,
                        }
                    ]
                },
            },
            [
                rule("storage", {"type": "command", "argv": [PYTHON, "-c", "pass"]}),
                rule("validation_service"),  # no automatic repair: escalate at once
            ],
            recovery={"verify_timeout": 0.3, "retry_delay": 0.2},
            server={"cors_origins": ["*"]},
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.running: RunningApp | None = None

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    def start(self) -> None:
        self.thread.start()
        self.running = asyncio.run_coroutine_threadsafe(start_app(self.config), self.loop).result(
            30
        )

    def stop(self) -> None:
        if self.running is not None:
            asyncio.run_coroutine_threadsafe(self.running.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedInThread]:
    base = tmp_path_factory.mktemp("openapi")
    service = ServedInThread(base / "state", base / "articles")
    service.start()
    yield service
    service.stop()


# The document the service serves (test_the_served_spec_is_this_one checks that
# they are the same). Loaded at import rather than from the URL because
# schemathesis' lazy from_fixture() loader fails on pytest 9 (it writes
# Node._nodeid, which pytest 9 no longer has); the eager loader works.
schema = schemathesis.openapi.from_dict(openapi.spec())
schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})
schema.config.generation.update(max_examples=40, database="none")
# A body over the 1 MiB cap (a few thousand alerts) is refused with 413 whatever
# it holds: a documented answer, valid or invalid data alike.
for check in (
    schema.config.checks.negative_data_rejection,
    schema.config.checks.positive_data_acceptance,
):
    check.expected_statuses = [*check.expected_statuses, "413"]


def test_the_served_spec_is_this_one(served: ServedInThread):
    served_spec = requests.get(served.url + "/api/openapi.json", timeout=10).json()
    assert served_spec == json.loads(json.dumps(openapi.spec()))


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_answer_matches_the_spec(case, served: ServedInThread):
    response = case.call(base_url=served.url, timeout=15)
    assert response.status_code < 500, response.text
    case.validate_response(response)


def test_the_fuzzer_got_past_the_auth_check(served: ServedInThread):
    """Runs after the fuzzing (file order): the token made the mutating calls count."""
    assert served.running is not None
    (alerts,) = query_db(served.running.db_path, "SELECT count(*) FROM alerts")[0]
    assert alerts > 0
    (manual,) = query_db(
        served.running.db_path, "SELECT count(*) FROM attempts WHERE trigger = 'manual'"
    )[0]
    assert manual > 0
