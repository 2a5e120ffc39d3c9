"""The WebRTC transport: a conversation with the avatar (aiortc; the browser's own echo cancellation, jitter
buffer and congestion control).

``POST <prefix>/offer`` takes ``{"type": "offer", "sdp": …}`` (plus the start message's optional ``portrait``,
``emotion``, ``seed``, ``token``) and answers ``{"type": "answer", "sdp": …}``. The client sends one audio track
(the microphone); the server sends one video track (the avatar at the portrait's size, 25 frames/s) and one audio
track (the speech each frame animates, in step with it). A data channel the client opens gets the session's ``ready``
and ``error`` messages (as on the WebSocket). The session lasts until the peer leaves: while no
speech comes, the motion model is fed silence (the avatar listens: calm motion, blinks), and speech that comes
later is spoken without a new connection. A microphone that stops sending is taken as silence after ``GAP_S``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import time
import uuid
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np
from aiohttp import web

from ..audio.clip import FPS, SAMPLE_RATE
from .protocol import LiveError, OfferRequest
from .session import LiveSession, _Timeline

if TYPE_CHECKING:
    from .service import LiveService

log = logging.getLogger("ditto.live")

SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: the speech one video frame shows
AUDIO_CHUNK = SAMPLE_RATE // 50  # 20-ms audio frames out
VIDEO_CLOCK = 90000  # RTP's video clock rate
GAP_S = 0.3  # no audio from the peer for this long: silence is fed in its place


class Pacer:
    """The wall-clock schedule both outgoing tracks follow: media time ``t`` is due at ``origin + t``. Media that
    comes later than that (the avatar fell behind) moves the schedule, so what follows keeps its pace."""

    SLACK_S = 0.1

    def __init__(self):
        self.origin: float | None = None

    async def wait(self, media_s: float) -> None:
        now = time.perf_counter()
        if self.origin is None or now > self.origin + media_s + self.SLACK_S:
            self.origin = now - media_s
        delay = self.origin + media_s - now
        if delay > 0:
            await asyncio.sleep(delay)


def _tracks():
    """The outgoing track classes (aiortc is imported only when a WebRTC session starts)."""
    import av
    from aiortc import MediaStreamTrack

    class AvatarVideo(MediaStreamTrack):
        """The avatar's frames, each sent when it is due; a frame's place is freed once it is sent."""

        kind = "video"

        def __init__(self, pacer: Pacer):
            super().__init__()
            self.pacer, self.frames = pacer, asyncio.Queue()

        async def recv(self):
            index, frame, sent = await self.frames.get()
            await self.pacer.wait(index / FPS)
            video = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video.pts, video.time_base = index * (VIDEO_CLOCK // FPS), Fraction(1, VIDEO_CLOCK)
            sent()
            return video

    class AvatarSpeech(MediaStreamTrack):
        """The speech the frames animate, 16-kHz mono in 20-ms frames, on the same schedule as the video."""

        kind = "audio"

        def __init__(self, pacer: Pacer):
            super().__init__()
            self.pacer, self.samples = pacer, asyncio.Queue()
            self._pending = np.zeros(0, np.float32)
            self._sent = 0

        async def recv(self):
            while len(self._pending) < AUDIO_CHUNK:
                self._pending = np.concatenate([self._pending, await self.samples.get()])
            chunk, self._pending = self._pending[:AUDIO_CHUNK], self._pending[AUDIO_CHUNK:]
            await self.pacer.wait(self._sent / SAMPLE_RATE)
            pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            audio = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            audio.sample_rate, audio.pts, audio.time_base = SAMPLE_RATE, self._sent, Fraction(1, SAMPLE_RATE)
            self._sent += AUDIO_CHUNK
            return audio

    return AvatarVideo, AvatarSpeech


class Conversation:
    """One WebRTC peer: its microphone feeds a LiveSession forever (silence included); the session's frames and
    the speech they show go out on the two tracks."""

    def __init__(self, service: "LiveService", request: OfferRequest):
        self.service, self.request = service, request
        self.name = uuid.uuid4().hex[:8]  # in the log, as aiortc's server example prefixes each connection
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.session: LiveSession | None = None
        self.pc = None
        self.channel = None  # the peer's data channel, if it opened one: "ready" and "error" go there
        self._untold: list[str] = []  # messages for it, waiting for it to open
        self.tasks: list[asyncio.Task] = []
        self.closed = asyncio.Event()
        self._speech = np.zeros(0, np.float32)  # the 16-kHz input not yet paired with a frame
        self._speech_start = 0  # its first sample's position in the conversation
        self._fed = 0  # samples fed so far
        self._clock: float | None = None  # when the first audio came

    async def answer(self) -> str:
        """Set up the peer connection and the session; the SDP answer."""
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        settings = self.service.settings
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(u) for u in settings.ice_servers]))
        video_class, speech_class = _tracks()
        pacer = Pacer()
        self.video, self.speech = video_class(pacer), speech_class(pacer)

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tasks.append(asyncio.ensure_future(self._listen(track)))

        @self.pc.on("datachannel")
        def on_channel(channel):
            self.channel = channel
            channel.on("open", self._flush)
            if channel.readyState == "open":
                self._flush()

        @self.pc.on("connectionstatechange")
        async def on_state():
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.request.sdp, type="offer"))
        except Exception as exc:  # aiortc's parser: a malformed or unsupported description
            raise LiveError(f"the offer's session description could not be used ({exc}); send the browser's own "
                            f"offer") from None
        kinds = [t.kind for t in self.pc.getTransceivers()]
        if kinds.count("audio") != 1 or kinds.count("video") != 1:
            raise LiveError("the offer must carry one audio track (the microphone) and receive one video track "
                            "(add a transceiver: pc.addTransceiver('video', {direction: 'recvonly'}))")
        self.pc.addTrack(self.video)
        self.pc.addTrack(self.speech)
        loop = asyncio.get_running_loop()
        self.session = self.service._open(self.request, loop, self.outbox, _Timeline(),
                                          lambda index, frame, device: ("frame", index, frame))
        self.tasks.append(asyncio.ensure_future(self._dispatch()))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        log.info("live %s: WebRTC session started", self.name)
        return self.pc.localDescription.sdp

    def _feed(self, samples: np.ndarray) -> None:
        now = time.perf_counter()
        if self._clock is None:
            self._clock = now
        self._fed += len(samples)
        self._speech = np.concatenate([self._speech, samples])
        self.session.feed(samples, now)
        if self.session.backlog_s > self.service.settings.max_backlog_s:
            raise LiveError(f"more than {self.service.settings.max_backlog_s:g} s of speech is waiting to be "
                            f"animated: this server is too slow for this session")

    def _fill_silence(self) -> None:
        """Feed silence for the time the peer sent nothing (beyond GAP_S), so the avatar keeps moving."""
        if self._clock is None:
            return
        behind = (time.perf_counter() - self._clock - GAP_S) * SAMPLE_RATE - self._fed
        if behind > 0:
            self._feed(np.zeros(int(behind), np.float32))

    async def _listen(self, track) -> None:
        """The microphone → 16-kHz mono samples → the session; silence in its place when it stops."""
        import av
        from aiortc.mediastreams import MediaStreamError

        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        live = True
        try:
            while True:
                if not live:
                    await asyncio.sleep(GAP_S / 3)
                    self._fill_silence()
                    continue
                try:
                    frame = await asyncio.wait_for(track.recv(), GAP_S)
                except asyncio.TimeoutError:
                    self._fill_silence()
                    continue
                except MediaStreamError:  # the peer stopped its track: it listens from now on
                    live = False
                    continue
                for out in resampler.resample(frame):
                    self._feed(out.to_ndarray().reshape(-1).astype(np.float32))
        except LiveError as exc:
            log.info("live %s: %s", self.name, exc)
            await self.close()
        except Exception:  # the traceback goes to the server's log; the peer is hung up on
            log.exception("live %s: the microphone track failed", self.name)
            await self.close()

    def _speech_for(self, index: int) -> np.ndarray:
        """The input samples frame ``index`` shows (the speech played with it)."""
        start = index * SAMPLES_PER_FRAME - self._speech_start
        samples = self._speech[start : start + SAMPLES_PER_FRAME]
        self._speech = self._speech[start + SAMPLES_PER_FRAME :]
        self._speech_start = (index + 1) * SAMPLES_PER_FRAME
        return np.pad(samples, (0, SAMPLES_PER_FRAME - len(samples)))

    async def _dispatch(self) -> None:
        """The session's frames onto the video track, each with its speech onto the audio track."""
        while True:
            kind, *rest = await self.outbox.get()
            if kind == "frame":
                index, frame = rest
                self.speech.samples.put_nowait(self._speech_for(index))
                self.video.frames.put_nowait((index, frame, self.session.credits.release))
            elif kind == "ready":
                self._tell(rest[0])
            elif kind == "error":
                log.info("live %s: %s", self.name, rest[0])
                self._tell({"type": "error", "message": rest[0]})
                await asyncio.sleep(0.2)  # for the message to leave before the connection closes
                await self.close()
                return

    def _tell(self, message: dict) -> None:
        self._untold.append(json.dumps(message))
        self._flush()

    def _flush(self) -> None:
        """Send what is waiting once the peer's data channel is open (the session may be ready before it)."""
        while self._untold and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(self._untold.pop(0))

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self.session is not None:
            self.session.stop()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        if self.pc is not None:
            await self.pc.close()
        self.service._conversations.discard(self)
        log.info("live %s: WebRTC session ended", self.name)


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"type": "error", "message": message}, status=status)


