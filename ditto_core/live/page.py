"""The page and what it reads: the page's files (``<prefix>/page/``), the portraits offered (with the server's
WebRTC STUN URLs, which the browser's connection uses too) and a portrait's image (shown before the first
frame)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .protocol import LiveError

if TYPE_CHECKING:
    from .service import LiveService

PAGE_DIR = Path(__file__).resolve().parent / "page"
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def redirect(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(request.rel_url.path + "/" + (f"?{request.query_string}" if request.query_string else ""))


async def page_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("name") or "index.html"
    files = {p.name: p for p in PAGE_DIR.iterdir() if p.is_file()}
    if name not in files:
        raise web.HTTPNotFound(text=f"no page file {name}")
    path = files[name]
    return web.Response(body=path.read_bytes(), content_type=CONTENT_TYPES.get(path.suffix, "text/plain"),
                        charset="utf-8", headers={"Cache-Control": "no-cache"})


async def portrait_list(service: "LiveService", request: web.Request) -> web.StreamResponse:
    problem = service.access_problem(request, request.query.get("token"))
    if problem:
        return web.json_response({"error": problem}, status=403)
    names = await asyncio.to_thread(service.portraits.names)
    default = service.portraits.default.name if service.portraits.default is not None else None
    return web.json_response({"portraits": names, "default": default, "max_sessions": service.settings.max_sessions,
                              "active_sessions": service.active_sessions,
                              "ice_servers": list(service.settings.ice_servers)})


async def portrait_image(service: "LiveService", request: web.Request) -> web.StreamResponse:
    """``?name=`` (default: the server's own portrait): the image file, as the portrait list offers it."""
    problem = service.access_problem(request, request.query.get("token"))
    if problem:
        return web.json_response({"error": problem}, status=403)
    try:
        path = service.portraits.path(request.query.get("name") or None)
    except LiveError as exc:
        return web.json_response({"error": str(exc)}, status=404)
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})
