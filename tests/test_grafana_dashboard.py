"""The engineers' Grafana dashboard and its provisioning.

Static checks of grafana/dashboards/pipeline-recovery.json: every panel queries the
provisioned Prometheus datasource by uid, every query uses the metric names of
docs/metrics.md and parses as PromQL (promtool, through a rule file), per-component
panels follow the `component` variable, rates use `$__rate_interval`.

``dashboard_queries()`` gives every panel's queries with Grafana's variables
substituted, for the end-to-end test that runs each one against a real Prometheus
scraping the real monitor and fails when one errors or returns nothing.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "grafana" / "dashboards" / "pipeline-recovery.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = ROOT / "grafana" / "provisioning" / "dashboards" / "pipeline.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RULES = ROOT / "alert_rules.yml"

# Grafana 10.0 writes schemaVersion 38, 11.x 39 to 41: a dashboard newer than the
# Grafana that loads it is not migrated and may lose options.
MIN_SCHEMA_VERSION = 38
MAX_SCHEMA_VERSION = 39

# Metrics that are not the monitor's own.
FOREIGN_METRICS = {"up", "ALERTS"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in iter_panels(dashboard) if p.get("type") != "row"]


def substitute(
    expr: str,
    *,
    component: str = ".+",
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "1h",
) -> str:
    """``expr`` with Grafana's variables replaced as Grafana would for a query.

    ``component`` is a regex (the variable is used as ``component=~"$component"``):
    ``.+`` is the "All" value, or give one component's name.
    """
    seconds = _seconds(range_)
    values = {
        "component": component,
        "__rate_interval": rate_interval,
        "__interval": interval,
        "__range": range_,
        "__range_s": str(seconds),
        "__range_ms": str(seconds * 1000),
    }

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name not in values:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    match = re.fullmatch(r"(\d+)([smhdw])", duration)
    if not match:
        raise ValueError(f"{duration!r} is not a Prometheus duration like 90s, 5m, 1h")
    return int(match[1]) * units[match[2]]


def dashboard_queries(
    *,
    component: str = ".+",
    rate_interval: str = "1m",
    interval: str = "15s",
    range_: str = "1h",
    path: Path = DASHBOARD,
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, variables substituted.

    For a Prometheus with a 1s scrape interval (the fast profile) a ``rate_interval``
    of a few seconds is enough; the default ``1m`` suits 15s scrapes. ``range_`` is
    the dashboard's time range (``$__range``). A panel with several queries appears
    once per query.
    """
    options = {
        "component": component,
        "rate_interval": rate_interval,
        "interval": interval,
        "range_": range_,
    }
    return [
        (panel["title"], substitute(target["expr"], **options))
        for panel in query_panels(load_dashboard(path))
        for target in panel.get("targets", [])
        if not target.get("hide")
    ]


def provisioned_datasource() -> dict[str, Any]:
    datasources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert len(datasources) == 1, "one datasource: the Prometheus that scrapes the monitor"
    datasource: dict[str, Any] = datasources[0]
    return datasource


def documented_metrics() -> dict[str, set[str]]:
    """Metric name -> labels, from the tables of docs/metrics.md."""
    metrics: dict[str, set[str]] = {}
    row = re.compile(r"^\|\s*`(pipeline_\w+)`\s*\|\s*([^|]+)\|\s*([^|]*)\|")
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        match = row.match(line)
        if not match:
            continue
        name, kind = match[1], match[2].strip()
        labels = re.sub(r"\([^)]*\)", "", match[3])  # "result (`success`, ...)"
        label_set = {label.strip() for label in labels.split(",")} - {"-", ""}
        if kind.startswith("histogram"):
            for suffix in ("_bucket", "_sum", "_count"):
                metrics[name + suffix] = label_set | ({"le"} if suffix == "_bucket" else set())
        else:
            metrics[name] = label_set
    assert metrics, f"no metric table found in {METRICS_DOC}"
    return metrics