async def answer_offer(service: "LiveService", request: web.Request) -> web.StreamResponse:
    """``POST <prefix>/offer``: the same refusal, Origin, token and session limits as the WebSocket."""
    problem = service.settings.refusal or service._origin_problem(request)
    if problem:
        return _error(problem, 403)
    if request.content_length is not None and request.content_length > service.settings.max_message_bytes:
        return _error(f"the offer is larger than {service.settings.max_message_bytes:,} bytes", 413)
    conversation = None
    try:
        offer = OfferRequest.parse(await request.text())
        problem = service._token_problem(offer.token or request.query.get("token"))
        if problem:
            return _error(problem, 403)
        service.portraits.path(offer.portrait)  # a wrong name is told at once
        if importlib.util.find_spec("aiortc") is None:
            raise LiveError("WebRTC needs the aiortc package on the server (pip install aiortc); the WebSocket "
                            "endpoint works without it")
        conversation = Conversation(service, offer)
        service._conversations.add(conversation)
        sdp = await conversation.answer()
    except LiveError as exc:
        if conversation is not None:
            await conversation.close()
        message = str(exc)
        return _error(message, 503 if message.startswith("busy") else 400)
    except BaseException:  # anything else: nothing of this peer is left running, and aiohttp answers 500
        if conversation is not None:
            await conversation.close()
        raise
    return web.json_response({"type": "answer", "sdp": sdp})


async def close_all(service: "LiveService") -> None:
    """Close every WebRTC peer (the server is shutting down)."""
    await asyncio.gather(*(c.close() for c in list(service._conversations)))
