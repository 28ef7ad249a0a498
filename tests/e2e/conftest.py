"""The end-to-end stack, once per session (see e2e_stack.py for what runs).

The tests that use it run first, the dashboard check after the scenarios (it
reads what they left in Prometheus), and the stack stops right after the last of
them, so that it does not load the machine while the other tests run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import Stack

HERE = Path(__file__).resolve().parent
LAST = "test_e2e_grafana.py"

_running: list[Stack] = []
_last_user: list[str] = []


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The monitor between real Prometheus, Alertmanager and services; stopped at the end.

    Its set-up fails (never skips) without the binaries or the services.
    """
    running = Stack(tmp_path_factory.mktemp("e2e"))
    _running.append(running)
    try:
        try:
            running.start()
        except Exception as exc:
            logs = "\n".join(
                f"--- {name}:\n{running.log_tail(name)}"
                for name in ("monitor.log", "alertmanager.log", "prometheus.log")
            )
            pytest.fail(f"the end-to-end stack did not start: {exc}\n{logs}", pytrace=False)
        yield running
    finally:
        running.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if "stack" not in getattr(item, "fixturenames", ()):
            return 2
        return 1 if item.path.name == LAST else 0

    mine = [i for i, item in enumerate(items) if HERE in item.path.parents]
    ordered = sorted((items[i] for i in mine), key=rank)
    for index, item in zip(mine, ordered, strict=True):
        items[index] = item
    users = [item.nodeid for item in ordered if rank(item) < 2]
    _last_user[:] = users[-1:]


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if _last_user and item.nodeid == _last_user[0]:
        for running in _running:
            running.close()
