"""Writing frames (and the speech) to an mp4 with PyAV, atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio.clip import SAMPLE_RATE, AudioClip
from .files import finish_atomically, temporary_sibling


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """h264 needs even sides: repeat the last row/column where a side is odd."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    audio: AudioClip | None = None,
    crf: int = 18,
    on_frame: Callable[[int], None] | None = None,
) -> int:
    """Encode RGB uint8 frames (h264, yuv420p) with the clip's audio (AAC), written to a temporary file beside
    ``path`` and renamed into place only when complete. Returns the number of frames written."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = temporary_sibling(path, ".mp4")
    count = 0
    try:
        with av.open(tmp_name, "w", format="mp4") as container:
            video = None
            audio_stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None else None
            for frame in frames:
                frame = pad_to_even(np.ascontiguousarray(frame))
                if video is None:
                    video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                    video.width, video.height = frame.shape[1], frame.shape[0]
                    video.pix_fmt = "yuv420p"
                    video.options = {"crf": str(crf)}
                for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
                if on_frame is not None:
                    on_frame(count)
            if video is None:
                raise ValueError("no frames to write")
            for packet in video.encode(None):
                container.mux(packet)
            if audio_stream is not None:
                _encode_audio(container, audio_stream, audio.samples, av)
        finish_atomically(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return count


def _encode_audio(container, stream, samples: np.ndarray, av) -> None:
    chunk = 1024 * 16
    for offset in range(0, len(samples), chunk):
        piece = np.ascontiguousarray(samples[offset : offset + chunk], dtype=np.float32)[None]
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
