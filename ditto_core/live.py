"""Live: talk to the avatar. Speech streams in over a WebSocket, frames stream out as JPEGs as soon as they are made.

One aiohttp handler serves both the standalone server (``python -m ditto_core live``) and ComfyUI's own server
(``nodes/live.py`` adds the same routes to ``PromptServer.instance.routes``). The protocol (README, "Live"):

* client → server, first message, text: ``{"type": "start", "sample_rate": 16000, "format": "s16le"}``
  (``format`` ``s16le`` or ``f32le``, mono, any ``sample_rate`` from 8,000 to 96,000; optional ``portrait``,
  ``emotion``, ``seed``, ``token``); the server answers ``{"type": "ready", …}`` once the portrait is set up;
* client → server: binary messages of raw PCM in that format, any size; then text ``{"type": "end"}``;
* server → client: one binary message per frame, a 4-byte little-endian frame index then the JPEG of the full
  frame, in order, ⌈seconds × 25⌉ in all, then text ``{"type": "done", "frames": N, "first_frame_ms": …, …}``;
* any problem: text ``{"type": "error", "message": …}``, then the server closes the connection.

Each session's heavy work (feature encoding, motion sampling, rendering, JPEG encoding) runs in a worker thread of
its own, so the event loop only moves bytes; a session whose client goes away stops at its next motion window or
render batch and frees its place at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import math
import queue
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from .audio.clip import FPS, SAMPLE_RATE, num_video_frames

log = logging.getLogger("ditto.live")

ENDPOINT = "/ditto/live"
PAGE_DIR = Path(__file__).resolve().parent / "live_page"
FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 96000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
FRAME_HEADER = struct.Struct("<I")
START_EXAMPLE = '{"type": "start", "sample_rate": 16000, "format": "s16le"}'
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class LiveError(Exception):
    """A problem the client is told about (what is wrong and what to do); the connection then closes."""


class _Stopped(BaseException):
    """Raised inside a session's worker once it has been told to stop (client gone, server closing)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------------- audio


