"""Many live sessions on one device: the render scheduler serves the sessions round-robin (none starves), three
WebSocket sessions at once each get exactly their frames and the frames they get alone, one warp/decoder call
holds several sessions' frames, and admission refuses what the device could not keep at 25 frames/s."""

import asyncio
import threading

import cv2
import numpy as np
import pytest
from live_client import (  # noqa: F401  (pipeline, portrait_file: fixtures, used by name)
    encode,
    expect_error,
    make_service,
    pipeline,
    portrait_file,
    serve_and,
    speech,
    start_message,
    stream,
)

from ditto_core.live.scheduler import FrameCost, RenderScheduler
from ditto_core.precision import MAX_MEAN_LEVELS, MAX_P999_LEVELS
from ditto_core.render import RenderBatch, decode_batches


def fake_batch(frames: int) -> RenderBatch:
    return RenderBatch(appearance=None, x_s=None, x_d=None, sources=[0] * frames, placement=None)


class RecordingDecode:
    """A stand-in for decode_batches that records which owners each call served; the first call waits for
    ``gate`` so that everything else is queued before the scheduler chooses."""

    def __init__(self):
        self.owner_of: dict[int, str] = {}
        self.calls: list[list[str]] = []
        self.entered, self.gate = threading.Event(), threading.Event()

    def __call__(self, networks, precision, batches):
        self.entered.set()
        self.gate.wait(10)
        self.calls.append([self.owner_of[id(b)] for b in batches])
        return [np.zeros((len(b), 2, 2, 3), np.float32) for b in batches]


def queue_work(scheduler: RenderScheduler, decode: RecordingDecode, work: dict[str, int], frames: int = 1):
    futures = []
    for owner, count in work.items():
        for _ in range(count):
            batch = fake_batch(frames)
            decode.owner_of[id(batch)] = owner
            futures.append(scheduler.submit(owner, "networks", "fp32", batch))
    return futures


def test_the_scheduler_serves_sessions_round_robin_so_none_starves():
    decode = RecordingDecode()
    scheduler = RenderScheduler(max_frames=2, decode=decode)
    try:
        gate = queue_work(scheduler, decode, {"gate": 1})
        assert decode.entered.wait(10)
        futures = queue_work(scheduler, decode, {"a": 6, "b": 2, "c": 1})
        decode.gate.set()
        for future in gate + futures:
            assert future.result(10).shape == (1, 2, 2, 3)
    finally:
        scheduler.close()
    calls = decode.calls[1:]
    assert all(len(call) <= 2 and len(set(call)) == len(call) for call in calls)  # one batch per session a call
    served = [owner for call in calls for owner in call]
    assert sorted(served) == ["a"] * 6 + ["b"] * 2 + ["c"]
    # c's one batch and b's two are done within the first rounds, not after a's six
    assert served.index("c") < 3 and [i for i, o in enumerate(served) if o == "b"][-1] < 5
    for i in range(len(served) - 1):  # while another session waits, no session is served twice in a row
        waiting = set(served[i + 1 :])
        assert served[i] != served[i + 1] or waiting == {served[i]}


def test_the_scheduler_fills_a_call_up_to_max_frames_and_tells_each_session_a_failure():
    decode = RecordingDecode()
    scheduler = RenderScheduler(max_frames=8, decode=decode)
    try:
        queue_work(scheduler, decode, {"gate": 1})
        assert decode.entered.wait(10)
        futures = queue_work(scheduler, decode, {"a": 2, "b": 2, "c": 2}, frames=4)
        decode.gate.set()
        for future in futures:
            future.result(10)
    finally:
        scheduler.close()
    assert [len(call) for call in decode.calls[1:]] == [2, 2, 2]  # 8 frames a call: two sessions' batches

    def failing(networks, precision, batches):
        raise RuntimeError("out of memory")

    scheduler = RenderScheduler(decode=failing)
    try:
        future = scheduler.submit("a", "networks", "fp32", fake_batch(4))
        with pytest.raises(RuntimeError, match="out of memory"):
            future.result(10)
    finally:
        scheduler.close()


