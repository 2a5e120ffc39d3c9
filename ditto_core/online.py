"""Realtime mode: speech pushed in chunks as it arrives → rendered frames out as soon as they are final.

Audio features stream with the offline grid; motion is chained the reference's online way (a silent pre-roll of
``overlap`` frames, short blends, frames emitted once no later window writes them), so with the release's online
overlap of 70 the first frames need about 0.9 s of audio and then 10 frames come out per 0.4 s. The frames equal
those of the same session fed all at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
    sampling_s: float = 0.0  # time spent encoding audio and sampling motion
    rendering_s: float = 0.0  # time spent rendering frames (paste-back included)

    @property
    def steady_fps(self) -> float | None:
        if self.first_frame_wall_s is None or self.finished is None or self.frames < 2:
            return None
        return (self.frames - 1) / max(self.finished - self.started - self.first_frame_wall_s, 1e-9)


class OnlineSession:
    """A realtime session with the release's online configuration (``v0.4_hubert_cfg_trt_online.pkl``: its
    overlap, steps, blinks, …); ``emotion``, ``sampler`` and ``render`` left as None keep its values.

    ``check`` runs after every motion window and before every render batch (raise there to stop a session early,
    e.g. when its client has gone). ``renderer``: a stand-in for :func:`~ditto_core.render.render_frames` with
    its arguments (the live server's scheduler, which batches several sessions' frames on one device)."""

    def __init__(self, pipeline: DittoPipeline, portrait: Portrait, emotion=None,
                 sampler: SamplerOptions | None = None, render: RenderOptions | None = None,
                 check: Callable[[], None] | None = None, renderer: Callable[..., Iterator[np.ndarray]] = render_frames):
        self.pipeline, self.portrait = pipeline, portrait
        self.render_options = render or pipeline.render_options(online=True)
        self.check = check
        self.renderer = renderer
        self.stream = SpeechMotionStream(pipeline, portrait, emotion, sampler, online=True, on_window=check)
        self.stats = OnlineStats()

    def _sample(self, step: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        begun = time.perf_counter()
        motion_rows = step()
        self.stats.sampling_s += time.perf_counter() - begun
        return motion_rows

    def _render(self, motion_rows: torch.Tensor) -> Iterator[np.ndarray]:
        if len(motion_rows) == 0:
            return
        motion = Motion(motion_rows, anchor=self.stream.anchor)
        frames = self.renderer(self.pipeline.networks, self.portrait, motion, self.render_options,
                               check=self.check, first_index=self.stats.frames)
        while True:
            begun = time.perf_counter()
            frame = next(frames, None)
            self.stats.rendering_s += time.perf_counter() - begun
            if frame is None:
                return
            if self.stats.first_frame_wall_s is None:
                self.stats.first_frame_wall_s = time.perf_counter() - self.stats.started
                self.stats.first_frame_audio_s = self.stream.features.num_samples / SAMPLE_RATE
            self.stats.frames += 1
            yield frame

    def push_frames(self, samples: np.ndarray) -> Iterator[np.ndarray]:
        """:meth:`push`, yielding each frame as soon as its render batch is done (consume it to the end)."""
        yield from self._render(self._sample(lambda: self.stream.push(samples)))

    def finish_frames(self) -> Iterator[np.ndarray]:
        """:meth:`finish`, yielding each frame as soon as its render batch is done (consume it to the end)."""
        yield from self._render(self._sample(self.stream.finish))
        self.stats.finished = time.perf_counter()

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Add 16-kHz mono samples; returns the frames that became final."""
        return list(self.push_frames(samples))

    def finish(self) -> list[np.ndarray]:
        """End of speech: the remaining frames (⌈seconds·25⌉ in all)."""
        return list(self.finish_frames())