class PcmStream:
    """Raw PCM bytes (``s16le`` or ``f32le``, mono, any rate) in, 16-kHz float32 samples out.

    Messages may split samples anywhere. Other rates go through soxr's streaming resampler (the same samples as
    the one-shot resampler, whatever the chunking); a few samples are held back until :meth:`finish` so that the
    total is set exactly: the frames made from it are ⌈seconds × 25⌉ of the input's own duration.
    """

    HOLD = 16  # resampled samples kept back to settle the exact total at the end

    def __init__(self, fmt: str, rate: int):
        self.dtype = FORMATS[fmt]
        self.rate = rate
        self.samples_in = 0  # input samples (at ``rate``)
        self.samples_out = 0  # 16-kHz samples handed out
        self._partial = b""
        self._held = np.zeros(0, np.float32)
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    @property
    def seconds(self) -> float:
        return self.samples_in / self.rate

    @property
    def expected_frames(self) -> int:
        """⌈seconds × 25⌉ of the input so far, computed in floating point as the rest of the pack does."""
        return math.ceil(self.samples_in / self.rate * FPS)

    def _decode(self, data: bytes) -> np.ndarray:
        if self._partial:
            data = self._partial + data
        whole = len(data) - len(data) % self.dtype.itemsize
        self._partial = bytes(data[whole:])
        samples = np.frombuffer(data, self.dtype, count=whole // self.dtype.itemsize)
        if self.dtype.kind == "f":
            finite = np.isfinite(samples)
            if not finite.all():
                raise LiveError(f"the audio holds {int((~finite).sum())} NaN or infinite samples; f32le samples must "
                                f"be finite numbers, normally between -1 and 1")
            samples = samples.astype(np.float32)
        else:
            samples = samples.astype(np.float32) / 32768.0
        self.samples_in += len(samples)
        return samples

    def _release(self, pending: np.ndarray, keep: int) -> np.ndarray:
        cut = max(len(pending) - keep, 0)
        self._held = pending[cut:]
        self.samples_out += cut
        return pending[:cut]

    def push(self, data: bytes) -> np.ndarray:
        """The 16-kHz samples this message completes (possibly none)."""
        samples = self._decode(data)
        if self._resampler is None:
            self.samples_out += len(samples)
            return samples
        resampled = self._resampler.resample_chunk(samples)
        return self._release(np.concatenate([self._held, resampled]), self.HOLD)

    def finish(self) -> np.ndarray:
        """The last 16-kHz samples: afterwards exactly as many were handed out as give ⌈seconds × 25⌉ frames."""
        if self._partial:
            raise LiveError(f"the audio stopped in the middle of a sample ({len(self._partial)} stray byte(s)); send "
                            f"whole {self.dtype.itemsize}-byte samples")
        if self._resampler is None:
            return np.zeros(0, np.float32)
        pending = np.concatenate([self._held, self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
        self._held = np.zeros(0, np.float32)
        frames = self.expected_frames
        # the resampler rounds the total to the nearest sample; settle it to the input's own frame count
        while len(pending) and num_video_frames(self.samples_out + len(pending)) > frames:
            pending = pending[:-1]
        padding = 0
        while num_video_frames(self.samples_out + len(pending) + padding) < frames:
            padding += 1
        pending = np.concatenate([pending, np.zeros(padding, np.float32)])
        self.samples_out += len(pending)
        return pending


# ----------------------------------------------------------------------------------------------- models, portraits


class PipelineSource:
    """The pipeline, loaded once on first use (in a session's worker thread) and shared by every session."""

    def __init__(self, pipeline):
        self._value = None if callable(pipeline) else pipeline
        self._load = pipeline if callable(pipeline) else None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._value is None:
                self._value = self._load()
            return self._value


class PortraitLibrary:
    """Portraits by file name: images in ``folder`` (ComfyUI's input/) and/or one ``default`` image; each is
    registered once and kept (the ``cache_size`` most recent)."""

    def __init__(self, folder: str | Path | None = None, default: str | Path | None = None, cache_size: int = 4):
        self.folder = Path(folder).resolve() if folder is not None else None
        self.default = Path(default).resolve() if default is not None else None
        self.cache_size = cache_size
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def names(self, limit: int = 500) -> list[str]:
        found = [self.default.name] if self.default is not None else []
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.rglob("*")):
                if len(found) >= limit:
                    break
                relative = path.relative_to(self.folder)
                if (path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
                        and not any(part.startswith(".") for part in relative.parts)):
                    found.append(relative.as_posix())
        return list(dict.fromkeys(found))

    def path(self, name: str | None) -> Path:
        if name is None or (self.default is not None and name == self.default.name):
            if self.default is None:
                raise LiveError("say which portrait to animate: add \"portrait\": \"<image file name>\" to the start "
                                "message (an image in ComfyUI's input folder, e.g. one uploaded with Load Image)")
            return self.default
        if self.folder is None:
            raise LiveError(f"portrait {name!r} is not offered: this server animates only {self.default.name}; leave "
                            f"\"portrait\" out (or start it with --portraits DIR to offer the images of a folder)")
        if not isinstance(name, str) or not name or len(name) > 512 or "\x00" in name:
            raise LiveError("\"portrait\" must be an image file name")
        path = (self.folder / name).resolve()
        if self.folder not in path.parents:
            raise LiveError(f"portrait {name!r} is outside the portraits folder; give a file name inside it")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise LiveError(f"portrait {name!r} is not an image ({', '.join(IMAGE_EXTENSIONS)})")
        if not path.is_file():
            raise LiveError(f"portrait {name!r} not found in the portraits folder; the page lists the ones there")
        return path

    def get(self, name: str | None, pipeline):
        path = self.path(name)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size, id(pipeline))
        with self._lock:  # one registration at a time; the result is shared
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            portrait = pipeline.register(str(path))
            self._cache[key] = portrait
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return portrait


# -------------------------------------------------------------------------------------------------------- settings


@dataclass
class LiveSettings:
    """How the live endpoint behaves; see ``python -m ditto_core live --help``."""

    max_sessions: int = 2
    token: str | None = None  # when set, every session must send it (start message or ?token=)
    allowed_origins: tuple[str, ...] = ()  # page origins allowed besides the server's own
    refusal: str | None = None  # when set, every connection gets this error (e.g. exposed without a token)
    max_message_bytes: int = 1 << 20
    idle_timeout_s: float = 60.0  # no message for this long: the session ends with an error
    max_backlog_s: float = 600.0  # audio received but not yet processed
    max_unsent_frames: int = 100  # frames made but not yet sent (the worker waits when the client reads slowly)
    jpeg_quality: int = 85
    sampler: object = None  # SamplerOptions: None keeps the release's online cfg (the seed comes from the client)
    render: object = None  # RenderOptions: None keeps the release's online cfg
    default_emotion: str | None = None


@dataclass
class StartRequest:
    sample_rate: int
    format: str
    portrait: str | None = None
    emotion: str | None = None
    seed: int = 0
    token: str | None = None

    @classmethod
    def parse(cls, text: str) -> "StartRequest":
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            raise LiveError(f"the first message must be a JSON start message like {START_EXAMPLE}; got text that is "
                            f"not JSON") from None
        if not isinstance(message, dict) or message.get("type") != "start":
            raise LiveError(f"the first message must be a start message like {START_EXAMPLE}")
        rate, fmt = message.get("sample_rate"), message.get("format")
        if isinstance(rate, float) and rate.is_integer():
            rate = int(rate)
        if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
            raise LiveError(f"\"sample_rate\" must be a whole number of samples per second from {MIN_RATE:,} to "
                            f"{MAX_RATE:,}; got {rate!r}")
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise LiveError(f"\"format\" must be \"s16le\" (16-bit signed little-endian) or \"f32le\" (32-bit float "
                            f"little-endian), mono; got {fmt!r}")
        for key in ("portrait", "emotion", "token"):
            if message.get(key) is not None and not isinstance(message[key], str):
                raise LiveError(f"\"{key}\" must be a string")
        seed = message.get("seed", 0)
        if seed is None:
            seed = 0
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise LiveError(f"\"seed\" must be a whole number ≥ 0; got {seed!r}")
        return cls(rate, fmt, message.get("portrait"), message.get("emotion"), seed, message.get("token"))


# --------------------------------------------------------------------------------------------------------- session


_END = object()
_STOP = object()


@dataclass
class _Timeline:
    """When things happened in one session (perf_counter seconds), for the ``done`` figures."""

    first_audio: float | None = None  # the first audio byte received
    arrivals: deque = field(default_factory=deque)  # (input seconds received so far, when), oldest first
    first_frame_sent: float | None = None
    last_frame_sent: float | None = None
    lags: list = field(default_factory=list)  # per frame: sent − arrival of the audio it shows
    split: dict = field(default_factory=dict)  # the first frame: when its audio was there, taken, sampled

    def audio_arrival(self, seconds: float) -> float | None:
        """When the audio up to ``seconds`` had arrived (asked for in increasing order: older entries go)."""
        while len(self.arrivals) > 1 and self.arrivals[0][0] < seconds - 1e-9:
            self.arrivals.popleft()
        return self.arrivals[0][1] if self.arrivals else None


class LiveSession:
    """One client's session: a worker thread fed 16-kHz samples, its frames handed to the event loop."""

    def __init__(self, service: "LiveService", start: StartRequest, loop: asyncio.AbstractEventLoop,
                 outbox: asyncio.Queue, timeline: _Timeline):
        self.service, self.start, self.loop, self.outbox, self.timeline = service, start, loop, outbox, timeline
        self.inbox: queue.Queue = queue.Queue()
        self.stopped = threading.Event()
        self.credits = threading.Semaphore(service.settings.max_unsent_frames)
        self.samples_fed = 0
        self.samples_done = 0
        self.frames_made = 0
        self.thread = threading.Thread(target=self._run, name="ditto-live-session", daemon=True)

    # called on the event loop
    def feed(self, samples: np.ndarray, arrived: float) -> None:
        self.samples_fed += len(samples)
        self.inbox.put((samples, arrived))

    def end(self, samples: np.ndarray, arrived: float) -> None:
        self.feed(samples, arrived)
        self.inbox.put(_END)

    def stop(self) -> None:
        """Free the session's place now and stop its worker at its next motion window or render batch."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.service._release(self, worker_done=False)
        self.inbox.put(_STOP)
        for _ in range(self.service.settings.max_unsent_frames + 1):
            self.credits.release()

    @property
    def backlog_s(self) -> float:
        return (self.samples_fed - self.samples_done) / SAMPLE_RATE

    # worker thread
    def _emit(self, item) -> None:
        try:
            self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)
        except RuntimeError:  # the loop is gone: the server is shutting down
            self.stopped.set()

    def _check(self) -> None:
        if self.stopped.is_set():
            raise _Stopped()

    def _send_frame(self, frame: np.ndarray) -> None:
        import cv2

        while not self.credits.acquire(timeout=0.1):
            self._check()
        self._check()
        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, self.service.settings.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        self._emit(("frame", self.frames_made, FRAME_HEADER.pack(self.frames_made) + jpeg.tobytes()))
        self.frames_made += 1

    def _take(self) -> tuple[np.ndarray, float | None, bool]:
        """Everything queued: the samples joined (a session behind realtime catches up in bigger pushes), when
        the last of them arrived, and whether the speech has ended."""
        items = [self.inbox.get()]
        while True:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        if any(item is _STOP for item in items):
            raise _Stopped()
        chunks = [item[0] for item in items if item is not _END]
        arrived = max((item[1] for item in items if item is not _END), default=None)
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return samples, arrived, any(item is _END for item in items)

    def _frames(self, session, samples: np.ndarray, ended: bool) -> Iterator[np.ndarray]:
        yield from session.push_frames(samples)
        if ended and session.stream.features.num_samples:
            yield from session.finish_frames()

    def _run(self) -> None:
        import torch

        from .motion.sampler import SamplerOptions
        from .online import OnlineSession

        settings = self.service.settings
        try:
            with torch.inference_mode():
                pipeline = self.service.pipelines.get()
                self._check()
                portrait = self.service.portraits.get(self.start.portrait, pipeline)
                self._check()
                sampler = replace(settings.sampler or SamplerOptions(), seed=self.start.seed)
                emotion = self.start.emotion if self.start.emotion is not None else settings.default_emotion
                session = OnlineSession(pipeline, portrait, emotion, sampler, settings.render, check=self._check)
                height, width = portrait.images[0].shape[:2]
                if session.render_options.paste_back is False:
                    height = width = 512
                self._emit(("ready", {"type": "ready", "fps": FPS, "width": int(width), "height": int(height),
                                      "portrait": self.service.portraits.path(self.start.portrait).name,
                                      "max_message_bytes": settings.max_message_bytes}))
                while True:
                    samples, arrived, ended = self._take()
                    taken = time.perf_counter()
                    sampling_before = session.stats.sampling_s
                    for frame in self._frames(session, samples, ended):
                        if self.frames_made == 0:
                            self.timeline.split = {"audio_ready": arrived, "taken": taken,
                                                   "sampling": session.stats.sampling_s - sampling_before}
                        self._send_frame(frame)
                    self.samples_done += len(samples)
                    if ended:
                        stats = session.stats
                        self._emit(("done", {"frames": self.frames_made, "sampling_s": stats.sampling_s,
                                             "rendering_s": stats.rendering_s}))
                        return
        except _Stopped:
            pass
        except LiveError as exc:
            self._emit(("error", str(exc)))
        except Exception as exc:  # the message reaches the client; the traceback goes to the server's log
            log.exception("live session failed")
            self._emit(("error", f"{exc}" if _is_user_error(exc) else
                        f"the server failed while making frames ({type(exc).__name__}: {exc}); see the server's log"))
        finally:
            self.service._release(self, worker_done=True)


def _is_user_error(exc: Exception) -> bool:
    """Errors whose message already says what is wrong and what to do (missing files, no face, bad emotion)."""
    from .audio import AudioInputError
    from .config_pickle import ConfigFileError
    from .models import CheckpointError
    from .motion import ConditionError
    from .portrait import FaceModelError, NoFaceError, PortraitInputError

    return isinstance(exc, (AudioInputError, ConfigFileError, CheckpointError, ConditionError, FaceModelError,
                            NoFaceError, PortraitInputError, FileNotFoundError))


# --------------------------------------------------------------------------------------------------------- service


class _LiveSocket(web.WebSocketResponse):
    """A WebSocket that tells the client why before aiohttp closes it for an oversized message."""

    too_big_message = ""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed and self.too_big_message:
            with contextlib.suppress(Exception):
                await self.send_str(json.dumps({"type": "error", "message": self.too_big_message}))
            self.too_big_message = ""
        return await super().close(code=code, message=message, drain=drain)


class LiveService:
    """The live endpoint: the WebSocket handler, the page and the list of portraits, for any aiohttp app.

    ``pipeline``: a loaded DittoPipeline, or a function that loads one (called once, on the first session).
    """

    def __init__(self, pipeline, portraits: PortraitLibrary, settings: LiveSettings | None = None):
        self.pipelines = PipelineSource(pipeline)
        self.portraits = portraits
        self.settings = settings or LiveSettings()
        self._sessions: set[LiveSession] = set()  # the places taken (freed when the client goes)
        self._workers: set[LiveSession] = set()  # the workers still running (a stopped one ends within a batch)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    # ---- sessions
    @property
    def active_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _open(self, start: StartRequest, loop, outbox, timeline) -> LiveSession:
        with self._lock:
            if len(self._sessions) >= self.settings.max_sessions:
                raise LiveError(f"busy: {len(self._sessions)} live session(s) are running, the most this server "
                                f"runs side by side (--max-sessions); try again when one has ended")
            session = LiveSession(self, start, loop, outbox, timeline)
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
        self.stop_all()
        await asyncio.to_thread(self.wait_idle, 10.0)

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
        """Add the WebSocket endpoint (``prefix``), the page (``prefix/page/``) and the portrait list
        (``prefix/portraits``) to an aiohttp route table (a standalone app's, or ComfyUI's
        ``PromptServer.instance.routes``)."""
        routes.get(prefix)(self.websocket)
        routes.get(prefix + "/page")(self._page_redirect)
        routes.get(prefix + "/page/")(self.page)
        routes.get(prefix + "/page/{name}")(self.page)
        routes.get(prefix + "/portraits")(self.portrait_list)

    async def _page_redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(request.rel_url.path + "/" + (f"?{request.query_string}" if request.query_string else ""))

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        files = {p.name: p for p in PAGE_DIR.iterdir() if p.is_file()}
        if name not in files:
            raise web.HTTPNotFound(text=f"no page file {name}")
        path = files[name]
        return web.Response(body=path.read_bytes(), content_type=CONTENT_TYPES.get(path.suffix, "text/plain"),
                            charset="utf-8", headers={"Cache-Control": "no-cache"})

    async def portrait_list(self, request: web.Request) -> web.StreamResponse:
        problem = self._origin_problem(request) or self._token_problem(request.query.get("token"))
        if self.settings.refusal or problem:
            return web.json_response({"error": self.settings.refusal or problem}, status=403)
        names = await asyncio.to_thread(self.portraits.names)
        default = self.portraits.default.name if self.portraits.default is not None else None
        return web.json_response({"portraits": names, "default": default, "max_sessions": self.settings.max_sessions,
                                  "active_sessions": self.active_sessions})

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


class _Connection:
    """One WebSocket client: the protocol, with the session's worker behind it."""

    def __init__(self, service: LiveService, ws: _LiveSocket, request: web.Request):
        self.service, self.ws, self.request = service, ws, request
        self.settings = service.settings
        self.session: LiveSession | None = None
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.timeline = _Timeline()
        self.pcm: PcmStream | None = None
        self.ended = False
        self.frames_sent = 0

    async def _receive(self):
        try:
            message = await self.ws.receive(timeout=None if self.ended else self.settings.idle_timeout_s)
        except asyncio.TimeoutError:
            raise LiveError(f"no message for {self.settings.idle_timeout_s:g} s; the session was closed (send "
                            f"audio continuously, silence included, and end with {{\"type\": \"end\"}})") from None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        return message

    async def run(self) -> None:
        sender = None
        try:
            problem = (self.settings.refusal or self.service._origin_problem(self.request))
            if problem:
                raise LiveError(problem)
            message = await self._receive()
            if message is None:
                return
            if message.type is WSMsgType.BINARY:
                raise LiveError(f"audio arrived before the start message; send {START_EXAMPLE} first")
            start = StartRequest.parse(message.data)
            problem = self.service._token_problem(start.token or self.request.query.get("token"))
            if problem:
                raise LiveError(problem)
            self.pcm = PcmStream(start.format, start.sample_rate)
            self.service.portraits.path(start.portrait)  # a wrong name is told at once
            self.session = self.service._open(start, asyncio.get_running_loop(), self.outbox, self.timeline)
            sender = asyncio.ensure_future(self._send())
            receiver = asyncio.ensure_future(self._read())
            done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in (sender, receiver):  # a worker's error, else a client's protocol error
                if task in done:
                    task.result()
        except LiveError as exc:
            await self._fail(str(exc))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
            if self.session is not None:
                self.session.stop()
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await self.ws.close()

    async def _fail(self, message: str) -> None:
        log.info("live session error: %s", message)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.send_str(json.dumps({"type": "error", "message": message}))
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER if message.startswith("busy")
                                    else WSCloseCode.POLICY_VIOLATION)

    async def _read(self) -> None:
        """Client messages after start; returns when the client has gone, raises LiveError on a bad message."""
        session, pcm = self.session, self.pcm
        while True:
            message = await self._receive()
            if message is None:
                return
            now = time.perf_counter()
            if message.type is WSMsgType.BINARY:
                if self.ended:
                    raise LiveError("audio arrived after {\"type\": \"end\"}; start a new connection for more speech")
                if self.timeline.first_audio is None and len(message.data):
                    self.timeline.first_audio = now
                samples = pcm.push(message.data)
                self.timeline.arrivals.append((pcm.seconds, now))
                session.feed(samples, now)
                if session.backlog_s > self.settings.max_backlog_s:
                    raise LiveError(f"more than {self.settings.max_backlog_s:g} s of audio is waiting to be "
                                    f"processed; send audio at speaking pace")
            elif message.type is WSMsgType.TEXT:
                try:
                    data = json.loads(message.data)
                except (ValueError, RecursionError):
                    raise LiveError("a text message that is not JSON; after start only binary audio and "
                                    "{\"type\": \"end\"} are expected") from None
                kind = data.get("type") if isinstance(data, dict) else None
                if kind == "end" and not self.ended:
                    self.ended = True
                    self.timeline.arrivals.append((pcm.seconds, now))
                    session.end(pcm.finish(), now)
                elif kind == "start":
                    raise LiveError("a second start message; one connection carries one session")
                elif kind == "end":
                    raise LiveError("a second {\"type\": \"end\"}")
                else:
                    raise LiveError(f"unknown message type {kind!r}; after start send binary audio, then "
                                    f"{{\"type\": \"end\"}}")

    async def _send(self) -> None:
        """Frames and messages from the worker to the client; returns after ``done``, raises on an error."""
        timeline = self.timeline
        while True:
            kind, *rest = await self.outbox.get()
            if kind == "frame":
                index, payload = rest
                await self.ws.send_bytes(payload)
                self.session.credits.release()
                now = time.perf_counter()
                if timeline.first_frame_sent is None:
                    timeline.first_frame_sent = now
                timeline.last_frame_sent = now
                arrival = timeline.audio_arrival((index + 1) / FPS)
                if arrival is not None:
                    timeline.lags.append(now - arrival)
                self.frames_sent += 1
            elif kind == "ready":
                await self.ws.send_str(json.dumps(rest[0]))
            elif kind == "error":
                raise LiveError(rest[0])
            elif kind == "done":
                await self.ws.send_str(json.dumps(self._done_message(rest[0])))
                await self.ws.close()
                return

    def _done_message(self, worker: dict) -> dict:
        t = self.timeline
        ms = lambda seconds: None if seconds is None else round(seconds * 1000, 1)  # noqa: E731
        message = {"type": "done", "frames": worker["frames"], "audio_s": round(self.pcm.seconds, 4),
                   "first_frame_ms": None, "fps": None, "lag_ms": None, "max_lag_ms": None,
                   "compute_fps": None, "first_frame_split_ms": None}
        if t.first_frame_sent is not None and t.first_audio is not None:
            message["first_frame_ms"] = ms(t.first_frame_sent - t.first_audio)
            split = t.split
            if split.get("audio_ready") is not None:
                sampling = split["sampling"]
                message["first_frame_split_ms"] = {
                    "lookahead": ms(split["audio_ready"] - t.first_audio),
                    "waiting": ms(split["taken"] - split["audio_ready"]),
                    "sampling": ms(sampling),
                    "rendering": ms(t.first_frame_sent - split["taken"] - sampling),
                }
        if worker["frames"] > 1 and t.last_frame_sent > t.first_frame_sent:
            message["fps"] = round((worker["frames"] - 1) / (t.last_frame_sent - t.first_frame_sent), 2)
        busy = worker["sampling_s"] + worker["rendering_s"]
        if worker["frames"] and busy > 0:
            message["compute_fps"] = round(worker["frames"] / busy, 2)
            message["sampling_ms_per_frame"] = ms(worker["sampling_s"] / worker["frames"])
            message["rendering_ms_per_frame"] = ms(worker["rendering_s"] / worker["frames"])
        if t.lags:
            message["lag_ms"] = ms(float(np.median(t.lags)))
            message["max_lag_ms"] = ms(max(t.lags))
        return message


# ------------------------------------------------------------------------------------------------------ standalone


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