def test_decoding_several_sessions_batches_at_once_equals_decoding_each_alone(pipeline, portrait_file):
    import torch

    portrait = pipeline.register(str(portrait_file))
    generator = torch.Generator().manual_seed(0)
    batches = []
    for n in (4, 2, 3):
        batch = fake_batch(n)
        batch.appearance = portrait.appearance.expand(n, *portrait.appearance.shape[1:])
        batch.x_s = portrait.source_keypoints()[[0] * n]
        batch.x_d = batch.x_s + torch.randn(batch.x_s.shape, generator=generator) * 0.02
        batches.append(batch)
    together = decode_batches(pipeline.networks, "fp32", batches)
    for batch, faces in zip(batches, together):
        (alone,) = decode_batches(pipeline.networks, "fp32", [batch])
        levels = (faces - alone).abs().numpy() * 255
        assert faces.shape == alone.shape and len(faces) == len(batch)
        assert levels.mean() < MAX_MEAN_LEVELS and np.percentile(levels, 99.9) < MAX_P999_LEVELS


def decoded(frames) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) for _, jpeg in frames]


def test_three_websocket_sessions_at_once_each_get_their_exact_frames(pipeline, portrait_file):
    clips = [(speech(seconds, 16000, seed=k), k) for k, seconds in enumerate((0.7, 1.0, 0.45))]
    alone_service = make_service(pipeline, portrait_file, max_sessions=1)
    service = make_service(pipeline, portrait_file, max_sessions=3)
    calls = []
    scheduler = service.scheduler(pipeline.networks.device)
    scheduler.decode = lambda networks, precision, batches: calls.append(len(batches)) or decode_batches(
        networks, precision, batches)

    def run(target, together: bool):
        async def body(client):
            talks = [stream(client, encode(samples, "s16le"), 3200, start_message(seed=seed))
                     for samples, seed in clips]
            if together:
                return await asyncio.gather(*talks)
            return [await talk for talk in talks]

        return serve_and(target, body)

    alone = run(alone_service, together=False)
    together = run(service, together=True)
    for (samples, _), (frames_alone, _), (frames, texts) in zip(clips, alone, together):
        expected = int(np.ceil(len(samples) / 16000 * 25))
        assert [i for i, _ in frames] == list(range(expected)) and texts[-1]["frames"] == expected
        levels = np.abs(np.stack(decoded(frames)) - np.stack(decoded(frames_alone)))
        assert levels.mean() < MAX_MEAN_LEVELS and np.percentile(levels, 99.9) <= MAX_P999_LEVELS
    assert max(calls) > 1  # some warp/decoder calls held several sessions' frames
    assert service.wait_idle(10)


def test_admission_by_measured_capacity(pipeline, portrait_file):
    cost = FrameCost()
    assert cost.realtime_sessions() is None  # nothing measured: sessions are admitted up to --max-sessions
    cost.add_render(0.4, 40)  # 10 ms a frame
    cost.add_sampling(0.2, 20)  # + 10 ms
    assert cost.realtime_sessions() == 1  # 20 ms a frame: 0.9 / (0.02 × 25) sessions

    service = make_service(pipeline, portrait_file, max_sessions=4, admit_by_capacity=True)
    scheduler = service.scheduler(pipeline.networks.device)
    scheduler.cost.add_render(0.02, 1)  # as measured on a device that keeps one session at 25 frames/s

    async def body(client):
        first = await client.ws_connect("/ditto/live")
        await first.send_json(start_message())
        assert (await first.receive_json())["type"] == "ready"
        busy = await expect_error(client, start_message())
        await first.close()
        return busy

    busy = serve_and(service, body)
    assert busy.startswith("busy") and "25 frames/s" in busy and "try again" in busy
    assert service.wait_idle(10)