def recorded_series() -> set[str]:
    """The names that the recording rules of alert_rules.yml record."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


# A metric name and its optional selector braces, outside of label matchers.
_SELECTOR = re.compile(r"\b(pipeline_\w+)\s*(\{[^}]*\})?")
# A recorded series (level:metric:operations) and its optional selector braces.
_RECORDED = re.compile(r"\b(pipeline:\w+:\w+)\s*(\{[^}]*\})?")


# -- provisioning -------------------------------------------------------------------


def test_datasource_is_prometheus_with_a_fixed_uid() -> None:
    datasource = provisioned_datasource()
    assert datasource["type"] == "prometheus"
    assert datasource["uid"] == "prometheus"
    assert datasource["access"] == "proxy"
    assert re.fullmatch(r"https?://[\w.-]+:\d+/?", datasource["url"]), datasource["url"]
    assert datasource.get("isDefault") is True


def test_dashboard_provider_loads_the_dashboards_directory() -> None:
    config = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/"), "a path on Grafana's server"
    assert provider.get("allowUiUpdates") is False, "the repository's JSON is the source"


# -- the dashboard ------------------------------------------------------------------


def test_dashboard_is_importable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "pipeline-recovery"
    assert dashboard["title"]
    assert dashboard.get("id") is None, "an id would clash with Grafana's own on import"
    assert MIN_SCHEMA_VERSION <= dashboard["schemaVersion"] <= MAX_SCHEMA_VERSION
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]


def test_every_panel_has_a_title_and_a_unique_id() -> None:
    panels = list(iter_panels(load_dashboard()))
    for panel in panels:
        assert isinstance(panel.get("title"), str) and panel["title"].strip(), panel
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(i, int) for i in ids), ids
    assert len(ids) == len(set(ids)), f"repeated panel ids: {ids}"
    titles = [panel["title"] for panel in query_panels(load_dashboard())]
    assert len(titles) == len(set(titles)), "titles name the queries of dashboard_queries()"


def test_panels_fit_the_grid_without_overlapping() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in iter_panels(load_dashboard()):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_query_uses_the_provisioned_datasource() -> None:
    uid = provisioned_datasource()["uid"]
    for panel in query_panels(load_dashboard()):
        assert panel.get("datasource", {}).get("uid") == uid, panel["title"]
        assert panel.get("datasource", {}).get("type") == "prometheus", panel["title"]
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no query"
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in targets:
            assert target.get("datasource", {}).get("uid") == uid, panel["title"]
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]


def test_component_variable() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    variable = variables["component"]
    assert variable["type"] == "query"
    assert variable["datasource"]["uid"] == provisioned_datasource()["uid"]
    query = variable["query"]
    query = query["query"] if isinstance(query, dict) else query
    assert query == "label_values(pipeline_component_up, component)"
    assert variable["includeAll"] is True and variable["multi"] is True
    assert variable["allValue"] == ".+", "All must match every component, also new ones"


def test_queries_use_the_documented_metrics_and_follow_the_component_variable() -> None:
    metrics = documented_metrics()
    used = set()
    for title, expr in raw_queries():
        for match in _SELECTOR.finditer(expr):
            name, selector = match[1], match[2] or ""
            used.add(name)
            assert name in metrics, f"{title}: {name} is not in docs/metrics.md"
            if "component" in metrics[name]:
                assert 'component=~"$component"' in selector, (
                    f"{title}: {name} must be filtered by the component variable"
                )
    for name in ("pipeline_can_publish", "pipeline_component_up", "pipeline_component_status"):
        assert name in used


def test_recorded_series_exist_and_follow_the_component_variable() -> None:
    recorded = recorded_series()
    used = set()
    for title, expr in raw_queries():
        for match in _RECORDED.finditer(expr):
            name, selector = match[1], match[2] or ""
            used.add(name)
            assert name in recorded, f"{title}: {name} is not recorded by alert_rules.yml"
            if name.startswith("pipeline:component_"):
                assert 'component=~"$component"' in selector, (
                    f"{title}: {name} must be filtered by the component variable"
                )
    # The error budget left, for publishing and per component.
    assert {
        "pipeline:publishing_error_budget_remaining:ratio",
        "pipeline:component_error_budget_remaining:ratio",
    } <= used


def test_queries_name_no_other_metrics() -> None:
    known = set(documented_metrics()) | FOREIGN_METRICS | recorded_series()
    keywords = {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "le",
        "component",
        "result",
        "status",
        "target",
        "inf",
        "nan",
        # aggregation operators, which may be followed by `by (...)` instead of `(`
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    }
    for title, expr in dashboard_queries():
        stripped = re.sub(r'"[^"]*"', '""', expr)  # label values
        stripped = re.sub(r"\{[^}]*\}", "", stripped)  # matchers
        stripped = re.sub(r"\[[^\]]*\]", "", stripped)  # ranges
        for word in re.findall(r"\b[A-Za-z_:][\w:]*\b(?!\s*\()", stripped):
            if word in keywords or word in known:
                continue
            pytest.fail(f"{title}: {word!r} is neither a known metric nor PromQL: {expr}")


def test_rates_use_the_rate_interval() -> None:
    window = re.compile(r"\b(?:rate|irate|increase|delta|deriv)\(\s*[^\[()]*\[([^\]]+)\]")
    for title, expr in raw_queries():
        for found in window.findall(expr):
            assert found in ("$__rate_interval", "$__range"), (
                f"{title}: use [$__rate_interval] (or [$__range] for a whole-range total),"
                f" not [{found}]: {expr}"
            )


def test_instant_panels_query_instantly() -> None:
    """Stats, gauges and tables show one value: a range query of avg_over_time(...[30d])
    would compute thirty days at every step."""
    for panel in query_panels(load_dashboard()):
        if panel["type"] in ("stat", "gauge", "bargauge", "table"):
            for target in panel["targets"]:
                assert target.get("instant") is True, panel["title"]
                assert target.get("range") is False, panel["title"]


def test_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool has no command that parses a bare query; a rule file's expressions
    are parsed by `promtool check rules`."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found on PATH: install the Debian package prometheus")
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": expr}
        for index, (_, expr) in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_queries_substitute_every_variable() -> None:
    queries = dashboard_queries()
    targets = sum(len(p["targets"]) for p in query_panels(load_dashboard()))
    assert len(queries) == targets
    for title, expr in queries:
        assert "$" not in expr and "[[" not in expr, f"{title}: {expr}"
    one = dict(dashboard_queries(component="database", rate_interval="5s", range_="10m"))
    assert 'component=~"database"' in one["Probe latency"]
    assert "[5s]" in one["Probe failure ratio"]
    assert "[10m]" in one["Repairs by result"]


def test_substitute_rejects_unknown_variables() -> None:
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        substitute("up{instance=~'$instance'}")
    assert substitute('x{component=~"${component}"}[$__range]', range_="2h") == (
        'x{component=~".+"}[2h]'
    )


def raw_queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in query_panels(load_dashboard())
        for target in panel["targets"]
    ]
