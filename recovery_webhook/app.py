"""The composition root: one aiohttp application, one port, everything mounted.

``/metrics`` (the exporter's registry), the Alertmanager webhook, the JSON API,
the OpenAPI description and the editors' status page.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from exporter.descriptors import probe_reserve
from recovery_webhook import api, openapi, page
from recovery_webhook.auth import resolve_token
from recovery_webhook.config import AppConfig
from recovery_webhook.server import REPAIR_RESERVE, BoundedSite, track_requests
from recovery_webhook.service import PipelineService

log = logging.getLogger(__name__)


def make_app(config: AppConfig, token: str | None = None) -> web.Application:
    """Build the application; the service starts and stops with it."""
    app = web.Application(
        # Bodies are capped twice: by Content-Length up front (api.guard), and
        # while reading, for chunked bodies that carry no length.
        client_max_size=config.server.max_body_bytes,
        middlewares=[track_requests, api.guard],
    )
    app[api.CONFIG] = config
    app[api.TOKEN] = token if token is not None else resolve_token(config)
    app.cleanup_ctx.append(_service_ctx)
    api.add_routes(app)
    openapi.add_routes(app)
    page.add_routes(app)
    return app


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    service = PipelineService(app[api.CONFIG])
    app[api.SERVICE] = service
    await service.start()
    yield
    await service.stop()


def watch_children_with_pidfds() -> bool:
    """Wait for repair commands through pidfds, as Python 3.12+ does by default.

    Python 3.10 and 3.11 start a thread per child process (ThreadedChildWatcher):
    0.3 ms of CPU per ``command`` action, paid by each repair an alert storm
    starts. Needs Linux 5.3+; elsewhere the default stays. Call it in the loop
    that will start the children, before it starts any. True when the pidfd
    watcher is in use."""
    if sys.version_info >= (3, 12):
        return True  # 3.12+ picks pidfds itself where they work
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel without pidfds
        return False
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)
    return True


async def serve(config: AppConfig) -> None:
    """Run until SIGINT or SIGTERM; then stop taking work and close everything."""
    watch_children_with_pidfds()
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        # What the probes may open at once stays free: clients can't starve them.
        probes = [p for found in app[api.SERVICE].monitor.scheduler.probes.values() for p in found]
        site = BoundedSite(
            runner,
            config.server,
            config.server.host,
            config.server.port,
            reserve=probe_reserve(probes) + REPAIR_RESERVE,
        )
        await site.start()
    except BaseException:
        await runner.cleanup()  # the service has started: stop it cleanly
        raise
    # What start-up built (modules, models, schemas) lives as long as the process:
    # keep the cyclic GC from scanning it in every full collection, which would
    # otherwise stall the first alert storm by tens of milliseconds.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("pipeline-monitor listening on http://%s:%d", config.server.host, site.port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
