"""A WebRTC client for programs (tests, bench/live.py, a voice agent): speech from arrays as the microphone track,
the avatar's video and speech received through aiortc. Needs aiortc (imported with this module)."""

from __future__ import annotations

import asyncio
import fractions
import time

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

RATE = 48000  # what a browser's microphone track carries
CHUNK = RATE // 50  # 20 ms


class SpeechTrack(MediaStreamTrack):
    """A microphone track that plays ``script``: float32 sample arrays at 48 kHz (speech) and numbers of seconds
    (the microphone sends nothing, as when muted), in 20-ms frames at speaking pace; after the script it sends
    nothing."""

    kind = "audio"

    def __init__(self, script):
        super().__init__()
        self.script, self.sent, self.began = list(script), 0, None

    async def recv(self):
        if self.began is None:
            self.began = time.perf_counter()
        while self.script and not isinstance(self.script[0], np.ndarray):
            await asyncio.sleep(self.script.pop(0))
            self.began = time.perf_counter() - self.sent / RATE  # the pause is not made up for afterwards
        if not self.script:
            await asyncio.Event().wait()  # muted for good
        samples, self.script[0] = self.script[0][:CHUNK], self.script[0][CHUNK:]
        if not len(self.script[0]):
            self.script.pop(0)
        await asyncio.sleep(max(0.0, self.began + self.sent / RATE - time.perf_counter()))
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.sent, fractions.Fraction(1, RATE)
        self.sent += len(samples)
        return frame


def peer(track: MediaStreamTrack | None) -> RTCPeerConnection:
    """A peer connection (host candidates only) sending ``track`` and receiving one video track."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if track is not None:
        pc.addTrack(track)
    pc.addTransceiver("video", direction="recvonly")
    return pc


async def offer(http, url: str, pc: RTCPeerConnection, **options) -> tuple[int, dict]:
    """POST ``pc``'s offer to ``url`` (``…/ditto/live/offer``) with the start options (``portrait``, ``seed``,
    ``token``, …); on an answer, it is set on ``pc``. The HTTP status and the reply."""
    await pc.setLocalDescription(await pc.createOffer())
    reply = await http.post(url, json={"type": "offer", "sdp": pc.localDescription.sdp, **options})
    answer = await reply.json()
    if answer.get("type") == "answer":
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return reply.status, answer


async def bytes_received(pc: RTCPeerConnection) -> int:
    """Bytes received so far over the connection (video, audio and their RTCP; aiortc counts them per transport)."""
    return sum(s.bytesReceived for s in (await pc.getStats()).values() if s.type == "transport")
