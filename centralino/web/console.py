"""The agents' console: static files (no build step, nothing from the internet) at /console/.

The page signs in with the agent's own token (REST `Authorization: Bearer`, and the first
message of its WebSocket); the files themselves are public.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

FILES = Path(__file__).with_name("console")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# Only what the page needs: itself, same-origin scripts, styles and sockets; no framing.
HEADERS = {
    "Cache-Control": "no-cache",  # small files: always revalidate, so an upgrade shows at once
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/console", to_console)
    app.router.add_get("/console/", console_file)
    app.router.add_get("/console/{name}", console_file)


async def to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


async def console_file(request: web.Request) -> web.FileResponse:
    name = request.match_info.get("name", "index.html")
    # Served by name from the folder's own listing: no path from the URL reaches the disk.
    path = {p.name: p for p in FILES.iterdir() if p.is_file()}.get(name)
    if path is None or path.suffix not in TYPES:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={
        **HEADERS, "Content-Type": f"{TYPES[path.suffix]}; charset=utf-8"})
