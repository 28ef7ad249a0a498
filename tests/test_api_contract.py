"""The HTTP contract: one table of operations, generated schemas, the docs.

The OpenAPI document must be valid OpenAPI 3.1, name exactly the operations the
app serves, say which need the token as the app does, keep the seed's fields,
and docs/api.md and the README's endpoint table must be what it says.
(tests/recovery/test_recovery_openapi.py fuzzes the running service against it.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from helpers import REPO
from openapi_spec_validator import OpenAPIV31SpecValidator

import pipeline_monitor
from recovery_webhook import apidoc, openapi
from recovery_webhook.app import make_app
from recovery_webhook.cli import main as cli_main
from recovery_webhook.config import AppConfig
from recovery_webhook.schemas import Attempt, PipelineStatus, ProbeDetail, ProbeReport

TOKEN = "contract-test-token-0123456789"

# What the seed's README promises, field by field (schema name: fields).
SEED_FIELDS = {
    "PipelineStatus": {
        "overall_status",
        "components",
        "uptime_percentage",
        "recent_failures",
        "suggested_actions",
        "is_auto_recoverable",
    },
    "EditorMessage": {"message", "status", "can_publish", "timestamp"},
    "MetricsSummary": {"total_checks", "failed_checks", "success_rate", "recovery_stats"},
    "RecoveryStats": {"successful_recoveries", "failed_recoveries", "success_rate"},
}

# Every field the API sends today: fields may be added, none removed or renamed.
SENT_FIELDS = {
    "PipelineStatus": "can_publish component_details components editor_state is_auto_recoverable"
    " overall_status recent_failures stale suggested_actions timestamp uptime uptime_percentage",
    "ComponentDetail": "active_storage_target auto_recoverable blocks_publishing display_name"
    " error last_attempt last_check latency_ms manual_intervention manual_intervention_detail"
    " probes repair_in_progress since status storage_targets",
    "ProbeDetail": "detail error latency_ms status",
    "RecentFailure": "component error status timestamp",
    "Attempt": "actions alertname attempt_id component duration_ms ended_at error_message"
    " started_at status success trigger",
    "ActionResult": "action duration_ms error output permanent result type verified",
    "EditorMessage": "advice can_publish components details headline headline_text incidents"
    " message notified_at refresh_seconds short state status timestamp timezone title uptime",
    "EditorComponent": "display_name error manual_intervention name repair_in_progress since"
    " since_text status words",
    "Incident": "component display_name duration_seconds duration_text ended_at error escalated"
    " outcome outcome_text repair_attempts started_at status what when_text",
    "MetricsSummary": "components failed_checks recovery_stats success_rate total_checks",
    "RecoveryStats": "dry_runs failed_recoveries interrupted success_rate successful_recoveries",
    "HistoryPage": "count events limit",
    "HistoryEvent": "component id timestamp type",
    "WebhookAnswer": "duplicates new received repairs_queued resolved status",
    "ErrorBody": "error field valid_components",
}


def config(tmp_path: Path) -> AppConfig:
    return AppConfig.model_validate(
        {
            "check_interval": 5,
            "state_dir": str(tmp_path / "state"),
            "components": {
                "storage": {
                    "probes": [
                        {
                            "type": "filesystem",
                            "path": str(tmp_path / "files"),
                            "create_missing": True,
                            "free_bytes_degraded": None,
                            "free_bytes_unhealthy": None,
                        }
                    ]
                }
            },
        }
    )


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) of every route, as OpenAPI writes paths; HEAD is aiohttp's
    own twin of each GET."""
    served = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        resource = route.resource
        assert resource is not None
        path = resource.canonical
        if isinstance(resource, web.StaticResource):
            path += "/{filename}"
        served.add((route.method, path))
    return served


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, methods in openapi.spec()["paths"].items()
        for method in methods
    }


