"""The editors' status page: static files that read /api/pipeline/editor-message."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        STATIC / "index.html",
        headers={
            "Cache-Control": "no-cache",
            # Everything the page needs comes from this origin; nothing else runs.
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; style-src 'self';"
                " script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=True)
