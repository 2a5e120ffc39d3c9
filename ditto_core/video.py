"""Video files with PyAV: reading a source video into a disk-backed array, writing frames (and the speech) to an
mp4, atomically."""

from __future__ import annotations

import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
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


ENCODERS = ("auto", "libx264", "h264_nvenc", "hevc_nvenc")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
NVENC_PRESETS = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
# Measured (bench/gpu.py's encode rows; README "Video encoding"): libx264 veryfast at crf 18 is 1.6x faster than
# medium on 1080p speech video, within 0.8 dB PSNR of it, and its files are no larger.
DEFAULT_PRESETS = {"libx264": "veryfast", "h264_nvenc": "p4", "hevc_nvenc": "p4"}
ENCODER_QUEUE = 8  # frames waiting for the encoder thread


class VideoEncodingError(ValueError):
    """An encoder or preset that does not exist, or is not available here."""


@lru_cache(maxsize=None)
def encoder_works(name: str) -> bool:
    """Whether PyAV can open ``name`` here: the NVENC encoders are in PyAV's wheels but need an NVIDIA driver
    with its encoder library, so they are tried once on a small frame."""
    import av

    if name not in av.codecs_available:
        return False
    try:
        context = av.CodecContext.create(name, "w")
        context.width, context.height, context.pix_fmt = 256, 256, "yuv420p"
        context.time_base = Fraction(1, 25)
        context.open()
        context.encode(av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="rgb24")
                       .reformat(format="yuv420p"))
        context.encode(None)
    except (av.FFmpegError, OSError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class VideoEncoding:
    """How frames become h264 (or HEVC): ``encoder`` ``auto`` picks NVENC when the frames come from a CUDA device
    and PyAV can open it (the GPU's hardware encoder, beside the CUDA cores), else libx264 with its own threads.
    ``crf``: the quality, 0-51, lower is better (libx264's CRF; NVENC's constant-quality ``cq``, the same scale).
    ``preset``: ``auto`` (DEFAULT_PRESETS) or the encoder's own preset name."""

    crf: int = 18
    encoder: str = "auto"
    preset: str = "auto"

    def __post_init__(self):
        if not 0 <= self.crf <= 51:
            raise VideoEncodingError(f"crf (video quality) must be 0-51, lower is better; got {self.crf}")
        if self.encoder not in ENCODERS:
            raise VideoEncodingError(f"unknown video encoder {self.encoder!r}; choose one of {', '.join(ENCODERS)}")
        presets = {"auto", *X264_PRESETS, *NVENC_PRESETS}
        if self.preset not in presets:
            raise VideoEncodingError(f"unknown preset {self.preset!r}: libx264 takes {', '.join(X264_PRESETS)}; "
                                     f"NVENC takes {', '.join(NVENC_PRESETS)} (p1 fastest); or auto")

    def resolve(self, device_type: str = "cpu") -> tuple[str, dict[str, str]]:
        """The codec name and its options for frames made on ``device_type`` (``cuda``: NVENC where it works)."""
        encoder = self.encoder
        if encoder == "auto":
            encoder = "h264_nvenc" if device_type == "cuda" and encoder_works("h264_nvenc") else "libx264"
        elif encoder != "libx264" and not encoder_works(encoder):
            raise VideoEncodingError(f"{encoder} cannot be opened here (it needs an NVIDIA GPU and driver, and a "
                                     f"PyAV built with it); use encoder auto or libx264")
        preset = DEFAULT_PRESETS[encoder] if self.preset == "auto" else self.preset
        nvenc = encoder != "libx264"
        if preset not in (NVENC_PRESETS if nvenc else X264_PRESETS):
            raise VideoEncodingError(f"preset {preset!r} is not one of {encoder}'s: "
                                     f"{', '.join(NVENC_PRESETS if nvenc else X264_PRESETS)}")
        if nvenc:
            return encoder, {"preset": preset, "tune": "hq", "rc": "vbr", "cq": str(self.crf), "b": "0"}
        return encoder, {"preset": preset, "crf": str(self.crf)}


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: float = 25.0,
    audio: AudioClip | None = None,
    encoding: VideoEncoding = VideoEncoding(),
    on_frame: Callable[[int], None] | None = None,
    device_type: str = "cpu",
) -> int:
    """Encode RGB uint8 frames (yuv420p, ``encoding`` resolved for frames made on ``device_type``) with the clip's
    audio as it came (AAC at its own rate and channels, 96 kb/s per channel), written to a temporary file beside
    ``path`` and renamed into place only when complete. The encoder runs in its own thread, fed through a bounded
    queue (ENCODER_QUEUE frames), so the caller makes the next frames while it encodes; frames keep their order.
    On any error in either thread (or the caller stopping early) nothing is left at ``path`` and ``frames`` is
    closed (a generator stops making frames). Returns the number of frames written."""
    codec, options = encoding.resolve(device_type)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = temporary_sibling(path, ".mp4")
    frames = iter(frames)
    try:
        with _EncoderThread(tmp_name, fps, audio, codec, options) as encoder:
            for frame in frames:
                encoder.put(frame)
                if on_frame is not None:
                    on_frame(encoder.count)
            count = encoder.finish()
        finish_atomically(tmp_name, path)
    finally:
        if hasattr(frames, "close"):
            frames.close()
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return count


class _EncoderThread:
    """One mp4 being written by a thread of its own: ``put`` frames (blocks when ENCODER_QUEUE are waiting, raises
    the encoder's error if it failed), ``finish`` to flush and close. Leaving the ``with`` block without
    ``finish`` (an error or a cancel in the caller) stops the thread; the file is then incomplete and the caller
    removes it."""

    _END = object()

    def __init__(self, filename: str, fps: float, audio: AudioClip | None, codec: str, options: dict[str, str]):
        self.filename, self.fps, self.audio, self.codec, self.options = filename, fps, audio, codec, options
        self.frames: queue.Queue = queue.Queue(maxsize=ENCODER_QUEUE)
        self.error: BaseException | None = None
        self.count = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ditto-encoder", daemon=True)

    def __enter__(self) -> "_EncoderThread":
        self.thread.start()
        return self

    def put(self, frame: np.ndarray) -> None:
        """Queue a copy of ``frame`` (a producer may reuse its buffer for the next frame)."""
        self._enqueue(np.array(frame, copy=True))
        self.count += 1

    def finish(self) -> int:
        if self.count == 0:
            raise ValueError("no frames to write")
        self._enqueue(self._END)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.count

    def _enqueue(self, item) -> None:
        """Wait for room in the queue; the encoder's error, if it failed, is raised here."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.frames.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()

    def _next(self):
        while not self.stopped.is_set():
            try:
                return self.frames.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def _run(self) -> None:
        import av

        try:
            with av.open(self.filename, "w", format="mp4") as container:
                video = None
                audio_stream, waveform = (add_audio_stream(container, self.audio) if self.audio is not None
                                          else (None, None))
                while (frame := self._next()) is not None and frame is not self._END:
                    frame = pad_to_even(np.ascontiguousarray(frame))
                    if video is None:
                        video = container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1001))
                        video.width, video.height = frame.shape[1], frame.shape[0]
                        video.pix_fmt = "yuv420p"
                        video.options = self.options
                        video.codec_context.thread_type = "AUTO"
                    for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                if frame is None:  # stopped: the caller failed or gave up; the file is discarded
                    return
                for packet in video.encode(None):
                    container.mux(packet)
                if audio_stream is not None:
                    _encode_audio(container, audio_stream, waveform, av)
        except BaseException as exc:  # raised in the caller at its next put or finish
            self.error = exc


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
