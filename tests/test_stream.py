"""Speech → frames in one overlapped pass: the same frames as the step-by-step path, bounded state, clean cancel."""

import threading

import numpy as np
import pytest
import torch

from ditto_core.audio import load_audio
from ditto_core.motion import SamplerOptions
from ditto_core.pipeline import DittoPipeline
from ditto_core.render import RenderOptions
from ditto_core.stream import SpeechMotionStream, background, speech_to_frames, speech_to_video
from ditto_core.video import write_mp4

SAMPLER = SamplerOptions(steps=2, overlap=10, seed=4)
RENDER = RenderOptions(batch_size=1, paste_back=True)


@pytest.fixture(scope="module")
def parts(small_release):
    pipeline = DittoPipeline.load(small_release)
    image = np.random.default_rng(0).integers(60, 200, (96, 120, 3), dtype=np.uint8)
    return pipeline, pipeline.register(image)


def _speech(seconds, seed=1):
    return load_audio((np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.1).astype(np.float32),
                      16000)


@pytest.mark.parametrize("overlap_stages", [True, False])
def test_streamed_frames_equal_the_step_by_step_path(parts, overlap_stages):
    pipeline, portrait = parts
    clip = _speech(3.6)  # 90 frames: the first window is final before the audio ends, so blocks meet inside
    blocks = []
    frames = list(speech_to_frames(pipeline, portrait, clip, "happy", SAMPLER, RENDER, chunk_seconds=0.7,
                                   overlap_stages=overlap_stages, on_motion=blocks.append))
    _, features = pipeline.encode_audio(clip)
    motion = pipeline.sample(portrait, features, "happy", SAMPLER)
    assert len(frames) == len(motion) == clip.num_frames == 90
    assert len(blocks) > 1 and torch.equal(torch.cat(blocks), motion.frames)
    boundary = len(blocks[0])
    for index in (0, 1, boundary - 1, boundary, boundary + 1, 89):  # a frame depends on its motion row only
        (want,) = pipeline.render(portrait, motion, RENDER, start=index, stop=index + 1)
        assert frames[index].shape == want.shape == (96, 120, 3)
        assert np.array_equal(frames[index], want), index


def test_streamed_frames_equal_the_step_by_step_path_at_batch_size_4(parts):
    """Batches are aligned as the step-by-step path aligns them, so batched rendering rounds the same way."""
    pipeline, portrait = parts
    clip = _speech(4.6)  # 115 frames: not a multiple of 4, in blocks of other lengths
    options = RenderOptions(batch_size=4)
    blocks = []
    frames = list(speech_to_frames(pipeline, portrait, clip, "happy", SAMPLER, options, chunk_seconds=0.7,
                                   overlap_stages=False, on_motion=blocks.append))
    assert len(blocks) > 1 and any(len(b) % 4 for b in blocks)
    motion = pipeline.sample(portrait, pipeline.encode_audio(clip)[1], "happy", SAMPLER)
    want = list(pipeline.render(portrait, motion, options))
    assert len(frames) == len(want) == 115
    assert all(np.array_equal(a, b) for a, b in zip(frames, want))


def test_the_stream_keeps_no_more_than_its_windows(parts):
    pipeline, portrait = parts
    stream = SpeechMotionStream(pipeline, portrait, "neutral", SamplerOptions(steps=1, overlap=10))
    samples = np.zeros(16000, np.float32)
    sizes = []
    for _ in range(20):  # 20 s of speech, one second at a time
        stream.push(samples)
        sizes.append((len(stream.features._buffer), len(stream.chain.cond), len(stream.chain.result)))
    assert max(s[0] for s in sizes) < 2 * 16000  # at most one window of samples beyond the chunk
    assert max(s[1] for s in sizes) <= 80 + 25  # one window of conditions plus one chunk
    assert max(s[2] for s in sizes) <= 80 + 25
    for column in range(3):  # flat: the last seconds hold no more than the first ones
        assert max(s[column] for s in sizes[10:]) <= max(s[column] for s in sizes[:10])


def test_cancel_stops_every_stage(parts):
    pipeline, portrait = parts
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt("cancelled")

    threads_before = threading.active_count()
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        list(speech_to_frames(pipeline, portrait, _speech(6.0), sampler=SAMPLER, render=RENDER, chunk_seconds=0.5,
                              overlap_stages=True, check=check))
    assert threading.active_count() == threads_before


def test_speech_to_video_with_overlapped_stages(parts, tmp_path):
    import av

    pipeline, portrait = parts
    clip = _speech(0.6)
    motion = speech_to_video(tmp_path / "talk.mp4", pipeline, portrait, clip, "sad", SAMPLER, RENDER,
                             overlap_stages=True)
    _, features = pipeline.encode_audio(clip)
    assert torch.equal(motion.frames, pipeline.sample(portrait, features, "sad", SAMPLER).frames)
    assert motion.metadata["seed"] == SAMPLER.seed and motion.fps == 25
    with av.open(str(tmp_path / "talk.mp4")) as video:
        assert len(list(video.decode(video=0))) == clip.num_frames == 15
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]


def test_background_keeps_order_raises_errors_and_stops_early():
    assert list(background(range(100), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("stage failed")

    with pytest.raises(ValueError, match="stage failed"):
        list(background(failing()))

    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = background(endless(), depth=2)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()  # the consumer stops: the worker ends and closes its source
    assert closed.is_set()


def test_background_reports_a_source_that_cannot_be_iterated():
    with pytest.raises(TypeError):
        list(background(5))


def test_a_failing_encoder_stops_its_thread_and_the_frames_and_leaves_no_file(tmp_path):
    closed = threading.Event()

    def frames():
        try:
            yield np.zeros((16, 16, 3), np.uint8)
            while True:
                yield np.zeros((16, 16), np.uint8)  # not an RGB frame: the encoder raises
        finally:
            closed.set()

    threads_before = threading.active_count()
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "out.mp4", frames(), 25.0, None)
    assert closed.is_set() and threading.active_count() == threads_before
    assert not list(tmp_path.iterdir())


def test_any_frame_rate_resamples_the_motion_and_keeps_the_audio(parts, tmp_path):
    import av

    from ditto_core.audio.clip import num_video_frames

    pipeline, portrait = parts
    clip = _speech(1.3)
    path = tmp_path / "clip.mp4"
    motion = speech_to_video(path, pipeline, portrait, clip, "happy", SAMPLER, RenderOptions(batch_size=3), fps=30.0)
    count = num_video_frames(len(clip.samples), 30.0)
    assert count == 39 and len(motion) == count and motion.fps == 30.0 and motion.metadata["sampled_fps"] == 25
    sampled = pipeline.sample(portrait, pipeline.encode_audio(clip)[1], "happy", SAMPLER)
    torch.testing.assert_close(motion.frames, sampled.resample(30.0, count).frames, rtol=0, atol=0)
    with av.open(str(path)) as container:
        assert container.streams.video[0].average_rate == 30
        assert sum(1 for _ in container.decode(video=0)) == count
        audio = container.streams.audio[0]
        assert abs(float(audio.duration * audio.time_base) - clip.duration_s) < 0.05
    with pytest.raises(ValueError, match="between 10 and 60 fps"):
        next(speech_to_frames(pipeline, portrait, clip, fps=75.0))
