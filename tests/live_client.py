"""What the live tests share: the models and portrait fixtures, a service on a real aiohttp test server, speech,
and a WebSocket client."""

import asyncio
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from ditto_core.live import FRAME_HEADER, LiveService, LiveSettings, PortraitLibrary, make_app
from ditto_core.motion import SamplerOptions
from ditto_core.pipeline import DittoPipeline

ROOT = Path(__file__).resolve().parents[1]
SIZE = 96  # the test portrait's side: frames are pasted back into it


@pytest.fixture(scope="module")
def pipeline(small_release):
    return DittoPipeline.load(small_release)


@pytest.fixture(scope="module")
def portrait_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("portraits") / "face.png"
    image = np.random.default_rng(0).integers(60, 200, (SIZE, SIZE, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    return path


def make_service(pipeline, portrait_file, **settings) -> LiveService:
    settings = {"sampler": SamplerOptions(steps=2), "admit_by_capacity": False, **settings}
    return LiveService(pipeline, PortraitLibrary(default=portrait_file), LiveSettings(**settings))


def serve_and(service: LiveService, body):
    """Run ``body(client)`` against the service on a real aiohttp test server; returns its result."""

    async def main():
        async with TestClient(TestServer(make_app(service))) as client:
            return await body(client)

    return asyncio.run(main())


def speech(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    n = max(1, round(seconds * rate))
    t = np.arange(n) / rate
    noise = np.random.default_rng(seed).standard_normal(n) * 0.05
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2 + noise).astype(np.float32)


def encode(samples: np.ndarray, fmt: str) -> bytes:
    if fmt == "s16le":
        return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()


def start_message(rate=16000, fmt="s16le", **extra) -> dict:
    return {"type": "start", "sample_rate": rate, "format": fmt, **extra}


async def receive_all(ws) -> tuple[list[tuple[int, bytes]], list[dict]]:
    """Frames (index, JPEG) and text messages until the server closes."""
    frames, texts = [], []
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            (index,) = FRAME_HEADER.unpack_from(message.data)
            frames.append((index, message.data[FRAME_HEADER.size :]))
        elif message.type == WSMsgType.TEXT:
            texts.append(json.loads(message.data))
    return frames, texts


async def stream(client, payload: bytes, chunk: int, start: dict, path: str = "/ditto/live", end=True):
    ws = await client.ws_connect(path)
    await ws.send_json(start)
    for offset in range(0, len(payload), chunk):
        await ws.send_bytes(payload[offset : offset + chunk])
    if end:
        await ws.send_json({"type": "end"})
    return await receive_all(ws)


async def expect_error(client, *messages, path="/ditto/live", headers=None) -> str:
    """Send ``messages`` (dict: JSON text, str: raw text, bytes: binary); the server must answer with one error
    and close. Returns the error's message."""
    ws = await client.ws_connect(path, headers=headers)
    for message in messages:
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        elif isinstance(message, dict):
            await ws.send_json(message)
        else:
            await ws.send_str(message)
    frames, texts = await receive_all(ws)
    errors = [t for t in texts if t["type"] == "error"]
    assert not frames and len(errors) == 1, texts
    assert ws.closed
    return errors[0]["message"]
