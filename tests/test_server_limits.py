"""The server's limits as units: the connection cap leaves the probes' reserve
free, and client trouble is logged at a bounded rate (a fake clock)."""

from __future__ import annotations

import logging

import pytest

from exporter.descriptors import open_descriptors, probe_reserve
from recovery_webhook import server
from recovery_webhook.server import Throttled, connection_cap

pytestmark = pytest.mark.unit


def test_the_cap_leaves_the_reserve_free(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "descriptor_limit", lambda: 128)
    monkeypatch.setattr(server, "open_descriptors", lambda: 20)
    cap, why = connection_cap(512, reserve=60)
    assert cap == 128 - 20 - 60
    assert "open-file limit is 128" in why and "60 are kept for probes and repairs" in why
    # With room to spare, the configured cap stands.
    monkeypatch.setattr(server, "descriptor_limit", lambda: 65536)
    assert connection_cap(512, reserve=60) == (512, "at most 512 connections")
    # A limit that leaves nothing still lets one client in (and says why).
    monkeypatch.setattr(server, "descriptor_limit", lambda: 64)
    assert connection_cap(512, reserve=60)[0] == 1


def test_each_probe_kind_says_what_it_holds() -> None:
    class Tcp:
        def descriptors(self) -> int:
            return 5

    class Unknown:
        pass

    # Twice over (a run abandoned at its timeout may still hold its own), plus a base.
    assert probe_reserve([Tcp(), Unknown()]) == 2 * (5 + 2) + probe_reserve([])


def test_open_descriptors_are_counted() -> None:
    count = open_descriptors()
    assert count is not None and count > 2


def test_trouble_is_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    throttled = Throttled(logging.WARNING, 60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="recovery_webhook.server")
    for _ in range(44_000):
        throttled("cannot accept connections: %s", "Too many open files")
        now[0] += 16 / 44_000
    assert len(caplog.records) == 1
    now[0] += 60
    throttled("cannot accept connections: %s", "Too many open files")
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage() == (
        "cannot accept connections: Too many open files (43999 more like it in the last 76s)"
    )
