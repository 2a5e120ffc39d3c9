"""The live endpoint for any aiohttp app: sessions, their limit and admission by measured capacity, the access
rules, the routes."""

from __future__ import annotations

import asyncio
import hmac
import threading
from functools import partial
from urllib.parse import urlsplit

from aiohttp import web

from . import page
from .jpeg import JpegEncoder
from .portraits import PipelineSource, PortraitLibrary
from .protocol import ENDPOINT, LiveError
from .scheduler import DeviceScheduler
from .session import LiveSession
from .settings import LiveSettings
from .webrtc import answer_offer, close_all
from .websocket import _Connection, _LiveSocket


class LiveService:
    """The live endpoint: the WebSocket handler, the page and the list of portraits, for any aiohttp app.

    ``pipeline``: a loaded DittoPipeline, or a function that loads one (called once, on the first session);
    ``hold``: keeps it ready to compute while a session lasts (see PipelineSource).
    """

    def __init__(self, pipeline, portraits: PortraitLibrary, settings: LiveSettings | None = None, hold=None):
        self.pipelines = PipelineSource(pipeline, hold)
        self.portraits = portraits
        self.settings = settings or LiveSettings()
        self._sessions: set[LiveSession] = set()  # the places taken (freed when the client goes)
        self._workers: set[LiveSession] = set()  # the workers still running (a stopped one ends within a batch)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._schedulers: dict[str, DeviceScheduler] = {}  # one per device
        self.jpeg = JpegEncoder(self.settings.jpeg_quality)
        self._conversations: set = set()  # the WebRTC peers (webrtc.Conversation)

    # ---- sessions
    @property
    def active_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def scheduler(self, device) -> DeviceScheduler:
        """The scheduler of ``device`` (made on first use)."""
        with self._lock:
            key = str(device)
            if key not in self._schedulers:
                self._schedulers[key] = DeviceScheduler(self.settings.batch_frames, self.settings.batch_windows)
            return self._schedulers[key]

    def forget(self, session: LiveSession) -> None:
        with self._lock:
            schedulers = list(self._schedulers.values())
        for scheduler in schedulers:
            scheduler.forget(session)

    def _capacity(self) -> int | None:
        """How many sessions the devices keep at 25 frames/s, as measured (None: not measured yet)."""
        if not self.settings.admit_by_capacity:
            return None
        counts = [s.cost.realtime_sessions() for s in self._schedulers.values()]
        counts = [count for count in counts if count is not None]
        return min(counts) if counts else None

    def _open(self, start, loop, outbox, timeline, deliver) -> LiveSession:
        with self._lock:
            running = len(self._sessions)
            if running >= self.settings.max_sessions:
                raise LiveError(f"busy: {running} live session(s) are running, the most this server "
                                f"runs side by side (--max-sessions); try again when one has ended")
            capacity = self._capacity()
            if capacity is not None and running >= max(capacity, 1):
                raise LiveError(f"busy: {running} live session(s) are running, as many as this device keeps at "
                                f"25 frames/s by what it has measured; try again when one has ended")
            session = LiveSession(self, start, loop, outbox, timeline, deliver)
            self._sessions.add(session)
            self._workers.add(session)
        session.thread.start()
        return session

    def _release(self, session: LiveSession, worker_done: bool) -> None:
        with self._lock:
            self._sessions.discard(session)
            if worker_done:
                self._workers.discard(session)
            self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no session holds a place and every worker has ended (tests, shutdown); whether that
        happened within ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._sessions and not self._workers, timeout)

    def stop_all(self) -> None:
        with self._lock:
            sessions = list(self._workers)
        for session in sessions:
            session.stop()

    async def on_shutdown(self, app: web.Application) -> None:
        await close_all(self)
        self.stop_all()
        await asyncio.to_thread(self.wait_idle, 10.0)
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            await asyncio.to_thread(scheduler.close)
        self.jpeg.close()
        self.jpeg = JpegEncoder(self.settings.jpeg_quality)  # its threads start only when used again

    # ---- access rules
    def _origin_problem(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser page (browsers always send Origin on WebSocket handshakes)
            return None
        if origin in self.settings.allowed_origins:
            return None
        if urlsplit(origin).netloc.lower() == request.host.lower():
            return None
        return (f"this server does not accept pages from {origin}; open the page it serves itself, or start it "
                f"with --allow-origin {origin}")

    def _token_problem(self, given: str | None) -> str | None:
        token = self.settings.token
        if token is None:
            return None
        if not given:
            return ("this server needs its access token: send it as \"token\" in the start message or as ?token= "
                    "in the address (the one it was started with, --token or DITTO_LIVE_TOKEN)")
        if not hmac.compare_digest(given.encode(), token.encode()):
            return "wrong access token; use the one the server was started with (--token or DITTO_LIVE_TOKEN)"
        return None

    # ---- routes
    def add_routes(self, routes: web.RouteTableDef, prefix: str = ENDPOINT) -> None:
        """Add the WebSocket endpoint (``prefix``), the WebRTC offer (``prefix/offer``), the page
        (``prefix/page/``), the portrait list (``prefix/portraits``) and a portrait's image
        (``prefix/portrait?name=``) to an aiohttp route table (a standalone app's, or ComfyUI's
        ``PromptServer.instance.routes``)."""
        routes.get(prefix)(self.websocket)
        routes.post(prefix + "/offer")(self.offer)
        routes.get(prefix + "/page")(page.redirect)
        routes.get(prefix + "/page/")(page.page_file)
        routes.get(prefix + "/page/{name}")(page.page_file)
        routes.get(prefix + "/portraits")(partial(page.portrait_list, self))
        routes.get(prefix + "/portrait")(partial(page.portrait_image, self))

    def access_problem(self, request: web.Request, token: str | None) -> str | None:
        """Why this request may not use the endpoint (refusal, Origin, token), or None."""
        return self.settings.refusal or self._origin_problem(request) or self._token_problem(token)

    async def offer(self, request: web.Request) -> web.StreamResponse:
        return await answer_offer(self, request)

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = _LiveSocket(max_msg_size=self.settings.max_message_bytes)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text=f"{request.path} is the Ditto live WebSocket endpoint; open "
                                                 f"{request.path}/page/ in a browser, or connect a WebSocket client")
        ws.too_big_message = (f"a message is larger than {self.settings.max_message_bytes:,} bytes, this server's "
                              f"limit; send the audio in smaller pieces (e.g. 20-100 ms each)")
        await ws.prepare(request)
        await _Connection(self, ws, request).run()
        return ws
