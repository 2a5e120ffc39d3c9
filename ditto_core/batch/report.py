"""What the user sees while a batch runs: the progress line, one line per job and the summary."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from .results import Result


@dataclass
class Summary:
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    not_done: int = 0
    lost: int = 0  # attempts lost with their worker and retried (not outcomes)

    def count(self, result: Result) -> None:
        if result.status == "ok":
            self.ok += 1
        elif result.status == "skipped":
            self.skipped += 1
        elif result.status == "lost":
            self.lost += 1
        else:
            self.failed += 1

    @property
    def all_good(self) -> bool:
        return self.failed == 0 and self.not_done == 0

    def line(self) -> str:
        text = f"{self.ok} ok, {self.skipped} skipped, {self.failed} failed"
        text += f" ({self.lost} attempt(s) lost with a worker, retried)" if self.lost else ""
        return text + (f", {self.not_done} not done (run the same command again to resume)" if self.not_done else "")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


@dataclass
class Progress:
    """The batch's progress line on stderr (rewritten in place on a terminal, one line per job otherwise) and
    one line per finished job on stdout."""

    total: int
    out: TextIO = sys.stdout
    err: TextIO = sys.stderr
    finished: int = 0
    rendered: int = 0  # jobs a worker ended in this run (ok or error), for the rate
    frames: int = 0
    start: float = field(default_factory=time.perf_counter)
    shown: int = 0

    @property
    def interactive(self) -> bool:
        return self.err.isatty()

    def job(self, result: Result) -> None:
        self.finished += result.status != "lost"  # a lost attempt is retried: the job is not finished
        if result.worker is not None and result.status != "skipped":  # rendered in this run
            self.rendered += 1
            self.frames += result.frames
        self.clear()
        print(job_line(result), file=self.out, flush=True)
        if not self.interactive:
            print(self.line(), file=self.err, flush=True)

    def line(self, frames_in_flight: int = 0) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        frames = self.frames + frames_in_flight
        remaining = self.total - self.finished
        eta = format_duration(remaining * elapsed / self.rendered) if self.rendered else "?"
        return (f"batch: {self.finished}/{self.total} jobs, {frames} frames, {frames / elapsed:.2f} frames/s, "
                f"{3600 * self.rendered / elapsed:.1f} jobs/h, elapsed {format_duration(elapsed)}, ETA {eta}")

    def refresh(self, frames_in_flight: int) -> None:
        if self.interactive:
            text = self.line(frames_in_flight)
            print("\r" + text.ljust(self.shown), end="", file=self.err, flush=True)
            self.shown = len(text)

    def clear(self) -> None:
        if self.interactive and self.shown:
            print("\r" + " " * self.shown + "\r", end="", file=self.err, flush=True)
            self.shown = 0


def job_line(result: Result) -> str:
    if result.status == "ok":
        return f"ok      {result.name}: {result.frames} frames in {result.seconds:.1f} s"
    if result.status == "skipped":
        return f"skipped {result.name}: already rendered from the same inputs and settings"
    if result.status == "lost":
        return f"retry   {result.name}: {result.error}"
    return f"error   {result.name}: {result.error}"
