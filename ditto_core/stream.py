"""Speech → frames in one pass with the stages overlapped, in memory that does not grow with the audio's length.

Audio is encoded chunk by chunk; a motion window is sampled as soon as its features exist; frames are rendered as
soon as their motion is final. With ``overlap_stages`` the audio encoder and the motion sampler run in a worker
thread while the renderer works on the motion already final, so the stages overlap instead of waiting for each other.
That is the default on CUDA; on a CPU the stages would only compete for the same cores, so they take turns there.
The video encoder always runs in a thread of its own (``write_mp4``). Nothing of the clip is kept
but the current windows: features, conditions and motion rows are dropped once used.

The frames are the same as those of the step-by-step path (encode all audio, sample all motion, render): streaming
features equal offline ones exactly and the motion chain emits each frame once it is final.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from .audio import AudioClip, StreamingFeatureExtractor, extract_features, load_audio
from .audio.clip import FPS, SAMPLE_RATE, num_video_frames
from .motion.motion import MOTION_DIM, Motion, StreamResampler
from .motion.sampler import SamplerOptions
from .pipeline import DittoPipeline, MotionPlan
from .portrait import Portrait
from .render import RenderOptions, render_frames
from .video import VideoEncoding, write_mp4

T = TypeVar("T")
_DONE = object()


def background(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a worker thread, at most ``depth`` items ahead of the consumer. An exception in the
    worker is raised in the consumer; when the consumer stops early, the worker stops after its current item."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = None
        try:
            iterator = iter(items)
            for item in iterator:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((_DONE, exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="ditto-stage", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()


def overlaps_by_default(pipeline: DittoPipeline) -> bool:
    """Whether the stages run side by side unless told otherwise: on CUDA, yes (the GPU computes while the CPU
    pastes back and encodes); on a CPU, no, since there they compete for the same cores (bench/streaming.py on
    2 cores: 0.83–0.93× the speed of one stage after another)."""
    return pipeline.networks.device.type == "cuda"


class SpeechMotionStream:
    """Speech samples in, final motion frames out: streaming HuBERT features → LMDM conditions → chained windows.

    ``online``: the reference's realtime chaining with the release's online configuration (a silent pre-roll of
    ``overlap`` frames, short blends), for live speech; otherwise the offline chaining with the offline
    configuration, the same frames as :func:`~ditto_core.pipeline.sample_motion`. ``clip_frames``: the clip's
    length when known (it sets the blink schedule as the reference does; None when streaming live).
    """

    def __init__(self, pipeline: DittoPipeline, portrait: Portrait, emotion=None,
                 options: SamplerOptions | None = None, online: bool = False, clip_frames: int | None = None,
                 on_window: Callable[[], None] | None = None):
        config = pipeline.require_online_config() if online else pipeline.config
        self.plan = MotionPlan(pipeline.networks.lmdm, portrait, config, emotion, options, clip_frames, online)
        self.features = StreamingFeatureExtractor(pipeline.encoder)
        self.chain = self.plan.chain(on_window)
        self.feature_rows = 0
        self.last_audio_row = None
        self.frames_out = 0
        if online:
            preroll = self.plan.chain_config.overlap
            silence = extract_features(load_audio(np.zeros(max(preroll, 1) * 640, np.float32), SAMPLE_RATE),
                                       pipeline.encoder).frames[:preroll]
            self.chain.push(self.plan.conditions(silence, start=-preroll))

    @property
    def anchor(self) -> torch.Tensor | None:
        """The final value of frame 0 ``[265]`` (known once the first frames are out)."""
        return self.chain.anchor

    def _final(self, frames: torch.Tensor) -> torch.Tensor:
        frames = self.plan.finish(frames, self.chain.anchor, start=self.frames_out)
        self.frames_out += len(frames)
        return frames

    def _push_features(self, rows: np.ndarray) -> torch.Tensor:
        if not len(rows):
            return torch.zeros(0, MOTION_DIM)
        audio = torch.from_numpy(rows)
        cond = self.plan.conditions(audio, start=self.feature_rows)
        self.feature_rows += len(rows)
        self.last_audio_row = audio[-1:]
        return self._final(self.chain.push(cond))

    def push(self, samples: np.ndarray) -> torch.Tensor:
        """Add 16-kHz mono samples; returns the motion frames ``[m, 265]`` that became final (m may be 0)."""
        return self._push_features(self.features.push(samples))

    def finish(self) -> torch.Tensor:
        """End of speech: the remaining frames (⌈seconds·25⌉ in all, after the pre-roll)."""
        motion = self._push_features(self.features.finish())
        return torch.cat([motion, self._final(self.chain.finish(self._padding()))])

    def _padding(self) -> torch.Tensor | None:
        """Online, the last window is padded as the reference pads it: the last audio row repeated, conditioned
        frame by frame (emotion and eye rows go on); offline, the chain repeats the last condition row."""
        if not self.plan.online or self.last_audio_row is None:
            return None
        rows = self.last_audio_row.expand(self.chain.seq_len, -1)
        return self.plan.conditions(rows, start=self.feature_rows)

    def motion(self, blocks: list[torch.Tensor], audio_seconds: float, fps: float = FPS) -> Motion:
        """The Motion made of the blocks this stream returned (resampled to ``fps`` when that is not 25)."""
        metadata = self.plan.metadata(audio_seconds) | ({"sampled_fps": FPS} if fps != FPS else {})
        return Motion(torch.cat(blocks), fps=fps, anchor=self.anchor, metadata=metadata)


MIN_FPS, MAX_FPS = 10.0, 60.0


def default_fps(source_fps: float | None, otherwise: float) -> float:
    """The output rate when none is chosen: a source video's own (``source_fps``, e.g. ``portrait.fps``) when
    known, else ``otherwise``."""
    if source_fps is None:
        return otherwise
    if not MIN_FPS <= source_fps <= MAX_FPS:
        raise ValueError(f"the source video runs at {source_fps:g} fps, outside the {MIN_FPS:g}-{MAX_FPS:g} fps "
                         f"this renders; choose the output rate (--fps on the command line, fps on the render node, "
                         f"e.g. 30)")
    return source_fps


def clip_for_source(clip: AudioClip, portrait: Portrait, fps: float) -> AudioClip:
    """The speech as long as the video will be: cut where a source video ends when its loop policy is
    "shortest", otherwise as it is."""
    frames = portrait.timeline.output_frames(fps)
    return clip if frames is None else clip.first_frames(frames, fps)


def check_fps(fps: float) -> None:
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"the frame rate must be between {MIN_FPS:g} and {MAX_FPS:g} fps, got {fps:g}")


def speech_to_frames(
    pipeline: DittoPipeline,
    portrait: Portrait,
    clip: AudioClip,
    emotion=None,
    sampler: SamplerOptions | None = None,
    render: RenderOptions | None = None,
    chunk_seconds: float = 2.0,
    overlap_stages: bool | None = None,
    check: Callable[[], None] | None = None,
    on_motion: Callable[[torch.Tensor], None] | None = None,
    stream: SpeechMotionStream | None = None,
    fps: float = FPS,
) -> Iterator[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 for the clip, ⌈seconds·25⌉ of them, yielded as soon as each is rendered.

    ``emotion``, ``sampler`` and ``render`` left as None follow the pipeline's configuration (as released).

    ``overlap_stages``: sample in a worker thread while rendering (default: :func:`overlaps_by_default`).
    ``check`` runs between chunks and render batches (raise there to cancel); ``on_motion`` sees each block of
    final motion ``[m, 265]`` (e.g. to keep the motion); ``stream``: a SpeechMotionStream for this clip set up by
    the caller (to read its Motion afterwards; ``emotion`` and ``sampler`` are then its own). ``fps``: the output
    frame rate, 10 to 60: the motion (sampled at 25) is resampled in keypoint space as it becomes final,
    ⌈seconds × fps⌉ frames; ``on_motion`` then sees the resampled blocks.
    """
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    check_fps(fps)
    if stream is None:
        stream = SpeechMotionStream(pipeline, portrait, emotion, sampler, clip_frames=clip.num_frames,
                                    on_window=check)
    render = render or pipeline.render_options()
    chunk = max(int(chunk_seconds * SAMPLE_RATE), 1)
    if overlap_stages is None:
        overlap_stages = overlaps_by_default(pipeline)

    def motion_blocks() -> Iterator[torch.Tensor]:
        for offset in range(0, len(clip.samples), chunk):
            if check is not None:
                check()
            block = stream.push(clip.samples[offset : offset + chunk])
            if len(block):
                yield block
        yield stream.finish()

    def output_blocks() -> Iterator[torch.Tensor]:
        if fps == FPS:
            yield from motion_blocks()
            return
        resampler = StreamResampler(FPS, fps, num_video_frames(len(clip.samples), fps))
        for block in motion_blocks():
            if len(out := resampler.push(block)):
                yield out
        yield resampler.finish()

    # Frames are rendered in batches aligned to multiples of the batch size from frame 0, as the step-by-step
    # path renders them: batched convolutions round differently for other groupings (±1 level in a few pixels).
    rendered, pending = 0, torch.zeros(0, MOTION_DIM)
    for block in background(output_blocks()) if overlap_stages else output_blocks():
        if on_motion is not None:
            on_motion(block)
        pending = torch.cat([pending, block])
        ready = len(pending) - len(pending) % render.batch_size
        if ready:
            motion = Motion(pending[:ready], fps=fps, anchor=stream.anchor)
            yield from render_frames(pipeline.networks, portrait, motion, render, check=check, first_index=rendered)
            rendered, pending = rendered + ready, pending[ready:]
    if len(pending):
        yield from render_frames(pipeline.networks, portrait, Motion(pending, fps=fps, anchor=stream.anchor), render,
                                 check=check, first_index=rendered)


def speech_to_video(
    path: str | Path,
    pipeline: DittoPipeline,
    portrait: Portrait,
    clip: AudioClip,
    emotion=None,
    sampler: SamplerOptions | None = None,
    render: RenderOptions | None = None,
    encoding: VideoEncoding = VideoEncoding(),
    check: Callable[[], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    overlap_stages: bool | None = None,
    fps: float = FPS,
) -> Motion:
    """Portrait + speech → an mp4 at ``path`` (h264 with the speech as it came, AAC, written atomically), the stages
    overlapped where that pays (``overlap_stages``, default :func:`overlaps_by_default`); returns the sampled
    motion (``[clip.num_frames, 265]``, to edit or render again)."""
    overlap = overlaps_by_default(pipeline) if overlap_stages is None else overlap_stages
    blocks = []
    stream = SpeechMotionStream(pipeline, portrait, emotion, sampler, clip_frames=clip.num_frames, on_window=check)
    frames = speech_to_frames(pipeline, portrait, clip, render=render, overlap_stages=overlap, check=check,
                              on_motion=blocks.append, stream=stream, fps=fps)
    write_mp4(path, frames, fps, clip, encoding, on_frame, pipeline.networks.device.type)
    return stream.motion(blocks, clip.duration_s, fps)
