"""Holding a lease while work runs under it: renewed, and given up in time.

:meth:`Leases.hold` takes a lease from the store and renews it every third of
its time to live. Work runs under it with :meth:`HeldLease.run`. If the lease
cannot be renewed (the store is unreachable, or another monitor has it), the
work is cancelled a quarter of the lease's life before it could expire, so that
it has stopped (its commands killed) before any other monitor may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from recovery_webhook.store import Lease, LeaseLost, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


class LeaseStore(Protocol):
    async def acquire(self, name: str, holder: str, monitor: str, ttl: float) -> Lease | None: ...

    async def renew(self, lease: Lease, ttl: float) -> Lease | None: ...

    async def release(self, lease: Lease) -> None: ...


class HeldLease:
    """A lease this monitor holds; ``lease`` is the latest renewal."""

    def __init__(
        self, owner: Leases, lease: Lease, valid_until: float, clock: Callable[[], float]
    ) -> None:
        self.lease = lease
        self.lost = asyncio.Event()
        self._owner = owner
        self._clock = clock
        # Until when (this process's monotonic clock) the lease surely holds:
        # measured from before the request that took or renewed it.
        self._valid_until = valid_until
        self._work: set[asyncio.Task[Any]] = set()
        self._renewer = asyncio.create_task(self._renew_forever(), name=f"lease-{lease.name}")

    @property
    def token(self) -> int:
        return self.lease.token

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` under the lease; LeaseLost if the lease is lost first
        (``work`` is then cancelled)."""
        if self.lost.is_set():
            work.close()
            raise LeaseLost(f"the lease {self.lease.name!r} is no longer held")
        task = asyncio.ensure_future(work)
        self._work.add(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if self.lost.is_set() and task.cancelled():
                raise LeaseLost(
                    f"the lease {self.lease.name!r} could not be renewed; the work under it"
                    " was stopped"
                ) from None
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise
        finally:
            self._work.discard(task)

    async def release(self) -> None:
        self._renewer.cancel()
        with contextlib.suppress(BaseException):
            await self._renewer
        if not self.lost.is_set():
            try:
                await self._owner.store.release(self.lease)
            except StoreError as exc:  # it expires by itself
                log.warning("cannot release the lease %s: %s", self.lease.name, exc)

    def _give_up(self, why: str) -> None:
        if self.lost.is_set():
            return
        log.error("lost the lease %s: %s; stopping the work under it", self.lease.name, why)
        self.lost.set()
        for task in self._work:
            task.cancel()  # run() then raises LeaseLost to its caller

    async def _renew_forever(self) -> None:
        ttl = self._owner.ttl
        while True:
            stop_at = self._valid_until - ttl / 4
            await asyncio.sleep(max(0.0, min(ttl / 3, stop_at - self._clock())))
            if self._clock() >= stop_at:
                self._give_up(f"not renewed within {ttl * 3 / 4:g}s")
                return
            asked = self._clock()
            renewal = asyncio.ensure_future(self._owner.store.renew(self.lease, ttl))
            try:
                # asyncio.wait, not wait_for, which before Python 3.12 can swallow
                # the cancellation of release().
                await asyncio.wait({renewal}, timeout=max(0.1, stop_at - asked))
            finally:
                if not renewal.done():
                    renewal.cancel()
            if renewal.cancelled() or renewal.exception() is not None:
                error = "timed out" if renewal.cancelled() else renewal.exception()
                log.warning("cannot renew the lease %s: %s", self.lease.name, error)
                await asyncio.sleep(min(0.5, ttl / 10))
                continue
            renewed = renewal.result()
            if renewed is None:
                self._give_up("another monitor holds it now")
                return
            self.lease = renewed
            self._valid_until = asked + ttl


class Leases:
    """Leases of one monitor (``holder`` names its incarnation)."""

    def __init__(
        self,
        store: LeaseStore,
        holder: str,
        monitor: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.holder = holder
        self.monitor = monitor
        self.ttl = ttl
        self._clock = clock

    async def hold(self, name: str) -> HeldLease | None:
        """Take ``name`` and keep renewing it; None if another monitor holds it.
        Raises StoreError when the store cannot say."""
        asked = self._clock()
        lease = await self.store.acquire(name, self.holder, self.monitor, self.ttl)
        if lease is None:
            return None
        return HeldLease(self, lease, asked + self.ttl, self._clock)
