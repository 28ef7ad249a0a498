"""The editors' status page: static files that read /api/pipeline/editor-message;
and the headers every answer carries."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from recovery_webhook.server import SERVER_NAME

STATIC = Path(__file__).with_name("static")

# Everything the page needs comes from this origin; nothing else runs, and no
# other site may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self';"
    " script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every answer, whichever route made it (``/``, ``/static/...``, an error):
    no content sniffing, no version in ``Server``; on HTML, the page's policy."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Server"] = SERVER_NAME
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors, for older browsers


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC, append_version=True)
    app.on_response_prepare.append(security_headers)
