"""Video encoding: the encoder and preset choice, the encoder's own thread (order, back-pressure, failures and
cancels on either side), and the choice on the command line and the nodes."""

import threading

import av
import numpy as np
import pytest

from ditto_core.video import (
    DEFAULT_PRESETS,
    ENCODER_QUEUE,
    VideoEncoding,
    VideoEncodingError,
    encoder_works,
    write_mp4,
)


def _frames(count: int, size=(48, 64)) -> list[np.ndarray]:
    """Frames that differ a lot from each other (each a flat level), so their order can be read back."""
    return [np.full((*size, 3), 10 + (9 * i) % 240, np.uint8) for i in range(count)]


def _decoded_levels(path) -> list[int]:
    with av.open(str(path)) as container:
        return [int(round(f.to_ndarray(format="rgb24").mean())) for f in container.decode(video=0)]


def test_auto_is_libx264_veryfast_off_cuda_and_without_nvenc():
    assert VideoEncoding().resolve("cpu") == ("libx264", {"preset": "veryfast", "crf": "18"})
    codec, options = VideoEncoding(crf=23).resolve("cuda")
    if encoder_works("h264_nvenc"):
        assert codec == "h264_nvenc" and options["cq"] == "23" and options["preset"] == DEFAULT_PRESETS[codec]
    else:
        assert (codec, options["crf"]) == ("libx264", "23")
    assert VideoEncoding(preset="slow").resolve("cpu")[1]["preset"] == "slow"


@pytest.mark.parametrize("settings, message", [
    (dict(crf=52), "crf .* must be 0-51"),
    (dict(crf=-1), "crf .* must be 0-51"),
    (dict(encoder="x265"), "unknown video encoder 'x265'"),
    (dict(preset="fastest"), "unknown preset 'fastest'"),
])
def test_bad_choices_are_refused_with_what_to_choose(settings, message):
    with pytest.raises(VideoEncodingError, match=message):
        VideoEncoding(**settings)


def test_a_preset_of_the_other_encoder_is_refused():
    with pytest.raises(VideoEncodingError, match="preset 'p4' is not one of libx264's"):
        VideoEncoding(encoder="libx264", preset="p4").resolve("cpu")


@pytest.mark.skipif(encoder_works("h264_nvenc"), reason="this machine has NVENC")
def test_nvenc_asked_for_where_it_cannot_open_says_so():
    with pytest.raises(VideoEncodingError, match="h264_nvenc cannot be opened here"):
        VideoEncoding(encoder="h264_nvenc").resolve("cuda")


def test_frames_come_out_in_order_past_the_queue(tmp_path):
    frames = _frames(ENCODER_QUEUE * 3 + 1)
    assert write_mp4(tmp_path / "v.mp4", frames, 25.0, encoding=VideoEncoding(crf=0)) == len(frames)
    levels = np.array(_decoded_levels(tmp_path / "v.mp4"))
    expected = np.array([10 + (9 * i) % 240 for i in range(len(frames))])
    assert len(levels) == len(expected) and np.abs(levels - expected).max() <= 2  # RGB → YUV → RGB rounding


def test_a_producer_may_reuse_its_frame_buffer(tmp_path):
    """Each frame is copied as it is queued: a producer that writes every frame into one buffer gets its frames."""
    def reused():
        buffer = np.zeros((48, 64, 3), np.uint8)
        for level in range(10, 250, 24):
            buffer[:] = level
            yield buffer

    write_mp4(tmp_path / "v.mp4", reused(), 25.0, encoding=VideoEncoding(crf=0))
    levels = np.array(_decoded_levels(tmp_path / "v.mp4"))
    assert np.abs(levels - np.arange(10, 250, 24)).max() <= 2


def test_the_encoder_runs_in_a_thread_of_its_own(tmp_path):
    """Every frame is encoded by the encoder thread, none by the caller's."""
    made, encoder_threads = [], set()
    original = av.VideoFrame.from_ndarray

    def spy(*args, **kwargs):
        encoder_threads.add(threading.current_thread().name)
        return original(*args, **kwargs)

    def frames():
        for index, frame in enumerate(_frames(30)):
            made.append(index)
            yield frame

    av.VideoFrame.from_ndarray = spy
    try:
        write_mp4(tmp_path / "v.mp4", frames(), 25.0)
    finally:
        av.VideoFrame.from_ndarray = original
    assert encoder_threads == {"ditto-encoder"} and len(made) == 30


def test_a_cancel_in_the_caller_stops_the_encoder_and_leaves_no_file(tmp_path):
    class Cancelled(Exception):
        pass

    def frames():
        yield from _frames(12)
        raise Cancelled

    threads_before = threading.active_count()
    with pytest.raises(Cancelled):
        write_mp4(tmp_path / "v.mp4", frames(), 25.0)
    assert threading.active_count() == threads_before
    assert not list(tmp_path.iterdir())


def test_an_empty_clip_is_an_error_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="no frames to write"):
        write_mp4(tmp_path / "v.mp4", [], 25.0)
    assert not list(tmp_path.iterdir())
