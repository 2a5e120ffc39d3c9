"""The realtime session: chunked speech in, frames out as soon as final, same frames however it is chunked."""

import math

import numpy as np
import pytest

from ditto_core.motion import SamplerOptions
from ditto_core.online import OnlineSession
from ditto_core.pipeline import DittoPipeline
from ditto_core.render import RenderOptions


@pytest.fixture(scope="module")
def session_parts(small_release):
    pipeline = DittoPipeline.load(small_release)
    image = np.random.default_rng(0).integers(60, 200, (128, 128, 3), dtype=np.uint8)
    return pipeline, pipeline.register(image)


def _run(parts, samples, chunk, overlap=70):
    pipeline, portrait = parts
    session = OnlineSession(pipeline, portrait, "happy", SamplerOptions(steps=2, overlap=overlap),
                            RenderOptions(paste_back=False))
    per_push = []
    for i in range(0, len(samples), chunk):
        per_push.append(session.push(samples[i : i + chunk]))
    per_push.append(session.finish())
    return per_push, session


def test_online_frames_are_complete_and_independent_of_chunking(session_parts):
    samples = (np.random.default_rng(1).standard_normal(int(16000 * 1.7)) * 0.1).astype(np.float32)
    big, session = _run(session_parts, samples, 16000)
    small, _ = _run(session_parts, samples, 1234)
    big_frames = [f for batch in big for f in batch]
    small_frames = [f for batch in small for f in batch]
    assert len(big_frames) == len(small_frames) == math.ceil(len(samples) / 16000 * 25)
    for a, b in zip(big_frames, small_frames):  # rendered in different batch groupings: ±1 from float rounding
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert session.stats.frames == len(big_frames)


def test_first_frames_arrive_after_about_a_second_of_speech(session_parts):
    samples = np.zeros(16000 * 2, np.float32)
    per_push, session = _run(session_parts, samples, 640)  # one 40-ms frame of audio per push
    first_push = next(i for i, frames in enumerate(per_push) if frames)
    assert (first_push + 1) * 640 / 16000 <= 0.9
    assert session.stats.first_frame_audio_s <= 0.9
    assert session.stats.steady_fps is not None


@pytest.mark.parametrize("overlap", [10, 40])
def test_online_works_for_small_overlaps(session_parts, overlap):
    samples = np.zeros(int(16000 * 1.2), np.float32)
    per_push, _ = _run(session_parts, samples, 4000, overlap)
    assert sum(len(f) for f in per_push) == 30
