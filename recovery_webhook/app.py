"""The aiohttp application: one process, one port, everything mounted."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from exporter.monitor import Monitor
from recovery_webhook.config import AppConfig

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", AppConfig)
MONITOR = web.AppKey("monitor", Monitor)


def make_app(config: AppConfig) -> web.Application:
    app = web.Application(client_max_size=config.server.max_body_bytes)
    app[CONFIG] = config
    app.cleanup_ctx.append(_monitor_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def _monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor = Monitor(app[CONFIG])
    app[MONITOR] = monitor
    await monitor.start()
    yield
    await monitor.stop()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    return await request.app[MONITOR].handle_metrics(request)


async def serve(config: AppConfig) -> None:
    """Run until SIGINT or SIGTERM, then stop taking work and close everything."""
    app = make_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
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