@pytest.mark.unit
def test_the_spec_is_valid_openapi_3_1() -> None:
    document = json.loads(json.dumps(openapi.spec()))
    assert document["openapi"].startswith("3.1.")
    errors = [e.message for e in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


@pytest.mark.unit
def test_every_served_route_is_documented_and_every_documented_one_served(
    tmp_path: Path,
) -> None:
    served = served_operations(make_app(config(tmp_path), token=TOKEN))
    documented = documented_operations()
    assert served - documented == set(), "served but not in OPERATIONS"
    assert documented - served == set(), "in OPERATIONS but not served"


@pytest.mark.unit
def test_the_seed_fields_are_in_the_spec_and_always_sent() -> None:
    schemas = openapi.spec()["components"]["schemas"]
    for name, fields in SEED_FIELDS.items():
        assert fields <= set(schemas[name]["properties"]), name
        assert fields <= set(schemas[name]["required"]), name


@pytest.mark.unit
def test_no_field_the_api_sends_is_gone() -> None:
    schemas = openapi.spec()["components"]["schemas"]
    for name, fields in SENT_FIELDS.items():
        assert set(fields.split()) <= set(schemas[name]["properties"]), name


@pytest.mark.unit
def test_the_seed_python_api_is_the_json_models() -> None:
    assert pipeline_monitor.PipelineStatus is PipelineStatus
    assert pipeline_monitor.RecoveryAttempt is Attempt
    seed_attributes = {
        PipelineStatus: SEED_FIELDS["PipelineStatus"] | {"can_publish"},
        Attempt: {"attempt_id", "component", "success", "status", "error_message", "duration_ms"},
    }
    for model, attributes in seed_attributes.items():
        assert attributes <= set(model.model_fields), model
    assert PipelineStatus.details.fget is not None  # the seed API's name of component_details


@pytest.mark.unit
def test_docs_api_md_is_written_from_the_spec() -> None:
    written = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert written == apidoc.render(openapi.spec()), (
        "docs/api.md is stale: python -m recovery_webhook.apidoc docs/api.md"
    )


@pytest.mark.unit
def test_the_readme_endpoint_table_is_the_spec() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## HTTP API", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(GET|POST) ([^`?]+)(?:\?[^`]*)?` \| (token|-) \|", section, re.M)
    assert rows, "no endpoint table under ## HTTP API"
    in_readme = {(method, path): auth == "token" for method, path, auth in rows}
    in_spec = {
        (method.upper(), path): bool(op.get("security"))
        for path, methods in openapi.spec()["paths"].items()
        for method, op in methods.items()
    }
    assert in_readme == in_spec


def _call_path(path: str) -> str:
    return path.replace("{component}", "storage").replace("{filename}", "style.css")


@pytest.mark.integration
async def test_the_token_is_needed_exactly_where_the_spec_says(tmp_path: Path) -> None:
    async with TestServer(make_app(config(tmp_path), token=TOKEN)) as server:
        async with TestClient(server) as client:
            for path, methods in openapi.spec()["paths"].items():
                for method, op in methods.items():
                    response = await client.request(method, _call_path(path))
                    await response.read()
                    if op.get("security"):
                        assert response.status == 401, (method, path)
                        assert "401" in op["responses"]
                    else:
                        assert response.status == 200, (method, path, response.status)


@pytest.mark.integration
def test_probe_json_is_the_probe_report_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        "components:\n"
        "  storage:\n"
        f"    probes: [{{type: filesystem, path: {tmp_path / 'files'}, create_missing: true}}]\n",
        encoding="utf-8",
    )
    assert cli_main(["probe", "--json", "--config", str(path)]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    report = ProbeReport.model_validate(printed)
    assert report.model_dump(mode="json") == printed
    probes = printed["components"]["storage"]["probes"]
    # The per-probe entry is the one model the status API's component details use.
    assert set(probes["filesystem"]) == set(ProbeDetail.model_fields)
