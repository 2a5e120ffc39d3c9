"""Speech → frames in one pass with the stages overlapped, in memory that does not grow with the audio's length.

Audio is encoded chunk by chunk; a motion window is sampled as soon as its features exist; frames are rendered as
soon as their motion is final. With ``overlap_stages`` the audio encoder and the motion sampler run in a worker
thread while the renderer works on the motion already final, and ``speech_to_video`` / ``encode_video`` put the
renderer in another while the video encoder runs, so the stages overlap instead of waiting for each other. That
is the default on CUDA; on a CPU the stages would only compete for the same cores, so they take turns there. Nothing of the clip is kept
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
from .audio.clip import FPS, SAMPLE_RATE
from .motion.motion import MOTION_DIM, Motion
from .motion.sampler import MotionChain, SamplerOptions, WindowSampler, first_frame_vector
from .pipeline import DittoPipeline, motion_conditions, sampled_metadata
from .portrait import Portrait
from .render import RenderOptions, render_frames
from .video import write_mp4

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


def encode_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, clip: AudioClip | None, crf: int = 18,
                 on_frame: Callable[[int], None] | None = None, overlap: bool = True) -> int:
    """:func:`~ditto_core.video.write_mp4`, with ``overlap`` the frames made in a worker thread while the encoder
    runs. Returns the number of frames; on any failure the worker is stopped before the error propagates."""
    if not overlap:
        return write_mp4(path, frames, fps, clip, crf, on_frame)
    with contextlib.closing(background(frames)) as made:
        return write_mp4(path, made, fps, clip, crf, on_frame)


class SpeechMotionStream:
    """Speech samples in, final motion frames out: streaming HuBERT features → LMDM conditions → chained windows.

    ``online``: the reference's realtime chaining (a silent pre-roll of ``overlap`` frames, short blends), for
    live speech; otherwise the offline chaining, the same frames as :func:`~ditto_core.pipeline.sample_motion`.
    """

    def __init__(self, pipeline: DittoPipeline, portrait: Portrait, emotion="neutral",
                 options: SamplerOptions = SamplerOptions(), online: bool = False,
                 on_window: Callable[[], None] | None = None):
        self.portrait, self.emotion = portrait, emotion
        lmdm = pipeline.networks.lmdm
        self.cond_dim = lmdm.config.cond_dim
        self.features = StreamingFeatureExtractor(pipeline.encoder)
        self.chain = MotionChain(WindowSampler(lmdm, options.steps, options.seed),
                                 first_frame_vector(portrait.keypoints), options, online=online, on_window=on_window)
        self.feature_rows = 0
        if online:
            preroll = options.overlap
            silence = extract_features(load_audio(np.zeros(max(preroll, 1) * 640, np.float32), SAMPLE_RATE),
                                       pipeline.encoder).frames[:preroll]
            self.chain.push(motion_conditions(portrait, silence, emotion, self.cond_dim, start=-preroll))

    @property
    def anchor(self) -> torch.Tensor | None:
        """The final value of frame 0 ``[265]`` (known once the first frames are out)."""
        return self.chain.anchor

    def _push_features(self, rows: np.ndarray) -> torch.Tensor:
        if not len(rows):
            return torch.zeros(0, MOTION_DIM)
        cond = motion_conditions(self.portrait, torch.from_numpy(rows), self.emotion, self.cond_dim,
                                 start=self.feature_rows)
        self.feature_rows += len(rows)
        return self.chain.push(cond)

    def push(self, samples: np.ndarray) -> torch.Tensor:
        """Add 16-kHz mono samples; returns the motion frames ``[m, 265]`` that became final (m may be 0)."""
        return self._push_features(self.features.push(samples))

    def finish(self) -> torch.Tensor:
        """End of speech: the remaining frames (⌈seconds·25⌉ in all, after the pre-roll)."""
        motion = self._push_features(self.features.finish())
        return torch.cat([motion, self.chain.finish()])


def speech_to_frames(
    pipeline: DittoPipeline,
    portrait: Portrait,
    clip: AudioClip,
    emotion="neutral",
    sampler: SamplerOptions = SamplerOptions(),
    render: RenderOptions = RenderOptions(),
    chunk_seconds: float = 2.0,
    overlap_stages: bool | None = None,
    check: Callable[[], None] | None = None,
    on_motion: Callable[[torch.Tensor], None] | None = None,
) -> Iterator[np.ndarray]:
    """Frames ``[H, W, 3]`` uint8 for the clip, ⌈seconds·25⌉ of them, yielded as soon as each is rendered.

    ``overlap_stages``: sample in a worker thread while rendering (default: :func:`overlaps_by_default`).
    ``check`` runs between chunks and render batches (raise there to cancel); ``on_motion`` sees each block of
    final motion ``[m, 265]`` (e.g. to keep the motion).
    """
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
    stream = SpeechMotionStream(pipeline, portrait, emotion, sampler, on_window=check)
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

    rendered = 0
    for block in background(motion_blocks()) if overlap_stages else motion_blocks():
        if on_motion is not None:
            on_motion(block)
        motion = Motion(block, anchor=stream.anchor)
        yield from render_frames(pipeline.networks, portrait, motion, render, check=check, first_index=rendered)
        rendered += len(block)


def speech_to_video(
    path: str | Path,
    pipeline: DittoPipeline,
    portrait: Portrait,
    clip: AudioClip,
    emotion="neutral",
    sampler: SamplerOptions = SamplerOptions(),
    render: RenderOptions = RenderOptions(),
    crf: int = 18,
    check: Callable[[], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
    overlap_stages: bool | None = None,
) -> Motion:
    """Portrait + speech → an mp4 at ``path`` (h264 with the speech as AAC, written atomically), the stages
    overlapped where that pays (``overlap_stages``, default :func:`overlaps_by_default`); returns the sampled
    motion (``[clip.num_frames, 265]``, to edit or render again)."""
    overlap = overlaps_by_default(pipeline) if overlap_stages is None else overlap_stages
    blocks = []
    frames = speech_to_frames(pipeline, portrait, clip, emotion, sampler, render, overlap_stages=overlap, check=check,
                              on_motion=blocks.append)
    encode_video(path, frames, FPS, clip, crf, on_frame, overlap)
    return Motion(torch.cat(blocks), fps=FPS, metadata=sampled_metadata(sampler, emotion, clip.duration_s))
