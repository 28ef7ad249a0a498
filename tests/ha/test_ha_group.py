"""Two monitors, one PostgreSQL store, one repair per incident.

Real processes, the real PostgreSQL server, fault proxies for the broken paths;
Alertmanager's deliveries are posted as it posts them (the clustered
Alertmanagers and Prometheus are in test_ha_stack.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from faults import FaultProxy
from recovery.recovery_support import wait_until

from ha.ha_support import Group, alert_from, attempts, body_of, post_to

# The product runs in the monitor processes, not in this event loop: the loop's
# blocking guard would only measure how two monitors starting at once starve the
# test process of CPU on a small runner.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.allow_blocking("the monitors run in processes of their own"),
]


@pytest.fixture
async def group(tmp_path: Path, pg_database: str) -> AsyncIterator[Group]:
    made = Group(tmp_path, pg_database)
    yield made
    await made.stop()


async def _down(group: Group) -> None:
    assert group.standin is not None
    group.standin.kill()
    for monitor in group.monitors.values():
        await wait_until(
            lambda m=monitor: _sees(m, "unhealthy"), timeout=20, message="the fault is seen"
        )


async def _sees(monitor: object, status: str) -> bool:
    own = [
        m
        for m in (await monitor.get("/api/pipeline/status"))["monitors"]  # type: ignore[attr-defined]
        if m["this_monitor"]
    ]
    return bool(own) and own[0]["components"]["validation_service"] == status


async def test_the_same_notification_to_both_monitors_runs_one_repair(group: Group) -> None:
    await group.start()
    await _down(group)
    a, b = group["monitor-a"], group["monitor-b"]
    alert = alert_from("monitor-a")
    body = body_of(alert)
    # Both Alertmanagers of a pair deliver it to both monitors, at once, and again.
    answers = await asyncio.gather(*(post_to(m, body) for m in (a, b, a, b)))
    assert sum(answer["repairs_queued"] for answer in answers) >= 1

    async def repaired() -> bool:
        return await a.component("validation_service") == "healthy"

    await wait_until(repaired, timeout=30, message="the service is repaired")
    await asyncio.sleep(2)  # a second repair would have started by now
    done = await attempts(a)
    assert [(e["status"], e["trigger"]) for e in done] == [("success", "alert")]
    assert done == await attempts(b)  # the same history from either monitor
    assert len(group.repairs()) == 1
    assert group.standin is not None and group.standin.starts == 2
    # Recorded once, with every delivery counted.
    history = (await b.get("/api/pipeline/history?limit=1000"))["events"]
    assert len([e for e in history if e["type"] == "alert" and e["status"] == "firing"]) == 1
    first, second = [await m.get("/api/pipeline/status") for m in (a, b)]
    for key in ("components", "can_publish", "overall_status", "recent_failures"):
        assert first[key] == second[key], key
    # Uptime is counted once, from one history; read a moment apart.
    assert first["uptime"]["24h"] == pytest.approx(second["uptime"]["24h"], abs=2)
    assert first["component_details"]["validation_service"]["last_attempt"]["monitor"] in (
        "monitor-a",
        "monitor-b",
    )


async def test_the_holder_killed_mid_repair_hands_the_incident_over(group: Group) -> None:
    await group.start()
    group.slow_file.write_text("30")  # the first repair hangs...
    await _down(group)
    a, b = group["monitor-a"], group["monitor-b"]
    await post_to(a, body_of(alert_from("monitor-a")))
    await wait_until(lambda: len(group.repairs()) == 1, timeout=20, message="a repair runs")
    (running,) = await wait_until(
        lambda: _running_attempts(a), timeout=10, message="the group sees the attempt running"
    )
    holder = group[running["monitor"]]
    other = b if holder is a else a
    group.slow_file.write_text("0")  # ...the next one is quick
    await holder.kill()
    killed_at = asyncio.get_running_loop().time()

    async def healthy() -> bool:
        return await other.component("validation_service") == "healthy"

    await wait_until(healthy, timeout=40, message="the other monitor finishes the incident")
    took = asyncio.get_running_loop().time() - killed_at
    assert took < group.lease_ttl + 15
    # The repair command notes its end just after the service it starts answers.
    await wait_until(
        lambda: [how for *_, how in group.repairs()] == ["end-killed", "end"],
        timeout=10,
        message="the killed command's end, then the second command's",
    )
    group.assert_no_overlap()
    rows = sorted(await attempts(other), key=lambda e: e["started_at"])
    assert [(e["status"], e["monitor"]) for e in rows] == [
        ("interrupted", holder.name),
        ("success", other.name),
    ]
    assert rows[1]["trigger"] == "resume"


async def _running_attempts(monitor: object) -> list[dict[str, object]]:
    status = await monitor.get("/api/pipeline/status")  # type: ignore[attr-defined]
    last = status["component_details"]["validation_service"]["last_attempt"]
    return [last] if last and last["status"] == "running" else []


async def test_one_monitors_broken_path_repairs_nothing_and_shows_the_split(
    tmp_path: Path, pg_database: str
) -> None:
    made = Group(tmp_path, pg_database)
    made.standin = None
    from recovery.recovery_support import StandIn

    standin = StandIn(tmp_path)
    async with FaultProxy("127.0.0.1", standin.port) as cut:
        made.standin = standin
        made.probe_urls = {"monitor-a": f"http://{cut.address}/health"}
        try:
            await made.start()
            a, b = made["monitor-a"], made["monitor-b"]
            await cut.refuse()  # monitor-a's own path to the service breaks
            await wait_until(lambda: _sees(a, "unhealthy"), timeout=20, message="a sees it down")
            answer = await post_to(a, body_of(alert_from("monitor-a")))
            assert answer["repairs_queued"] == 1
            await asyncio.sleep(4)  # a repair would have run by now
            assert made.repairs() == []
            assert await attempts(a) == []
            for monitor in (a, b):
                status = await monitor.get("/api/pipeline/status")
                assert status["components"]["validation_service"] == "healthy"
                assert status["can_publish"] is True
                views = {
                    m["name"]: m["components"]["validation_service"] for m in status["monitors"]
                }
                assert views == {"monitor-a": "unhealthy", "monitor-b": "healthy"}
                assert any(
                    "monitor-a cannot reach it while monitor-b sees it healthy" in line
                    for line in status["suggested_actions"]
                ), status["suggested_actions"]
            history = (await b.get("/api/pipeline/history?limit=100"))["events"]
            (waiting,) = [e for e in history if e["type"] == "repair_waiting"]
            assert waiting["reason"] == "monitor-b sees validation_service healthy"
        finally:
            await made.stop()


async def test_the_store_hung_then_refused_repairs_nothing_and_loses_nothing(
    tmp_path: Path, pg_database: str
) -> None:
    host_port = pg_database.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    async with FaultProxy(host, int(port)) as store_proxy:
        url = pg_database.replace(host_port, store_proxy.address)
        made = Group(tmp_path, pg_database, store_urls={n: url for n in ("monitor-a", "monitor-b")})
        try:
            await made.start()
            a, b = made["monitor-a"], made["monitor-b"]
            await store_proxy.hang()
            assert made.standin is not None
            made.standin.kill()
            for monitor in (a, b):  # probing goes on
                await wait_until(
                    lambda m=monitor: _sees(m, "unhealthy"), timeout=20, message="down seen"
                )
            alert = alert_from("monitor-a")
            for monitor in (a, b):  # the webhook answers: kept, to be written later
                assert (await post_to(monitor, body_of(alert)))["new"] == 1

            async def history_gone(m: object) -> bool:
                status = await m.get("/api/pipeline/status")  # type: ignore[attr-defined]
                return status["history"]["available"] is False

            for monitor in (a, b):
                await wait_until(
                    lambda m=monitor: history_gone(m), timeout=20, message="history unavailable"
                )
            await asyncio.sleep(4)
            await store_proxy.refuse()
            for _ in range(20):  # 20 s refused: the page and the metrics still answer
                for monitor in (a, b):
                    status = await monitor.get("/api/pipeline/status")
                    assert status["history"]["available"] is False
                    assert status["can_publish"] is False
                    detail = status["component_details"]["validation_service"]
                    assert detail["manual_intervention"] is True
                    assert (
                        "no repair runs without its lease"
                        in detail["manual_intervention_detail"]["reason"]
                    )
                    assert (await monitor.get("/api/pipeline/editor-message"))[
                        "can_publish"
                    ] is False
                await asyncio.sleep(1)
            assert made.repairs() == []  # no repair without a lease

            await store_proxy.pass_through()

            async def caught_up() -> bool:
                for monitor in (a, b):
                    history = (await monitor.get("/api/pipeline/status"))["history"]
                    if not history["available"] or history["buffered_rows"]:
                        return False
                return True

            await wait_until(caught_up, timeout=30, message="the history catches up")
            history = (await a.get("/api/pipeline/history?limit=1000"))["events"]
            kinds = [
                (e["type"], e.get("component"), e.get("status") or e.get("to")) for e in history
            ]
            assert ("alert", "validation_service", "firing") in kinds
            assert ("transition", "validation_service", "unhealthy") in kinds
            escalations = [e for e in history if e["type"] == "escalation"]
            assert {e["monitor"] for e in escalations} == {"monitor-a", "monitor-b"}

            # Automation goes on: the owed repair runs now, once.
            async def repaired() -> bool:
                return await a.component("validation_service") == "healthy"

            await wait_until(repaired, timeout=30, message="repaired once the store is back")
            made.assert_no_overlap()
            assert len(made.repairs()) == 1
        finally:
            await store_proxy.pass_through()
            await made.stop()
