"""Video files with PyAV: reading a source video into a disk-backed array, writing frames (and the speech) to an
mp4, atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .audio.clip import AudioClip
from .files import finish_atomically, temporary_sibling
from .portrait.images import PortraitInputError, fit_max_size

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif"}


@dataclass(frozen=True)
class SourceVideo:
    """A video's frames ``[F, H, W, 3]`` uint8 RGB (memory-mapped from an anonymous temporary file, so a long
    video does not sit in RAM) and its frame rate (None when the file does not say)."""

    frames: np.ndarray
    fps: float | None


def upright(image: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame ``[H, W, 3]`` as players show it: turned counter-clockwise by its display rotation (in
    degrees, a multiple of 90; phones record portrait videos sideways with a rotation of ±90)."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise PortraitInputError(f"{path} has no video stream; give an image or a video of a face")
    return container.streams.video[0]


def _checked_path(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise PortraitInputError(f"video not found: {path}")
    return path


def video_rate(path: str | Path) -> float | None:
    """A video file's frame rate as its header gives it (None when it does not say), without decoding."""
    import av

    path = _checked_path(path)
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
    except av.FFmpegError as exc:
        raise PortraitInputError(f"cannot read {path} as a video: {exc}") from exc
    return float(rate) if rate else None


def read_video(path: str | Path, max_size: int = 0, max_frames: int = -1) -> SourceVideo:
    """Decode a video file's frames upright (display rotation applied), each fitted to ``max_size`` (0: as they
    are), the first ``max_frames`` when > 0. The frames go to a temporary file that is gone once the array is."""
    import av

    path = _checked_path(path)
    store, shape, count = tempfile.TemporaryFile(prefix="ditto-frames-"), None, 0
    try:
        with av.open(str(path)) as container:
            stream = _video_stream(container, path)
            rate = stream.average_rate or stream.guessed_rate
            for frame in container.decode(stream):
                image = fit_max_size(upright(frame.to_ndarray(format="rgb24"), frame.rotation), max_size)
                if shape is None:
                    shape = image.shape
                elif image.shape != shape:
                    raise PortraitInputError(f"{path} changes frame size at frame {count} ({shape[1]}x{shape[0]} "
                                             f"to {image.shape[1]}x{image.shape[0]}); re-encode it at one size")
                store.write(np.ascontiguousarray(image).tobytes())
                count += 1
                if 0 < max_frames <= count:
                    break
    except av.FFmpegError as exc:
        raise PortraitInputError(f"cannot read {path} as a video: {exc}") from exc
    if count == 0:
        raise PortraitInputError(f"{path} holds no video frames")
    store.flush()
    frames = np.memmap(store, dtype=np.uint8, mode="r", shape=(count, *shape))
    return SourceVideo(frames, float(rate) if rate else None)


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
    """Encode RGB uint8 frames (h264, yuv420p) with the clip's audio as it came (AAC at its own rate and channels,
    96 kb/s per channel), written to a temporary file beside ``path`` and renamed into place only when complete.
    Returns the number of frames written."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = temporary_sibling(path, ".mp4")
    count = 0
    try:
        with av.open(tmp_name, "w", format="mp4") as container:
            video = None
            audio_stream, waveform = add_audio_stream(container, audio) if audio is not None else (None, None)
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
                _encode_audio(container, audio_stream, waveform, av)
        finish_atomically(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return count


AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
AAC_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
AAC_BITRATE_PER_CHANNEL = 96_000  # 192 kb/s stereo: transparent for speech and music


def mux_audio(waveform: np.ndarray, rate: int) -> tuple[np.ndarray, int, str]:
    """The waveform ``[channels, M]`` as AAC can carry it: its own rate when AAC has it (else 48 kHz, resampled),
    its own channels when mono, stereo or 5.1 (other counts are mixed to stereo)."""
    channels = waveform.shape[0]
    if channels not in AAC_LAYOUTS:
        left = waveform[: (channels + 1) // 2].mean(axis=0)
        right = waveform[channels // 2 :].mean(axis=0)
        waveform = np.stack([left, right])
    if rate not in AAC_RATES:
        import soxr

        waveform = soxr.resample(waveform.T, rate, 48000, quality="HQ").T
        rate = 48000
    return np.ascontiguousarray(waveform, dtype=np.float32), rate, AAC_LAYOUTS[waveform.shape[0]]


def add_audio_stream(container, audio: AudioClip):
    """An AAC stream for the clip's original audio, and the samples ``[channels, M]`` to encode into it."""
    waveform, rate, layout = mux_audio(*audio.original())
    stream = container.add_stream("aac", rate=rate, layout=layout)
    stream.bit_rate = AAC_BITRATE_PER_CHANNEL * waveform.shape[0]
    return stream, waveform


def _encode_audio(container, stream, samples: np.ndarray, av) -> None:
    """samples: ``[channels, M]`` float32 at the stream's rate, encoded planar."""
    chunk = 1024 * 16
    for offset in range(0, samples.shape[1], chunk):
        piece = np.ascontiguousarray(samples[:, offset : offset + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=stream.layout.name)
        frame.sample_rate = stream.rate
        frame.pts = offset
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
