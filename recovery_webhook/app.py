"""The composition root: one aiohttp application, one port, everything mounted.

``/metrics`` (the exporter's registry), the Alertmanager webhook, the JSON API,
the OpenAPI description and the editors' status page.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from recovery_webhook import api, openapi, page
from recovery_webhook.auth import resolve_token
from recovery_webhook.config import AppConfig
from recovery_webhook.service import PipelineService

log = logging.getLogger(__name__)


def make_app(config: AppConfig, token: str | None = None) -> web.Application:
    """Build the application; the service starts and stops with it."""
    app = web.Application(
        # Bodies are capped twice: by Content-Length up front (api.guard), and
        # while reading, for chunked bodies that carry no length.
        client_max_size=config.server.max_body_bytes,
        middlewares=[api.guard],
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


async def serve(config: AppConfig) -> None:
    """Run until SIGINT or SIGTERM; then stop taking work and close everything."""
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    try:
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
    log.info("pipeline-monitor listening on http://%s:%d", config.server.host, config.server.port)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()
