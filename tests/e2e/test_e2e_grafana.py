"""Every query of the engineers' Grafana dashboard returns data from the real stack.

The queries come from tests/test_grafana_dashboard.py's ``dashboard_queries()``
(Grafana's variables substituted) and run against the end-to-end Prometheus,
which scrapes the real monitor. A query that Prometheus rejects, or that returns
no series, fails the test: on Grafana it would be an error or "No data".

The variables are what Grafana computes for the "last 15 minutes" on the fast
profile: ``$__interval`` 1s (15 min over about 1,000 points), ``$__rate_interval``
4s (four scrape intervals), ``$__range`` 15m, ``$component`` All.

No panel is exempt. The ones that could be empty get their data from the
stack's set-up: "Firing alerts" (``ALERTS``) always has the Watchdog; "Alerts firing
now" counts with ``or vector(0)``; "Active storage target" has the storage
component's secondary directory; queue, database and storage panels have their
probes. Recovery panels need at least one repair: the scenarios of
test_e2e_scenarios.py leave several, and when this test runs alone it asks for one
(POST /api/pipeline/recovery/database, whose restart hook succeeds). The error
budget's panels wait for their rule group to have run.
"""

from __future__ import annotations

import math

import pytest
from e2e_stack import Stack, wait_for
from test_grafana_dashboard import dashboard_queries

pytestmark = pytest.mark.e2e

VARIABLES = {"component": ".+", "interval": "1s", "rate_interval": "4s", "range_": "15m"}


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    if not stack.query("sum(pipeline_recovery_attempts_total) > 0"):
        assert stack.recover("database")["success"] is True
    wait_for(
        lambda: stack.query("sum(pipeline_recovery_attempts_total) > 0"),
        15,
        "Prometheus has scraped a repair",
    )
    # The SLO's long windows have a rule group of their own (every 4 s on this
    # profile); the budget left also needs the objective's group to have run once.
    wait_for(
        lambda: (
            stack.query("pipeline:publishing_error_budget_remaining:ratio")
            and stack.query("pipeline:component_error_budget_remaining:ratio")
        ),
        30,
        "Prometheus has recorded the error budget",
    )

    queries = dashboard_queries(**VARIABLES)
    assert len(queries) >= 20, queries
    problems = []
    answered = {}
    for title, expr in queries:
        try:
            result = stack.query(expr)
        except AssertionError as exc:
            problems.append(f"{title!r}: {expr}\n    error: {exc}")
            continue
        if not result:
            problems.append(f"{title!r}: {expr}\n    no data")
        answered[(title, expr)] = result
    assert not problems, "dashboard queries without data:\n  " + "\n  ".join(problems)

    # The recovery panels show what happened, not only series that exist.
    repairs = answered[next(key for key in answered if key[0] == "Repairs by result")]
    assert any(float(series["value"][1]) > 0 for series in repairs), repairs
    durations = answered[
        next(key for key in answered if key[0] == "Recovery duration, whole range")
    ]
    assert any(not math.isnan(float(series["value"][1])) for series in durations), durations
