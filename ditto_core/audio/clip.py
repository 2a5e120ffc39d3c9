"""Speech input: any file or waveform → mono float32 samples at 16 kHz."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif", ".aiff"}


class AudioInputError(ValueError):
    """Audio that cannot be used, with what is wrong and what to do."""


def num_video_frames(num_samples: int, fps: float = FPS) -> int:
    """Frames of video the audio spans: ⌈seconds × fps⌉, computed in floating point as the reference does."""
    return math.ceil(num_samples / SAMPLE_RATE * fps)


@dataclass(frozen=True)
class AudioClip:
    """Speech for the model, mono at 16 kHz, and the way back to the audio as it came, for the video.

    samples: ``[N]`` float32; source_sample_rate: the rate it was read at, before resampling; source: the waveform
    as given, ``[channels, M]`` float32 at source_sample_rate (arrays and ComfyUI's AUDIO: the caller's data,
    not a copy); source_path: the file it was read from (read again when muxed, so long clips are not held twice).
    """

    samples: np.ndarray
    source_sample_rate: int = SAMPLE_RATE
    name: str = "audio"
    source: np.ndarray | None = None
    source_path: Path | None = None

    def original(self) -> tuple[np.ndarray, int]:
        """The audio as it came: ``[channels, M]`` float32 and its sample rate (16-kHz mono when unknown)."""
        if self.source is not None:
            return self.source, self.source_sample_rate
        if self.source_path is not None and self.source_path.is_file():
            data, rate = _read_file(self.source_path)
            return data, rate
        return self.samples[None], SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def num_frames(self) -> int:
        return num_video_frames(len(self.samples))

    def first_frames(self, frames: int, fps: float = FPS) -> AudioClip:
        """The clip cut to its first ``frames`` video frames at ``fps`` (as long as it is, when shorter): exactly
        ``frames`` frames by :func:`num_video_frames`, the audio as it came cut at the same instant."""
        keep = min(len(self.samples), int(frames / fps * SAMPLE_RATE))
        while num_video_frames(keep, fps) > frames:  # ⌈⌉ in floating point can round a whole count up
            keep -= 1
        if keep == len(self.samples):
            return self
        data, rate = self.original()
        return AudioClip(samples=self.samples[:keep], source_sample_rate=rate, name=self.name,
                         source=data[:, : round(keep / SAMPLE_RATE * rate)])


def _to_float(data: np.ndarray) -> np.ndarray:
    """Integer PCM → [-1, 1) floats; floats are kept."""
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32, copy=False)
    if data.dtype == np.uint8:
        return (data.astype(np.float32) - 128) / 128
    if np.issubdtype(data.dtype, np.integer):
        return (data.astype(np.float64) / float(-np.iinfo(data.dtype).min)).astype(np.float32)
    raise AudioInputError(f"unsupported sample type {data.dtype}")


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    """``[channels, N]`` samples and the sample rate, via soundfile or, for compressed formats, PyAV."""
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data.T, rate
    except soundfile.LibsndfileError as sf_error:
        try:
            import av
        except ImportError:
            raise AudioInputError(
                f"cannot read {path}: {sf_error}. For mp3/m4a/mp4 and other compressed formats install PyAV "
                f"(pip install av), or convert the file to wav."
            ) from sf_error
        return _read_with_av(path, av)


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """A speech file as it is: ``[channels, N]`` float32 samples and the file's own sample rate (wav, flac and ogg
    through soundfile; mp3, m4a and other compressed formats through PyAV)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AudioInputError(f"audio file not found: {path}")
    return _read_file(path)


def _read_with_av(path: Path, av) -> tuple[np.ndarray, int]:
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioInputError(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            chunks = [frame.to_ndarray() for frame in container.decode(stream)]
            rate = stream.rate
    except av.FFmpegError as exc:
        raise AudioInputError(f"cannot decode {path}: {exc}") from exc
    if not chunks:
        raise AudioInputError(f"{path} holds no audio samples")
    planar = stream.format.is_planar
    channels = stream.channels
    data = np.concatenate(
        [c if planar else c.reshape(-1, channels).T for c in chunks], axis=1
    )  # packed frames come as [1, N·C]
    return _to_float(data), rate


def _from_array(waveform, sample_rate: int) -> np.ndarray:
    """A waveform of shape [N], [C, N] or ComfyUI's [B, C, N] → ``[C, N]`` floats."""
    data = waveform.detach().cpu().numpy() if hasattr(waveform, "detach") else np.asarray(waveform)
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise AudioInputError(
                f"the audio holds a batch of {data.shape[0]} clips; give one clip (split the batch first)"
            )
        data = data[0]
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise AudioInputError(f"expected a waveform of shape [samples], [channels, samples] or [1, channels, samples], got {data.shape}")
    return _to_float(data)


def load_audio(source, sample_rate: int | None = None, name: str | None = None) -> AudioClip:
    """Read speech from a file path, a ComfyUI AUDIO dict, a waveform (numpy or torch, ``[samples]`` or
    ``[channels, samples]``) with its ``sample_rate``, or a ``(waveform, sample_rate)`` pair.

    Any channel count, sample type and rate becomes mono float32 at 16 kHz (channels averaged, resampled with
    soxr's high-quality filter). Silence is accepted; empty or non-finite audio is rejected with AudioInputError.
    """
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], (int, np.integer)):
        source, sample_rate = source
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        data, rate = read_audio_file(path)
        return _finish(data, rate, name or path.name, source_path=path)
    elif isinstance(source, Mapping):
        if "waveform" not in source or "sample_rate" not in source:
            raise AudioInputError("an AUDIO value must be a dict with 'waveform' and 'sample_rate'")
        data, rate = _from_array(source["waveform"], int(source["sample_rate"])), int(source["sample_rate"])
    else:
        if sample_rate is None:
            raise AudioInputError("a raw waveform needs its sample_rate")
        data, rate = _from_array(source, sample_rate), int(sample_rate)
    return _finish(data, rate, name or "audio", source=data)


def _finish(data: np.ndarray, rate: int, name: str, source: np.ndarray | None = None,
            source_path: Path | None = None) -> AudioClip:
    if rate <= 0:
        raise AudioInputError(f"{name}: invalid sample rate {rate}")
    if data.shape[-1] == 0:
        raise AudioInputError(f"{name} is empty (0 samples); give at least one frame (40 ms) of speech or silence")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int((~finite).sum())
        raise AudioInputError(
            f"{name} contains {bad} non-finite samples (NaN or infinity) out of {data.size}; "
            f"re-export the audio from its source"
        )
    mono = data.mean(axis=0, dtype=np.float64).astype(np.float32)
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if len(mono) == 0:
        raise AudioInputError(f"{name} is shorter than one sample at 16 kHz")
    return AudioClip(samples=np.ascontiguousarray(mono), source_sample_rate=rate, name=name, source=source,
                     source_path=source_path)
