"""The WebRTC transport with an aiortc client over loopback: the speech file as the client's microphone track,
video frames at the portrait's size and the speech back on an audio track, frames that keep coming after the
speech ends (the avatar listens), a second utterance spoken without reconnecting; the offer's errors and limits."""

import asyncio

import aiortc
import numpy as np
import soundfile
from live_client import (  # noqa: F401  (pipeline, portrait_file: fixtures, used by name)
    ROOT,
    SIZE,
    make_service,
    pipeline,
    portrait_file,
    serve_and,
)

from ditto_core.live.rtc_client import RATE, SpeechTrack, offer, peer
from ditto_core.live.webrtc import GAP_S


def utterance(start_s: float, seconds: float) -> np.ndarray:
    samples, rate = soundfile.read(ROOT / "assets" / "speech.wav", dtype="float32")
    samples = samples if samples.ndim == 1 else samples.mean(axis=1)
    piece = samples[int(start_s * rate) : int((start_s + seconds) * rate)]
    import soxr

    return soxr.resample(piece, rate, RATE).astype(np.float32)


async def converse(client, script, frames_wanted: int, timeout: float = 120):
    """Talk with ``script`` as the microphone until ``frames_wanted`` video frames came; the frames' sizes and the
    speech received (48 kHz mono), and what the data channel said."""
    pc = peer(SpeechTrack(script))
    channel = pc.createDataChannel("ditto")
    said = []
    channel.on("message", lambda message: said.append(message))
    sizes, speech, enough = [], [], asyncio.Event()

    async def read(track):
        while True:
            frame = await track.recv()
            if track.kind == "video":
                sizes.append((frame.height, frame.width))
                if len(sizes) >= frames_wanted:
                    enough.set()
            else:
                speech.append(frame.to_ndarray().reshape(-1, len(frame.layout.channels)).mean(axis=1) / 32768)

    readers = []
    pc.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
    status, answer = await offer(client, "/ditto/live/offer", pc, seed=1)
    assert status == 200 and answer["type"] == "answer", answer
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    finally:
        for reader in readers:
            reader.cancel()
        await pc.close()
    return sizes, np.concatenate(speech) if speech else np.zeros(0), said


def loud_runs(samples: np.ndarray, rate: int = RATE, window_s: float = 0.05, bridge_s: float = 0.6) -> list:
    """(start, end) seconds of the stretches with sound, pauses shorter than ``bridge_s`` bridged."""
    n = int(rate * window_s)
    rms = np.sqrt(np.mean(samples[: len(samples) // n * n].reshape(-1, n) ** 2, axis=1))
    loud = np.flatnonzero(rms > 0.02)
    runs = []
    for index in loud:
        if runs and (index - runs[-1][1]) * window_s <= bridge_s:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return [(a * window_s, (b + 1) * window_s) for a, b in runs]


def test_a_conversation_over_webrtc(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file)
    first, second = utterance(0.3, 1.2), utterance(2.0, 1.2)
    # speak, fall silent (the microphone sends nothing) for 1.6 s, speak again, then listen
    script = [first, 1.6, second]
    wanted = int((1.2 + 1.6 + 1.2 + 1.5) * 25)  # 1.5 s after the second utterance: the avatar is listening

    sizes, speech, said = serve_and(service, lambda client: converse(client, script, wanted))
    assert len(sizes) >= wanted and set(sizes) == {(SIZE, SIZE)}
    assert '"type": "ready"' in said[0]
    runs = loud_runs(speech)
    assert len(runs) == 2, runs  # both utterances came back, each with its frames, one connection
    (a0, a1), (b0, b1) = runs
    assert 0.7 < a1 - a0 < 1.6 and 0.7 < b1 - b0 < 1.6
    # the pause, less what the server waits (GAP_S) before it takes a silent microphone for silence, give or take
    # the packets' timing over loopback on a busy machine (a CI runner measured 0.95 s)
    assert 1.6 - GAP_S - 0.6 < b0 - a1 < 1.6 + 0.6
    assert service.wait_idle(30) and service.active_sessions == 0


def test_offer_errors_and_limits(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file, token="s3cret", max_sessions=1)

    async def post(client, body, **headers):
        reply = await client.post("/ditto/live/offer", data=body, headers=headers)
        return reply.status, (await reply.json())["message"]

    async def body(client):
        said = {
            "not json": await post(client, "hello"),
            "not offer": await post(client, '{"type": "start"}'),
            "no sdp": await post(client, '{"type": "offer", "sdp": 3, "token": "s3cret"}'),
            "no token": await post(client, '{"type": "offer", "sdp": "v=0"}'),
            "origin": await post(client, '{"type": "offer", "sdp": "v=0"}', Origin="http://evil.example"),
            "portrait": await post(client, '{"type": "offer", "sdp": "v=0", "token": "s3cret", "portrait": "x.png"}'),
        }
        pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        pc.addTransceiver("audio", direction="sendonly")  # no video asked for
        said["no video"] = await offer(client, "/ditto/live/offer", pc, token="s3cret")
        await pc.close()
        # one session runs (a WebSocket's); the offer is told the server is busy
        ws = await client.ws_connect("/ditto/live")
        await ws.send_json({"type": "start", "sample_rate": 16000, "format": "s16le", "token": "s3cret"})
        await ws.receive_json()
        pc = peer(SpeechTrack([]))
        said["busy"] = await offer(client, "/ditto/live/offer", pc, token="s3cret")
        await pc.close()
        await ws.close()
        return said

    said = serve_and(service, body)
    assert said["not json"][0] == 400 and "not JSON" in said["not json"][1]
    assert said["not offer"][0] == 400 and '"type": "offer"' in said["not offer"][1]
    assert said["no sdp"][0] == 400 and "createOffer" in said["no sdp"][1]
    assert said["no token"][0] == 403 and "access token" in said["no token"][1]
    assert said["origin"][0] == 403 and "--allow-origin" in said["origin"][1]
    assert said["portrait"][0] == 400 and "x.png" in said["portrait"][1]
    status, reply = said["no video"]
    assert status == 400 and "video" in reply["message"]
    status, reply = said["busy"]
    assert status == 503 and reply["message"].startswith("busy")
    assert service.wait_idle(30)
