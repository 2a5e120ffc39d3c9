"""HuBERT features at 25 fps, windowed exactly as Ditto was trained: offline and streaming share one code path.

Ditto's chunk size (3, 5, 2) counts 40-ms frames of look-behind, output and look-ahead. Each 6,480-sample window
(10 frames + 80 samples) gives 20 HuBERT rows at 50 Hz; rows 6..15 are kept and averaged in pairs, giving 5
feature frames. Offline, the signal gets 2,000 leading zeros (so that window k, starting at int(5k·0.04·16000),
centres its output on frames 5k..5k+4) and 6,480 trailing zeros, and ⌈seconds·25⌉ frames are kept.

The streaming extractor uses that same grid (not the reference's online grid, which is 80 samples later), so its
output equals the offline output exactly; it emits frames 5k..5k+4 once 280 ms of audio past frame 5k exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from .clip import SAMPLE_RATE, AudioClip, num_video_frames

CHUNK_SIZE = (3, 5, 2)  # 40-ms frames: look-behind, output, look-ahead
FRAME_SECONDS = 0.04
WINDOW_SAMPLES = int(sum(CHUNK_SIZE) * FRAME_SECONDS * SAMPLE_RATE) + 80  # 6480
FRONT_PAD = WINDOW_SAMPLES - int(sum(CHUNK_SIZE[1:]) * FRAME_SECONDS * SAMPLE_RATE)  # 2000
BACK_PAD = WINDOW_SAMPLES
FRAMES_PER_WINDOW = CHUNK_SIZE[1]
KEPT_ROWS = slice(-sum(CHUNK_SIZE[1:]) * 2, -CHUNK_SIZE[2] * 2)  # HuBERT rows 6..15 of 20
FEATURE_DIM = 1024


def window_start(frame_index: int) -> int:
    """Start, in the front-padded signal, of the window that outputs frames from ``frame_index`` on.

    Uses the reference's float expression, which sometimes lands one sample early (e.g. frame 8075).
    """
    return int(frame_index * FRAME_SECONDS * SAMPLE_RATE)


def rows_to_frames(rows: np.ndarray) -> np.ndarray:
    """HuBERT rows of one window ``[20, D]`` → feature frames ``[5, D]`` (rows 6..15, averaged in pairs)."""
    kept = rows[KEPT_ROWS]
    return kept.reshape(FRAMES_PER_WINDOW, 2, -1).mean(axis=1)


@dataclass(frozen=True)
class AudioFeatures:
    """Per-frame audio conditions for the motion model.

    frames: ``[num_frames, 1024]`` float32 at 25 fps (CPU); duration_s: length of the audio they came from.
    """

    frames: torch.Tensor
    duration_s: float
    fps: int = 25
    backend: str = "onnx"

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]


class StreamingFeatureExtractor:
    """Push 16-kHz samples in chunks of any size; get 25-fps feature frames back as soon as they are final.

    ``encoder`` maps windows ``[W, 6480]`` float32 → HuBERT rows ``[W, 20, 1024]``.
    """

    def __init__(self, encoder, batch_windows: int = 8):
        self.encoder = encoder
        self.batch_windows = batch_windows
        self._buffer = np.zeros(FRONT_PAD, dtype=np.float32)  # the padded signal from _buffer_start on
        self._buffer_start = 0
        self._next_frame = 0
        self._num_samples = 0
        self._finished = False

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def _ready_windows(self, available_end: int, frame_limit: int | None) -> list[int]:
        starts = []
        frame = self._next_frame
        while (frame_limit is None or frame < frame_limit) and window_start(frame) + WINDOW_SAMPLES <= available_end:
            starts.append(frame)
            frame += FRAMES_PER_WINDOW
        return starts

    def _encode(self, frames: list[int]) -> np.ndarray:
        outputs = []
        for i in range(0, len(frames), self.batch_windows):
            batch = frames[i : i + self.batch_windows]
            windows = np.stack(
                [self._buffer[window_start(f) - self._buffer_start :][:WINDOW_SAMPLES] for f in batch]
            )
            rows = self.encoder(windows)
            outputs.extend(rows_to_frames(r) for r in rows)
        self._next_frame = frames[-1] + FRAMES_PER_WINDOW
        drop = window_start(self._next_frame) - self._buffer_start
        self._buffer = self._buffer[drop:]
        self._buffer_start += drop
        return np.concatenate(outputs).astype(np.float32)

    def _available_end(self) -> int:
        return self._buffer_start + len(self._buffer)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add samples; returns the newly final frames ``[n, 1024]`` (n may be 0)."""
        if self._finished:
            raise RuntimeError("the stream is finished; start a new StreamingFeatureExtractor")
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise ValueError("audio chunk contains NaN or infinite samples")
        self._buffer = np.concatenate([self._buffer, samples])
        self._num_samples += len(samples)
        frames = self._ready_windows(self._available_end(), None)
        return self._encode(frames) if frames else np.zeros((0, FEATURE_DIM), np.float32)

    def finish(self) -> np.ndarray:
        """End of audio: pad as offline does and return the last frames, up to ⌈seconds·25⌉ in all."""
        if self._finished:
            raise RuntimeError("finish() was already called")
        self._finished = True
        total = num_video_frames(self._num_samples)
        self._buffer = np.concatenate([self._buffer, np.zeros(BACK_PAD, np.float32)])
        frames = self._ready_windows(self._available_end(), total)
        emitted_before = min(self._next_frame, total)
        if not frames:
            return np.zeros((0, FEATURE_DIM), np.float32)
        return self._encode(frames)[: total - emitted_before]


def stream_features(encoder, chunks: Iterable[np.ndarray]) -> np.ndarray:
    """All frames of a chunked stream, concatenated ``[⌈seconds·25⌉, 1024]``."""
    extractor = StreamingFeatureExtractor(encoder)
    parts = [extractor.push(chunk) for chunk in chunks]
    parts.append(extractor.finish())
    return np.concatenate(parts)


def extract_features(clip: AudioClip, encoder, backend: str = "onnx") -> AudioFeatures:
    """Offline features of a whole clip: ``[⌈seconds·25⌉, 1024]``."""
    frames = stream_features(encoder, [clip.samples])
    return AudioFeatures(frames=torch.from_numpy(frames), duration_s=clip.duration_s, backend=backend)
