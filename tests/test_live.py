"""The live endpoint over a real aiohttp server: frames in order and exactly ⌈seconds × 25⌉ of them whatever the
chunking, format and rate; every error case says what is wrong and the server stays up; a client that leaves
frees its session; the session limit; the token and Origin rules; the README's example client; the ComfyUI glue."""

import asyncio
import math
import os
import re
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import soundfile
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from live_client import (  # noqa: F401  (pipeline, portrait_file: fixtures, used by name)
    ROOT,
    SIZE,
    encode,
    expect_error,
    make_service,
    pipeline,
    portrait_file,
    receive_all,
    serve_and,
    speech,
    start_message,
    stream,
)

from ditto_core.__main__ import main as cli_main
from ditto_core.audio.clip import num_video_frames
from ditto_core.live import LiveService, PcmStream, is_loopback, make_app

# ------------------------------------------------------------------------------------------------------ PCM stream


@pytest.mark.parametrize("fmt", ["s16le", "f32le"])
@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 96000, 37777])
def test_pcm_stream_gives_exactly_the_frames_of_the_input_duration_whatever_the_chunking(fmt, rate):
    rng = np.random.default_rng(rate)
    for n in (1, 17, 641, rate // 3, rate + 1, round(1.37 * rate)):
        payload = encode(speech(n / rate, rate)[:n], fmt)
        outputs = []
        for chunking in ("whole", "odd", "random"):
            pcm = PcmStream(fmt, rate)
            if chunking == "whole":
                cuts = [len(payload)]
            elif chunking == "odd":
                cuts = list(range(7, len(payload), 7)) + [len(payload)]  # splits samples between messages
            else:
                cuts = sorted(set(rng.integers(1, len(payload), 12).tolist()) | {len(payload)})
            pieces, last = [], 0
            for cut in cuts:
                pieces.append(pcm.push(payload[last:cut]))
                last = cut
            pieces.append(pcm.finish())
            out = np.concatenate(pieces)
            assert pcm.samples_in == n and pcm.samples_out == len(out)
            assert num_video_frames(len(out)) == math.ceil(n / rate * 25), (rate, n, len(out))
            outputs.append(out)
        for other in outputs[1:]:  # chunk boundaries do not matter
            np.testing.assert_array_equal(other, outputs[0])
        if rate == 16000:
            expected = np.frombuffer(payload, "<i2") / 32768.0 if fmt == "s16le" else np.frombuffer(payload, "<f4")
            np.testing.assert_allclose(outputs[0], expected, rtol=0, atol=1e-7)


def test_pcm_stream_rejects_non_finite_samples_and_a_dangling_byte():
    from ditto_core.live import LiveError

    with pytest.raises(LiveError, match="NaN or infinite"):
        PcmStream("f32le", 16000).push(np.array([0.0, np.nan], "<f4").tobytes())
    pcm = PcmStream("s16le", 16000)
    pcm.push(b"\x00\x01\x02")
    with pytest.raises(LiveError, match="stray byte"):
        pcm.finish()


# -------------------------------------------------------------------------------------------------------- sessions


@pytest.mark.parametrize("fmt, rate, seconds, chunk", [
    ("s16le", 16000, 1.0, 3200),  # 100-ms messages
    ("f32le", 44100, 0.61, 1001),  # messages that split samples, resampled
    ("s16le", 8000, 0.3, 10**6),  # one message
    ("f32le", 48000, 0.01, 7),  # one frame's worth, in tiny pieces
])
def test_frames_come_in_order_and_exactly_ceil_seconds_times_25(pipeline, portrait_file, fmt, rate, seconds, chunk):
    samples = speech(seconds, rate)
    expected = math.ceil(len(samples) / rate * 25)
    service = make_service(pipeline, portrait_file)

    async def body(client):
        return await stream(client, encode(samples, fmt), chunk, start_message(rate, fmt, seed=3))

    frames, texts = serve_and(service, body)
    assert [t["type"] for t in texts] == ["ready", "done"]
    ready, done = texts
    assert (ready["width"], ready["height"], ready["fps"]) == (SIZE, SIZE, 25)
    assert [index for index, _ in frames] == list(range(expected))
    assert done["frames"] == expected and done["audio_s"] == pytest.approx(seconds, abs=1e-3)
    assert done["first_frame_ms"] > 0 and set(done["first_frame_split_ms"]) == {"lookahead", "waiting", "sampling",
                                                                                "rendering"}
    image = cv2.imdecode(np.frombuffer(frames[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (SIZE, SIZE, 3)  # the full frame, pasted back into the portrait
    assert service.wait_idle(5) and service.active_sessions == 0


def test_end_without_audio_gives_no_frames(pipeline, portrait_file):
    frames, texts = serve_and(make_service(pipeline, portrait_file),
                              lambda client: stream(client, b"", 1, start_message()))
    assert not frames and texts[-1]["type"] == "done" and texts[-1]["frames"] == 0


# ---------------------------------------------------------------------------------------------------------- errors


def test_each_error_is_told_and_the_server_stays_up(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file, max_message_bytes=4096)
    audio = encode(speech(0.05, 16000), "s16le")

    async def body(client):
        said = {
            "not json": await expect_error(client, "hello"),
            "not start": await expect_error(client, {"type": "end"}),
            "audio first": await expect_error(client, audio),
            "format": await expect_error(client, start_message(fmt="mp3")),
            "rate low": await expect_error(client, start_message(rate=7999)),
            "rate high": await expect_error(client, start_message(rate=96001)),
            "rate type": await expect_error(client, start_message(rate="16000")),
            "seed": await expect_error(client, start_message(seed=-1)),
            "portrait": await expect_error(client, start_message(portrait="other.png")),
            "too big": await expect_error(client, start_message(), b"\x00" * 5000),
            "nan": await expect_error(client, start_message(fmt="f32le"), np.full(8, np.nan, "<f4").tobytes()),
            "unknown": await expect_error(client, start_message(), {"type": "pause"}),
            "text": await expect_error(client, start_message(), "more"),
            "second start": await expect_error(client, start_message(), start_message()),
            "stray byte": await expect_error(client, start_message(), b"\x01\x02\x03", {"type": "end"}),
        }
        page = await client.get("/ditto/live/page/")
        frames, texts = await stream(client, audio, 1000, start_message())
        return said, page.status, await page.text(), frames, texts

    said, status, html, frames, texts = serve_and(service, body)
    assert "JSON start message" in said["not json"] and "start message" in said["not start"]
    assert "before the start message" in said["audio first"]
    assert "s16le" in said["format"] and "f32le" in said["format"]
    for key in ("rate low", "rate high", "rate type"):
        assert "8,000 to 96,000" in said[key]
    assert "seed" in said["seed"]
    assert "other.png" in said["portrait"]
    assert "larger than 4,096 bytes" in said["too big"] and "smaller pieces" in said["too big"]
    assert "NaN" in said["nan"]
    assert "'pause'" in said["unknown"] and "not JSON" in said["text"]
    assert "second start" in said["second start"] and "stray byte" in said["stray byte"]
    assert status == 200 and "Ditto live" in html
    assert len(frames) == 2 and texts[-1]["type"] == "done"  # still up, and serving sessions
    assert service.wait_idle(5)


def test_audio_after_end_is_an_error(pipeline, portrait_file):
    async def body(client):
        ws = await client.ws_connect("/ditto/live")
        await ws.send_json(start_message())
        await ws.send_bytes(encode(speech(0.04, 16000), "s16le"))
        await ws.send_json({"type": "end"})
        await ws.send_bytes(b"\x00\x00")
        return await receive_all(ws)

    frames, texts = serve_and(make_service(pipeline, portrait_file), body)
    assert texts[-1]["type"] in ("error", "done")  # done may win the race; an error says what happened
    if texts[-1]["type"] == "error":
        assert "after {\"type\": \"end\"}" in texts[-1]["message"]


# ------------------------------------------------------------------------------------- disconnects, limit, access


def test_a_client_that_leaves_frees_its_session_at_once(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file, max_sessions=1)

    async def body(client):
        ws = await client.ws_connect("/ditto/live")
        await ws.send_json(start_message())
        assert (await ws.receive_json())["type"] == "ready"
        await ws.send_bytes(encode(speech(1.5, 16000), "s16le"))  # plenty of work queued
        await asyncio.sleep(0.2)
        assert service.active_sessions == 1
        left = time.perf_counter()
        await ws.close()
        freed = await asyncio.to_thread(service.wait_idle, 30)
        took = time.perf_counter() - left
        # a new session is accepted
        frames, texts = await stream(client, encode(speech(0.04, 16000), "s16le"), 640, start_message())
        return freed, took, frames, texts

    freed, took, frames, texts = serve_and(service, body)
    assert freed and took < 10  # stopped at its next motion window or render batch, not after all the audio
    assert len(frames) == 1 and texts[-1]["type"] == "done"


def test_sessions_beyond_the_limit_get_a_busy_error(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file, max_sessions=2)

    async def body(client):
        first, second = [await client.ws_connect("/ditto/live") for _ in range(2)]
        for ws in (first, second):
            await ws.send_json(start_message())
            assert (await ws.receive_json())["type"] == "ready"
        busy = await expect_error(client, start_message())
        await first.close()
        await asyncio.to_thread(lambda: time.sleep(0.05) or None)
        deadline = time.perf_counter() + 10
        while service.active_sessions > 1 and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        third = await client.ws_connect("/ditto/live")
        await third.send_json(start_message())
        again = await third.receive_json()
        await third.close()
        await second.close()
        return busy, again

    busy, again = serve_and(service, body)
    assert busy.startswith("busy") and "2 live session(s)" in busy and "try again" in busy
    assert again["type"] == "ready"
    assert service.wait_idle(10)


def test_token_and_origin_rules(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file, token="s3cret", ice_servers=("stun:stun.example:3478",))

    async def body(client):
        missing = await expect_error(client, start_message())
        wrong = await expect_error(client, start_message(token="guess"))
        foreign = await expect_error(client, headers={"Origin": "http://evil.example"})
        listing = await client.get("/ditto/live/portraits")
        listed = await client.get("/ditto/live/portraits?token=s3cret")
        images = [await client.get(path) for path in ("/ditto/live/portrait", "/ditto/live/portrait?token=s3cret",
                                                       "/ditto/live/portrait?token=s3cret&name=other.png")]
        images = [(reply.status, await reply.read()) for reply in images]
        accepted = []
        for path, start in (("/ditto/live", start_message(token="s3cret")),
                            ("/ditto/live?token=s3cret", start_message())):
            origin = {"Origin": f"http://{client.host}:{client.port}"}  # the page the server serves itself
            ws = await client.ws_connect(path, headers=origin)
            await ws.send_json(start)
            accepted.append((await ws.receive_json())["type"])
            await ws.close()
        return missing, wrong, foreign, listing.status, await listed.json(), accepted, images

    missing, wrong, foreign, listing_status, listed, accepted, images = serve_and(service, body)
    assert "access token" in missing and "?token=" in missing
    assert "wrong access token" in wrong
    assert "http://evil.example" in foreign and "--allow-origin" in foreign
    assert listing_status == 403 and listed["portraits"] == ["face.png"]
    assert listed["ice_servers"] == ["stun:stun.example:3478"]  # the page's connection uses the server's STUN
    assert [status for status, _ in images] == [403, 200, 404]  # the portrait's image, shown before talking
    assert images[1][1] == portrait_file.read_bytes() and b"other.png" in images[2][1]
    assert accepted == ["ready", "ready"]
    assert service.wait_idle(10)


def test_listening_beyond_this_machine_needs_a_token(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    code = cli_main(["live", "--models", "nowhere", "--portrait", "nowhere.jpg", "--host", "0.0.0.0"])
    assert code == 1 and "--token" in capsys.readouterr().err


def test_the_event_loop_stays_responsive_while_a_session_computes(pipeline, portrait_file):
    service = make_service(pipeline, portrait_file)

    async def body(client):
        ws = await client.ws_connect("/ditto/live")
        await ws.send_json(start_message())
        assert (await ws.receive_json())["type"] == "ready"
        await ws.send_bytes(encode(speech(1.5, 16000), "s16le"))
        await ws.send_json({"type": "end"})
        await ws.receive()  # the first frame: the worker is busy with the rest
        began = time.perf_counter()
        reply = await client.get("/ditto/live/portraits")
        answered = time.perf_counter() - began
        frames, texts = await receive_all(ws)
        return reply.status, answered, len(frames) + 1, texts[-1]

    status, answered, frames, done = serve_and(service, body)
    assert status == 200 and answered < 1.0
    assert frames == done["frames"] == 38


# ----------------------------------------------------------------------------------------- README, ComfyUI glue


class ServerThread:
    """The standalone app on a free port in a thread of its own (for a client in another process)."""

    def __init__(self, service: LiveService):
        self.service, self.ready = service, threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self):
        self.stop = asyncio.Event()
        runner = web.AppRunner(make_app(self.service))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.loop = asyncio.get_running_loop()
        self.ready.set()
        await self.stop.wait()
        await runner.cleanup()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)


def readme_live_example() -> str:
    section = ROOT.joinpath("README.md").read_text().split("## Live (realtime streaming)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_client_runs_as_written(pipeline, portrait_file, tmp_path):
    clip, rate = soundfile.read(ROOT / "assets" / "speech.wav", dtype="int16")
    (tmp_path / "assets").mkdir()
    soundfile.write(tmp_path / "assets" / "speech.wav", clip[: int(rate * 0.9)], rate)  # 0.9 s of it
    with ServerThread(make_service(pipeline, portrait_file)) as server:
        code = readme_live_example().replace("ws://127.0.0.1:8765", f"ws://127.0.0.1:{server.port}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
    assert done.returncode == 0, done.stderr
    saved = sorted(p.name for p in (tmp_path / "output" / "live_frames").iterdir())
    assert saved == [f"{i:05d}.jpg" for i in range(23)]  # ⌈0.9 × 25⌉
    assert "23 frames" in done.stdout


def test_the_pack_adds_the_endpoint_and_page_to_comfyuis_server(small_release, portrait_file, tmp_path, monkeypatch):
    import types

    import comfy_stubs

    state = comfy_stubs.install(tmp_path)
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "ditto").symlink_to(small_release, target_is_directory=True)
    (tmp_path / "input" / "me.png").write_bytes(portrait_file.read_bytes())
    routes = web.RouteTableDef()
    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=routes, app=web.Application()))
    monkeypatch.setitem(sys.modules, "server", server)
    monkeypatch.setenv("DITTO_LIVE_ICE_SERVERS", "stun:a.example:3478, stun:b.example")
    pack = comfy_stubs.load_pack()
    nodes = comfy_stubs.register(pack)  # the extension's on_load adds the routes
    paths = {route.path for route in routes}
    assert {"/ditto/live", "/ditto/live/offer", "/ditto/live/page/", "/ditto/live/portraits"} <= paths
    service = next(route.handler.__self__ for route in routes if route.path == "/ditto/live")
    assert (ROOT / "web" / "js" / "ditto_live.js").read_text().count("/ditto/live/page/") >= 1

    async def body():
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            listed = await (await client.get("/ditto/live/portraits")).json()
            page = await client.get("/ditto/live/page/")
            missing = await expect_error(client, start_message())
            frames, texts = await stream(client, encode(speech(0.1, 22050), "f32le"), 4096,
                                         start_message(22050, "f32le", portrait="me.png"))
            return listed, page.status, missing, frames, texts

    (graph_models,), _ = comfy_stubs.run_node(nodes["DittoLoadModels"], comfy_stubs.constants(
        release="ditto_pytorch", device="auto"))
    graph_models = graph_models[0]
    state.loaded_models.clear()  # as after ComfyUI offloaded everything for a graph
    loads = state.load_calls
    listed, page_status, missing, frames, texts = asyncio.run(body())
    assert "me.png" in listed["portraits"] and page_status == 200
    assert listed["ice_servers"] == ["stun:a.example:3478", "stun:b.example"]
    assert "say which portrait" in missing and "input folder" in missing
    assert [i for i, _ in frames] == [0, 1, 2] and texts[-1]["type"] == "done"
    # the live endpoint used the graph's models, put on the device through ComfyUI as each session started
    assert state.load_calls == loads + 1 and state.loaded_models == [graph_models.patcher]
    assert service.pipelines.get() is graph_models


def test_comfyui_offloads_the_live_sessions_models_only_after_the_last_session(tmp_path):
    import importlib

    import comfy_stubs
    import torch

    comfy_stubs.install(tmp_path)
    memory = importlib.import_module(comfy_stubs.load_pack().__name__ + ".nodes.memory")
    from comfy import model_management

    gpu, cpu = torch.device("cpu", 0), torch.device("cpu")  # told apart by the stand-in's device bookkeeping
    patcher = memory.HeldModelPatcher(torch.nn.Linear(2, 2), load_device=gpu, offload_device=cpu)
    with patcher.hold():  # a live session
        model_management.load_models_gpu([patcher])
        with patcher.hold():  # a second one
            model_management.unload_all_models()  # a graph needs the memory
        assert patcher.current_loaded_device() == gpu  # the first session is still computing on it
        assert patcher.partially_unload(cpu, 1 << 20) == 0
    assert patcher.current_loaded_device() == cpu  # the offload put off until the last session ended

    with patcher.hold():
        model_management.load_models_gpu([patcher])
        model_management.unload_all_models()
        model_management.load_models_gpu([patcher])  # a Ditto node of a graph loads it again meanwhile
    assert patcher.current_loaded_device() == gpu
    model_management.unload_all_models()  # no session: at once
    assert patcher.current_loaded_device() == cpu


def test_the_pack_loads_without_a_comfyui_server(tmp_path):
    import comfy_stubs

    comfy_stubs.install(tmp_path)
    sys.modules.pop("server", None)
    pack = comfy_stubs.load_pack()
    assert "DittoLoadModels" in comfy_stubs.register(pack)


def test_jpeg_frames_are_encoded_off_the_render_thread_with_their_index(monkeypatch):
    import torch

    from ditto_core.live.jpeg import JpegEncoder
    from ditto_core.live.protocol import FRAME_HEADER

    encoded_in = []
    imencode = cv2.imencode
    monkeypatch.setattr(cv2, "imencode", lambda *a: encoded_in.append(threading.current_thread().name) or imencode(*a))
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32] = (200, 40, 10)  # RGB: red must stay red
    encoder = JpegEncoder(quality=95)
    message = encoder.submit(7, frame, torch.device("cpu")).result(timeout=10)
    encoder.close()
    (index,) = FRAME_HEADER.unpack_from(message)
    decoded = cv2.imdecode(np.frombuffer(message[FRAME_HEADER.size :], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert index == 7 and decoded.shape == frame.shape
    assert np.abs(decoded.astype(int) - frame).mean() < 2
    assert encoded_in and encoded_in[0].startswith("ditto-live-jpeg")
    with pytest.raises(ValueError, match="1 to 100"):
        JpegEncoder(quality=0)


def test_only_stun_servers_are_taken(tmp_path, monkeypatch, caplog):
    """A browser refuses a TURN server without its user name and password (every session would fail), so only
    STUN URLs are taken: an error on the command line and in Python, a warning and none inside ComfyUI."""
    import importlib

    import comfy_stubs

    from ditto_core.live import LiveSettings

    assert LiveSettings(ice_servers=["stun:a.example:3478"]).ice_servers == ("stun:a.example:3478",)
    with pytest.raises(ValueError, match="'turn:b.example': only STUN URLs"):
        LiveSettings(ice_servers=("turn:b.example",))
    done = subprocess.run([sys.executable, "-m", "ditto_core", "live", "--portrait", str(ROOT / "assets" / "portrait.jpg"),
                           "--ice-server", "turn:b.example"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode != 0 and "only STUN URLs" in done.stderr and "Traceback" not in done.stderr
    comfy_stubs.install(tmp_path)
    live = importlib.import_module(comfy_stubs.load_pack().__name__ + ".nodes.live")
    monkeypatch.setenv("DITTO_LIVE_ICE_SERVERS", "turn:b.example")
    assert live.live_settings().ice_servers == ()
    assert "DITTO_LIVE_ICE_SERVERS is left out" in caplog.text
