"""The WebSocket transport: one connection carries one clip, speaking the protocol of ``protocol.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from ..audio.clip import FPS
from .pcm import PcmStream
from .protocol import START_EXAMPLE, LiveError, StartRequest
from .session import LiveSession, _Timeline

if TYPE_CHECKING:
    from .service import LiveService

log = logging.getLogger("ditto.live")


class _LiveSocket(web.WebSocketResponse):
    """A WebSocket that tells the client why before aiohttp closes it for an oversized message."""

    too_big_message = ""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not self.closed and self.too_big_message:
            with contextlib.suppress(Exception):
                await self.send_str(json.dumps({"type": "error", "message": self.too_big_message}))
            self.too_big_message = ""
        return await super().close(code=code, message=message, drain=drain)


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
            jpeg = self.service.jpeg
            self.session = self.service._open(start, asyncio.get_running_loop(), self.outbox, self.timeline,
                                              lambda index, frame, device: ("frame", index,
                                                                            jpeg.submit(index, frame, device)))
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
                except ValueError:
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
                index, message = rest
                await self.ws.send_bytes(await asyncio.wrap_future(message))
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
