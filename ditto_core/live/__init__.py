"""Live: talk to the avatar. Speech streams in, frames stream out as soon as they are made: over WebRTC as a
conversation (``webrtc.py``: the avatar listens between utterances, until the peer leaves), or over a WebSocket as
one clip of JPEG frames.

One aiohttp handler serves both the standalone server (``python -m ditto_core live``) and ComfyUI's own server
(``nodes/live.py`` adds the same routes to ``PromptServer.instance.routes``). The WebSocket protocol (README,
"Live"):

* client → server, first message, text: ``{"type": "start", "sample_rate": 16000, "format": "s16le"}``
  (``format`` ``s16le`` or ``f32le``, mono, any ``sample_rate`` from 8,000 to 96,000; optional ``portrait``,
  ``emotion``, ``seed``, ``token``); the server answers ``{"type": "ready", …}`` once the portrait is set up;
* client → server: binary messages of raw PCM in that format, any size; then text ``{"type": "end"}``;
* server → client: one binary message per frame, a 4-byte little-endian frame index then the JPEG of the full
  frame, in order, ⌈seconds × 25⌉ in all, then text ``{"type": "done", "frames": N, "first_frame_ms": …, …}``;
* any problem: text ``{"type": "error", "message": …}``, then the server closes the connection.

Each session's audio encoding and motion sampling run in a worker thread of its own; one render scheduler per
device batches every session's frames into one warp/decoder call; JPEGs are encoded off that thread. The event
loop only moves bytes; a session whose client goes away stops at its next motion window or render batch and frees
its place at once.

Modules, one job each: ``protocol`` (start message, offer, frame header, errors), ``pcm`` (client PCM → 16 kHz),
``portraits`` (shared pipeline and portraits), ``settings``, ``session`` (a session's worker), ``scheduler`` (the
per-device render batching and the measured cost per frame), ``jpeg`` (the WebSocket's JPEG encoding),
``websocket`` and ``webrtc`` (the transports), ``page`` (the page and portrait routes), ``service`` (sessions,
admission, access rules, routes), ``app`` (the standalone server).
"""

from .app import make_app, serve
from .pcm import PcmStream
from .portraits import PipelineSource, PortraitLibrary
from .protocol import ENDPOINT, FRAME_HEADER, LiveError, StartRequest
from .service import LiveService
from .session import LiveSession
from .settings import LiveSettings, is_loopback

__all__ = [
    "ENDPOINT",
    "FRAME_HEADER",
    "LiveError",
    "LiveService",
    "LiveSession",
    "LiveSettings",
    "PcmStream",
    "PipelineSource",
    "PortraitLibrary",
    "StartRequest",
    "is_loopback",
    "make_app",
    "serve",
]
