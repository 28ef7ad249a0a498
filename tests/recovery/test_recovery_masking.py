"""URL query parameters named like secrets (token, signature, key...) never show:
not in probe errors, the status API, the editors' message, the history, the audit
log or what a repair printed."""

from __future__ import annotations

import sys

import pytest
from helpers import assert_no_secret

from recovery.recovery_support import build_config, make_alert, rule, wait_until

pytestmark = pytest.mark.integration

TOKEN_VALUE = "tok-9f3b2c1d7e"
SIGNATURE = "sig-0a1b2c3d4e"
KEY = "key-5e6f7a8b9c"

PRINTS_URLS = f"""
import sys
print("called https://hooks.example/restart?signature={SIGNATURE}&region=eu")
print("see amqp://monitor:{KEY}@mq.internal:5672/", file=sys.stderr)
sys.exit(1)
"""


async def test_secret_query_parameters_are_masked_everywhere(app_factory, state_dir, unused_port):
    url = f"http://127.0.0.1:{unused_port}/health?token={TOKEN_VALUE}&check=full"
    config = build_config(
        state_dir,
        {"validation_service": {"probes": [{"type": "http", "url": url, "timeout": 0.5}]}},
        [
            rule(
                "validation_service",
                {"type": "command", "argv": [sys.executable, "-c", PRINTS_URLS]},
            )
        ],
        recovery={"max_attempts": 1, "verify_timeout": 0.3},
    )
    app = await app_factory(config)
    await wait_until(
        lambda: _status_is(app, "unhealthy"), message="the validation service is seen down"
    )
    alert = make_alert("validation_service")
    alert["annotations"]["summary"] = f"down; dashboard https://grafana/d/x?api_key={KEY}"
    await app.post_alerts(alert)
    await wait_until(
        lambda: _attempt_ended(app), timeout=20, message="the repair attempt has ended"
    )

    status = await app.status()
    error = status["component_details"]["validation_service"]["error"]
    assert "token=***&check=full" in error, error
    seen = {
        "status": str(status),
        "editor": str(await app.get_json("/api/pipeline/editor-message")),
        "history": str(await app.history()),
        "history, anonymous": str(await app.history(anonymous=True)),
        "audit": app.audit_path.read_text(encoding="utf-8"),
    }
    assert "signature=***&region=eu" in seen["history"]
    assert "amqp://monitor:***@mq.internal" in seen["history"]
    for where, text in seen.items():
        assert_no_secret(f"{where}: {text}", TOKEN_VALUE, SIGNATURE, KEY)


async def _status_is(app, status: str) -> bool:
    return await app.component_status("validation_service") == status


async def _attempt_ended(app) -> bool:
    return any(e["type"] == "recovery_attempt" for e in await app.history())
