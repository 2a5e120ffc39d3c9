"""Raw PCM bytes from a client → 16-kHz float32 samples, with the exact total a clip's frame count needs."""

from __future__ import annotations

import math

import numpy as np

from ..audio.clip import FPS, SAMPLE_RATE, num_video_frames
from .protocol import FORMATS, LiveError


class PcmStream:
    """Raw PCM bytes (``s16le`` or ``f32le``, mono, any rate) in, 16-kHz float32 samples out.

    Messages may split samples anywhere. Other rates go through soxr's streaming resampler (the same samples as
    the one-shot resampler, whatever the chunking); a few samples are held back until :meth:`finish` so that the
    total is set exactly: the frames made from it are ⌈seconds × 25⌉ of the input's own duration.
    """

    HOLD = 16  # resampled samples kept back to settle the exact total at the end

    def __init__(self, fmt: str, rate: int):
        self.dtype = FORMATS[fmt]
        self.rate = rate
        self.samples_in = 0  # input samples (at ``rate``)
        self.samples_out = 0  # 16-kHz samples handed out
        self._partial = b""
        self._held = np.zeros(0, np.float32)
        self._resampler = None
        if rate != SAMPLE_RATE:
            import soxr

            self._resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    @property
    def seconds(self) -> float:
        return self.samples_in / self.rate

    @property
    def expected_frames(self) -> int:
        """⌈seconds × 25⌉ of the input so far, computed in floating point as the rest of the pack does."""
        return math.ceil(self.samples_in / self.rate * FPS)

    def _decode(self, data: bytes) -> np.ndarray:
        if self._partial:
            data = self._partial + data
        whole = len(data) - len(data) % self.dtype.itemsize
        self._partial = bytes(data[whole:])
        samples = np.frombuffer(data, self.dtype, count=whole // self.dtype.itemsize)
        if self.dtype.kind == "f":
            finite = np.isfinite(samples)
            if not finite.all():
                raise LiveError(f"the audio holds {int((~finite).sum())} NaN or infinite samples; f32le samples must "
                                f"be finite numbers, normally between -1 and 1")
            samples = samples.astype(np.float32)
        else:
            samples = samples.astype(np.float32) / 32768.0
        self.samples_in += len(samples)
        return samples

    def _release(self, pending: np.ndarray, keep: int) -> np.ndarray:
        cut = max(len(pending) - keep, 0)
        self._held = pending[cut:]
        self.samples_out += cut
        return pending[:cut]

    def push(self, data: bytes) -> np.ndarray:
        """The 16-kHz samples this message completes (possibly none)."""
        samples = self._decode(data)
        if self._resampler is None:
            self.samples_out += len(samples)
            return samples
        resampled = self._resampler.resample_chunk(samples)
        return self._release(np.concatenate([self._held, resampled]), self.HOLD)

    def finish(self) -> np.ndarray:
        """The last 16-kHz samples: afterwards exactly as many were handed out as give ⌈seconds × 25⌉ frames."""
        if self._partial:
            raise LiveError(f"the audio stopped in the middle of a sample ({len(self._partial)} stray byte(s)); send "
                            f"whole {self.dtype.itemsize}-byte samples")
        if self._resampler is None:
            return np.zeros(0, np.float32)
        pending = np.concatenate([self._held, self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
        self._held = np.zeros(0, np.float32)
        frames = self.expected_frames
        # the resampler rounds the total to the nearest sample; settle it to the input's own frame count
        while len(pending) and num_video_frames(self.samples_out + len(pending)) > frames:
            pending = pending[:-1]
        padding = 0
        while num_video_frames(self.samples_out + len(pending) + padding) < frames:
            padding += 1
        pending = np.concatenate([pending, np.zeros(padding, np.float32)])
        self.samples_out += len(pending)
        return pending
