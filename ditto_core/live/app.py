"""The standalone server (``python -m ditto_core live``): the page at ``/`` and the endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from .protocol import ENDPOINT
from .service import LiveService
from .settings import is_loopback


def make_app(service: LiveService) -> web.Application:
    """The standalone server: the page at ``/`` (a redirect to ``/ditto/live/page/``) and the endpoint."""
    app = web.Application()
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(ENDPOINT + "/page/" + (f"?{request.query_string}" if request.query_string else ""))

    service.add_routes(routes)
    app.add_routes(routes)
    app.on_shutdown.append(service.on_shutdown)
    return app


def serve(service: LiveService, host: str = "127.0.0.1", port: int = 8765,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run the standalone server until interrupted."""
    if service.settings.token is None and not is_loopback(host):
        raise ValueError(f"listening on {host} lets other machines connect: give an access token (--token) or "
                         f"listen on 127.0.0.1")

    async def main() -> None:
        runner = web.AppRunner(make_app(service))
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        if on_ready is not None:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{port}/")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
