"""Realtime mode: speech pushed in chunks as it arrives → rendered frames out as soon as they are final.

Audio features stream with the offline grid; motion is chained the reference's online way (a silent pre-roll of
``overlap`` frames, short blends, frames emitted once no later window writes them), so with the release's online
overlap of 70 the first frames need about 0.9 s of audio and then 10 frames come out per 0.4 s. The frames equal
those of the same session fed all at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .audio.clip import SAMPLE_RATE
from .motion.motion import Motion
from .motion.sampler import SamplerOptions
from .pipeline import DittoPipeline
from .portrait import Portrait
from .render import RenderOptions, render_frames
from .stream import SpeechMotionStream


@dataclass
class OnlineStats:
    first_frame_audio_s: float | None = None  # audio pushed before the first frame came out
    first_frame_wall_s: float | None = None  # wall time from the first push to the first frame
    frames: int = 0
    started: float | None = None
    finished: float | None = None

    @property
    def steady_fps(self) -> float | None:
        if self.first_frame_wall_s is None or self.finished is None or self.frames < 2:
            return None
        return (self.frames - 1) / max(self.finished - self.started - self.first_frame_wall_s, 1e-9)


class OnlineSession:
    """A realtime session with the release's online configuration (``v0.4_hubert_cfg_trt_online.pkl``: its
    overlap, steps, blinks, …); ``emotion``, ``sampler`` and ``render`` left as None keep its values."""

    def __init__(self, pipeline: DittoPipeline, portrait: Portrait, emotion=None,
                 sampler: SamplerOptions | None = None, render: RenderOptions | None = None):
        self.pipeline, self.portrait = pipeline, portrait
        self.render_options = render or pipeline.render_options(online=True)
        self.stream = SpeechMotionStream(pipeline, portrait, emotion, sampler, online=True)
        self.stats = OnlineStats()

    def _render(self, motion_rows: torch.Tensor) -> list[np.ndarray]:
        if len(motion_rows) == 0:
            return []
        motion = Motion(motion_rows, anchor=self.stream.anchor)
        frames = list(render_frames(self.pipeline.networks, self.portrait, motion, self.render_options,
                                    first_index=self.stats.frames))
        if self.stats.first_frame_wall_s is None:
            self.stats.first_frame_wall_s = time.perf_counter() - self.stats.started
            self.stats.first_frame_audio_s = self.stream.features.num_samples / SAMPLE_RATE
        self.stats.frames += len(frames)
        return frames

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16-kHz mono samples; returns the frames that became final."""
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        return self._render(self.stream.push(samples))

    def finish(self) -> list[np.ndarray]:
        """End of speech: the remaining frames (⌈seconds·25⌉ in all)."""
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        frames = self._render(self.stream.finish())
        self.stats.finished = time.perf_counter()
        return frames
