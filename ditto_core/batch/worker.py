"""The worker: loads the models once and renders job after job, the same in a local process and a Ray actor."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from .jobs import Job, describe_error
from .results import Result

SAMPLED_FPS = 25  # the rate motion is sampled at; other output rates are resampled from it
WORKER_RESTARTS = 3  # how many times a lost worker is replaced (a Ray actor: its max_restarts)


class ModelFilesMissing(FileNotFoundError):
    """A worker's node lacks release files under ``--models``."""


class JobStopped(Exception):
    """Raised inside a render when the driver has asked the workers to stop."""


def missing_model_files(models: str | Path) -> list[Path]:
    """The release files a render needs that are missing under ``models`` on this node."""
    from ..release import check_release

    status = check_release(models)
    return [path for name, path in status.missing.items() if name != "online_config"]


def require_model_files(models: str | Path) -> None:
    missing = missing_model_files(models)
    if missing:
        listed = "\n  ".join(str(path) for path in missing)
        raise ModelFilesMissing(
            f"node {socket.gethostname()} lacks {len(missing)} Ditto model file(s) under {models} (the first: "
            f"{missing[0]}):\n  {listed}\n"
            f"Every worker reads --models on its own node: put the release on a filesystem every node mounts at "
            f"the same path (or copy it there on each node); `python -m ditto_core download --models DIR` fetches "
            f"it.")


def render_job(pipeline, job: Job, check: Callable[[], None], on_frame: Callable[[int], None]) -> int:
    """Render one job with a loaded pipeline: the mp4 (and the motion file), each written atomically. Returns the
    number of frames."""
    from ..audio import load_audio
    from ..motion import SamplerOptions
    from ..stream import clip_for_source, default_fps, speech_to_video

    row = job.row
    clip = load_audio(row.audio)
    portrait = pipeline.register_file(row.portrait, check=check)
    check()
    fps = row.fps or default_fps(portrait.fps, SAMPLED_FPS)
    sampler = SamplerOptions(steps=row.steps, seed=row.seed)
    motion = speech_to_video(job.video, pipeline, portrait, clip_for_source(clip, portrait, fps), row.emotion,
                             sampler, check=check, on_frame=on_frame, fps=fps)
    if job.motion is not None:
        motion.save(job.motion)
    return len(motion)


class Worker:
    """Holds the models (loaded once by :meth:`start`) and renders job after job; the same in a local worker
    process and in a Ray actor. ``should_stop`` is polled at every check (each frame of a source video, each render
    batch); ``on_progress`` sees the frames done of the current job and how many checks it has passed (the
    heartbeat by which the driver tells a stalled worker from a slow one)."""

    def __init__(self, models: str, device: str, threads: int | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 on_progress: Callable[[int, int], None] | None = None):
        self.models, self.device, self.threads = models, device, threads
        self.should_stop = should_stop or (lambda: False)
        self.on_progress = on_progress or (lambda frames, beats: None)
        self.frames = self.beats = 0
        self.pipeline = None
        self.where = f"{socket.gethostname()}:{os.getpid()} {device}"

    def start(self) -> tuple[str, str]:
        """Load the models: ("ready", where) or ("failed", what went wrong)."""
        import torch

        from ..pipeline import DittoPipeline

        try:
            require_model_files(self.models)
            if self.threads:
                torch.set_num_threads(self.threads)
            self.pipeline = DittoPipeline.load(self.models, self.device)
        except Exception as exc:  # reported to the driver, which carries on with the other workers
            return "failed", f"worker {self.where} cannot start: {describe_error(exc)}"
        return "ready", self.where

    def check(self) -> None:
        self.beats += 1
        self.on_progress(self.frames, self.beats)
        if self.should_stop():
            raise JobStopped()

    def frame_done(self, frames: int) -> None:
        self.frames = frames
        self.on_progress(self.frames, self.beats)

    def run(self, job: Job) -> Result:
        """Render ``job``; a failure becomes an error result (the batch goes on), a stop a "stopped" one."""
        start = time.perf_counter()
        self.frame_done(0)
        try:
            self.check()
            frames = render_job(self.pipeline, job, self.check, self.frame_done)
        except JobStopped:
            return Result(job.name, job.row.line, "stopped", key=job.key, worker=self.where)
        except Exception as exc:  # a bad row fails alone; the worker renders the next one
            return Result(job.name, job.row.line, "error", seconds=time.perf_counter() - start,
                          error=f"line {job.row.line}: {describe_error(exc)}", key=job.key, worker=self.where)
        return Result(job.name, job.row.line, "ok", frames, time.perf_counter() - start, key=job.key,
                      worker=self.where)
