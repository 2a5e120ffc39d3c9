"""Live endpoint figures: a client streams speech over /ditto/live at speaking pace and measures what a person
would see: the first frame's delay (from the first audio byte sent), the steady frame rate, and how far behind
its speech each frame arrives.

    python bench/live.py [--seconds 6] [--sessions 1] [--official] [--device cuda] [--steps N]
    python bench/live.py --models DIR --portrait IMG [--device cuda]      # a real release
    python bench/live.py --url ws://HOST:PORT/ditto/live [--token T]      # a server already running
    python bench/live.py --webrtc [--sessions N] …                         # WebRTC sessions instead

Speech is the shipped sample (repeated to length), sent as s16le at 16 kHz in 20-ms messages on a fixed
schedule. By default the server runs in this process with the fake release (small test network sizes, quick on a
CPU; ``--official`` for official sizes, random weights) and the shipped portrait. ``--sessions N`` runs N clients
side by side: their frames are batched into one warp/decoder call by the device's render scheduler (admission by
measured capacity is off here, so that N sessions are measured even past realtime). The server's own split of the first frame's delay (look-ahead, waiting, sampling, rendering) is
printed beside the client's figures. Each session's bandwidth (kbit/s received) is printed too; with ``--webrtc``
the clients are aiortc peers (the speech as their microphone track, then silence: the avatar listens) and the
figures are the video frames received while the speech lasts, plus 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from load import machine_load  # noqa: E402  (bench/load.py)

from ditto_core.audio import load_audio  # noqa: E402
from ditto_core.live import FRAME_HEADER, LiveService, LiveSettings, PortraitLibrary, make_app  # noqa: E402
from ditto_core.motion import SamplerOptions  # noqa: E402

TARGETS = {"first frame after the speech it needs (ms)": 250, "frames/s sustained, one GPU": 25}
MESSAGE_S = 0.02


async def client(url: str, samples: np.ndarray, token: str | None) -> dict:
    """One session at speaking pace; client-side figures plus the server's ``done``."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    step = int(16000 * MESSAGE_S)
    received: list[tuple[int, float]] = []
    payload = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        start = {"type": "start", "sample_rate": 16000, "format": "s16le"}
        if token:
            start["token"] = token
        await ws.send_json(start)
        ready = await ws.receive_json()
        if ready["type"] != "ready":
            raise RuntimeError(ready.get("message", ready))
        began = time.perf_counter()

        async def speak():
            for k, offset in enumerate(range(0, len(pcm), step)):
                wait = began + k * MESSAGE_S - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                await ws.send_bytes(pcm[offset : offset + step].tobytes())
            await ws.send_json({"type": "end"})
            return time.perf_counter()

        speaking = asyncio.create_task(speak())
        done = None
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                (index,) = FRAME_HEADER.unpack_from(message.data)
                received.append((index, time.perf_counter()))
                payload += len(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                reply = json.loads(message.data)
                if reply["type"] == "error":
                    raise RuntimeError(reply["message"])
                if reply["type"] == "done":
                    done = reply
        ended = await speaking
    assert [i for i, _ in received] == list(range(len(received))), "frames out of order"
    first = received[0][1] - began
    # frame i shows speech up to (i + 1) / 25 s, sent at began + (i + 1) / 25 (speaking pace)
    lags = [t - began - (i + 1) / 25 for i, t in received]
    steady = (len(received) - 1) / (received[-1][1] - received[0][1]) if len(received) > 1 else None
    span = received[-1][1] - began
    return {"frames": len(received), "first_ms": first * 1000, "fps": steady, "lag_median_s": statistics.median(lags),
            "lag_max_s": max(lags), "after_end_s": received[-1][1] - ended, "server": done,
            "kbit_s": payload * 8 / span / 1000}


async def rtc_client(url: str, samples: np.ndarray, token: str | None) -> dict:
    """One WebRTC session (``url``: the server's …/ditto/live/offer): the speech as the microphone track at
    speaking pace; video frames received until the speech's length plus 2 s; figures as ``client``'s."""
    import soxr

    from ditto_core.live.rtc_client import RATE, SpeechTrack, bytes_received, offer, peer

    speech = soxr.resample(samples, 16000, RATE).astype(np.float32)
    microphone = SpeechTrack([speech])
    pc = peer(microphone)
    arrivals: list[float] = []

    async def read(track):
        while True:
            await track.recv()
            if track.kind == "video":
                arrivals.append(time.perf_counter())

    readers = []
    pc.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
    try:
        async with aiohttp.ClientSession() as http:
            status, answer = await offer(http, url, pc, **({"token": token} if token else {}))
        if status != 200:
            raise RuntimeError(answer.get("message", answer))
        deadline = time.perf_counter() + 30
        while microphone.began is None:  # the microphone starts once the connection is up
            if time.perf_counter() > deadline:
                raise RuntimeError("the WebRTC connection did not come up within 30 s")
            await asyncio.sleep(0.01)
        began = microphone.began
        await asyncio.sleep(len(samples) / 16000 + 2)
        received = await bytes_received(pc)
    finally:
        for reader in readers:
            reader.cancel()
        await pc.close()
    if not arrivals:
        raise RuntimeError("no video frame arrived")
    # frame i shows speech up to (i + 1) / 25 s, sent at began + (i + 1) / 25 (speaking pace)
    lags = [t - began - (i + 1) / 25 for i, t in enumerate(arrivals)]
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else None
    return {"frames": len(arrivals), "first_ms": (arrivals[0] - began) * 1000, "fps": steady,
            "lag_median_s": statistics.median(lags), "lag_max_s": max(lags),
            "after_end_s": arrivals[-1] - began - len(samples) / 16000, "server": None,
            "kbit_s": received * 8 / (time.perf_counter() - began) / 1000}


class Server:
    """The live app in a thread of its own, on a free port of 127.0.0.1."""

    def __init__(self, service: LiveService):
        self.service, self.ready = service, threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self):
        from aiohttp import web

        self.stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        runner = web.AppRunner(make_app(self.service))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"ws://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/ditto/live"
        self.ready.set()
        await self.stop.wait()
        await runner.cleanup()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def show(label: str, result: dict) -> None:
    server = result["server"] or {}
    split = server.get("first_frame_split_ms") or {}
    fps = "–" if result["fps"] is None else f"{result['fps']:.2f}"
    print(f"{label}: {result['frames']} frames")
    print(f"  first frame after the first audio byte   {result['first_ms']:8.0f} ms")
    if split:
        compute = split["waiting"] + split["sampling"] + split["rendering"]
        print(f"    = look-ahead {split['lookahead']:.0f} ms (speech the first frames need) + waiting "
              f"{split['waiting']:.0f} + sampling {split['sampling']:.0f} + rendering {split['rendering']:.0f} ms "
              f"(compute after the speech arrived: {compute:.0f} ms)")
    print(f"  steady frames/s (received)               {fps:>8}")
    print(f"  behind its speech: median {result['lag_median_s']:.2f} s, worst {result['lag_max_s']:.2f} s; last "
          f"frame {result['after_end_s']:.2f} s after the end of speech")
    print(f"  received                                 {result['kbit_s']:8.0f} kbit/s")
    if server:
        print(f"  server: {server.get('compute_fps')} frames/s of compute (sampling "
              f"{server.get('sampling_ms_per_frame')} + rendering {server.get('rendering_ms_per_frame')} ms a frame)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="speech per session (default %(default)s)")
    parser.add_argument("--sessions", type=int, default=1, help="clients side by side (default %(default)s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, help="diffusion steps (default: the online cfg's)")
    parser.add_argument("--official", action="store_true", help="official network sizes (slow on a CPU)")
    parser.add_argument("--models", help="a real release instead of the fake one")
    parser.add_argument("--portrait", default=str(ROOT / "assets" / "portrait.jpg"))
    parser.add_argument("--url", help="measure a server already running instead")
    parser.add_argument("--token")
    parser.add_argument("--webrtc", action="store_true", help="WebRTC sessions (aiortc clients) instead of WebSockets")
    args = parser.parse_args()

    speech = load_audio(ROOT / "assets" / "speech.wav")
    reps = int(np.ceil(args.seconds * 16000 / len(speech.samples)))
    samples = np.tile(speech.samples, reps)[: int(args.seconds * 16000)]

    async def run_clients(url: str) -> list[dict]:
        if args.webrtc:
            offer_url = url.replace("ws", "http", 1).rstrip("/") + "/offer"
            return await asyncio.gather(*[rtc_client(offer_url, samples, args.token) for _ in range(args.sessions)])
        return await asyncio.gather(*[client(url, samples, args.token) for _ in range(args.sessions)])

    what = (args.url or (args.models and f"release {args.models}") or
            f"fake release, {'official' if args.official else 'small test'} network sizes")
    print(f"machine: {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, device {args.device}; {what}; "
          f"{args.seconds:g} s of speech per session, {args.sessions} {'WebRTC' if args.webrtc else 'WebSocket'} "
          f"session(s), steps "
          f"{args.steps or 'as the online cfg'}")
    print(f"before: {machine_load()}")
    if args.url:
        results = asyncio.run(run_clients(args.url))
    else:
        from ditto_core.pipeline import DittoPipeline
        from ditto_core.testing.fake_release import write_fake_release

        with tempfile.TemporaryDirectory() as tmp:
            root = args.models or write_fake_release(tmp, small=not args.official)
            pipeline = DittoPipeline.load(root, args.device)
        settings = LiveSettings(max_sessions=args.sessions, admit_by_capacity=False,  # every session measured
                                sampler=SamplerOptions(steps=args.steps) if args.steps else None)
        service = LiveService(pipeline, PortraitLibrary(default=args.portrait), settings)
        service.portraits.get(None, pipeline)  # registered before the clock starts, as the server does
        with Server(service) as server:
            asyncio.run(client(server.url, samples[:16000], args.token))  # warm-up: first-call costs
            results = asyncio.run(run_clients(server.url))
    print(f"after: {machine_load()}")
    for n, result in enumerate(results):
        show(f"session {n + 1}", result)
    print(f"targets (one GPU): first frame ≤ {TARGETS['first frame after the speech it needs (ms)']} ms once the "
          f"speech it needs has arrived (the online cfg's look-ahead, about 0.9 s of speech, comes before it), "
          f"≥ {TARGETS['frames/s sustained, one GPU']} frames/s sustained" +
          ("" if args.device == "cuda" else "; this run is not on a GPU"))


if __name__ == "__main__":
    main()
