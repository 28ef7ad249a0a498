"""Writes kept while the store is unreachable, to be written once it is back."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: Rows (events, alerts, counts) kept at most while the store is unreachable.
MAX_ROWS = 50_000


def rows_of(job: Callable[..., Any]) -> int:
    return int(getattr(job, "rows", 1))


class WriteBuffer:
    """Writes in the order they were made, bounded by the rows they carry.

    Past the bound the oldest writes go first (what is newest matters most to
    people reading the history after an outage), and the loss is counted."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self.rows = 0
        #: Rows dropped because the buffer was full, since the start.
        self.dropped = 0
        self._jobs: deque[Callable[..., Any]] = deque()

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job: Callable[..., Any]) -> None:
        self._jobs.append(job)
        self.rows += rows_of(job)
        while self.rows > self.max_rows and len(self._jobs) > 1:
            oldest = self._jobs.popleft()
            lost = rows_of(oldest)
            self.rows -= lost
            if not self.dropped:
                log.error(
                    "history: the store has been unreachable for too long; more than %d rows"
                    " wait to be written, dropping the oldest",
                    self.max_rows,
                )
            self.dropped += lost

    def take(self, rows: int) -> list[Callable[..., Any]]:
        """The oldest writes, about ``rows`` rows of them (at least one write)."""
        taken: list[Callable[..., Any]] = []
        count = 0
        while self._jobs and (not taken or count + rows_of(self._jobs[0]) <= rows):
            job = self._jobs.popleft()
            count += rows_of(job)
            taken.append(job)
        self.rows -= count
        return taken

    def put_back(self, jobs: list[Callable[..., Any]]) -> None:
        """Writes that could not be written after all, first in line again."""
        for job in reversed(jobs):
            self._jobs.appendleft(job)
            self.rows += rows_of(job)
