"""The dispatcher: feeds jobs to an executor's workers, records every result as it comes, and brings back the
work of a worker that dies or stalls (its job retried, the worker replaced).

An executor (``LocalExecutor``, ``RayExecutor``) has ``worker_count`` and ``start()``, ``submit(wid, job)``,
``events(timeout)`` (tuples: ("ready" | "failed", wid, text), ("done", wid, Result), ("lost", wid, text)),
``progress(busy)`` ({wid: (frames done, heartbeat)}), ``restart(wid)``, ``kill(wid)`` (ended, to be replaced),
``give_up(wid)`` (ended for good), ``stop()`` and ``close()``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TextIO

from .errors import BatchError
from .jobs import Job
from .report import Progress
from .results import Result
from .worker import WORKER_RESTARTS

STALL_TIMEOUT_S = 1800.0  # a busy worker whose heartbeat has not moved for this long is treated as dead
START_TIMEOUT_S = 600.0  # at least this long for a worker to load its models (a cold node, a slow disk)


class Dispatcher:
    """Feeds the jobs to the executor's workers, one at a time each, and records every result as it comes. A job
    whose worker is lost is tried again up to ``retries`` times (each lost attempt recorded as "lost"); a lost
    worker is replaced up to ``WORKER_RESTARTS`` times; a busy worker without progress for ``stall_timeout``
    seconds (0: never) is ended and counts as lost, and a worker that has not started within ``start_timeout``
    seconds (default: the stall timeout, at least START_TIMEOUT_S; 0: never) is ended and given up (a Ray actor
    that no node can take, models that never load)."""

    def __init__(self, executor, jobs: list[Job], record: Callable[[Result], None], progress: Progress,
                 err: TextIO, retries: int = 1, stall_timeout: float = STALL_TIMEOUT_S,
                 start_timeout: float | None = None):
        self.executor, self.record, self.progress, self.err = executor, record, progress, err
        self.retries, self.stall_timeout = retries, stall_timeout
        self.start_timeout = start_timeout if start_timeout is not None else (
            stall_timeout and max(stall_timeout, START_TIMEOUT_S))
        self.pending = deque(jobs)
        self.busy: dict[int, Job] = {}
        self.idle: set[int] = set()
        self.starting = set(range(executor.worker_count))
        self.started_at: dict[int, float] = {}  # wid → when it was (re)started
        self.restarts = [0] * executor.worker_count
        self.lost_attempts: dict[str, int] = {}
        self.moved: dict[int, tuple[tuple | None, float]] = {}  # wid → (progress last seen, when it changed)
        self.failures: list[str] = []
        self.recorded = 0
        self.stopping = False

    def run(self) -> None:
        self.started_at = dict.fromkeys(self.starting, time.monotonic())
        self.executor.start()
        while self.pending or self.busy:
            for event in self.executor.events(timeout=0.5):
                self.handle(*event)
            self.feed()
            if not (self.starting or self.idle or self.busy) and self.pending:
                raise BatchError(f"no worker is left to render the {len(self.pending)} remaining job(s) (see the "
                                 f"warnings above); the first: {self.failures[0].splitlines()[0]}")
            seen = self.executor.progress(self.busy)
            self.progress.refresh(sum(frames for frames, _ in seen.values()))
            self.watch(seen)

    def handle(self, kind: str, wid: int, detail) -> None:
        if kind == "ready" and wid in self.starting:
            self.starting.discard(wid)
            self.idle.add(wid)
        elif kind == "failed" and wid in self.starting:
            self.starting.discard(wid)
            self.warn(detail)
        elif kind == "done" and wid in self.busy:
            self.finish(wid, detail)
        elif kind == "lost":
            self.lose(wid, detail)

    def finish(self, wid: int, result: Result) -> None:
        job = self.busy.pop(wid)
        self.idle.add(wid)
        if result.status == "stopped":  # not recorded: the next run renders it
            self.pending.appendleft(job)
            return
        self.keep(replace(result, attempt=self.lost_attempts.get(job.name, 0) + 1))

    def keep(self, result: Result) -> None:
        self.recorded += 1
        self.record(result)

    def lose(self, wid: int, message: str) -> None:
        """Worker ``wid`` is gone: its job is retried (or fails when its retries are spent) and the worker is
        replaced while it has restarts left. After a stop, nothing is retried or replaced."""
        if wid not in self.starting | self.idle | set(self.busy):
            return
        self.starting.discard(wid)
        self.idle.discard(wid)
        job = self.busy.pop(wid, None)
        if self.stopping:
            return
        replaced = self.restarts[wid] < WORKER_RESTARTS
        self.warn(f"{message}; " + (f"a new worker takes its place (restart {self.restarts[wid] + 1} of "
                                    f"{WORKER_RESTARTS})" if replaced else "it is not replaced (no restarts left)"))
        if job is not None:
            self.retry(job, message)
        if replaced:
            self.restarts[wid] += 1
            self.starting.add(wid)
            self.started_at[wid] = time.monotonic()
            self.executor.restart(wid)

    def retry(self, job: Job, message: str) -> None:
        lost = self.lost_attempts[job.name] = self.lost_attempts.get(job.name, 0) + 1
        line = job.row.line
        if lost <= self.retries:
            self.record(Result(job.name, line, "lost", key=job.key, attempt=lost,
                               error=f"line {line}: attempt {lost} was lost with its worker ({message}); trying "
                                     f"again ({lost} of {self.retries} retries)"))
            self.pending.appendleft(job)
        else:
            self.keep(Result(job.name, line, "error", key=job.key, attempt=lost,
                             error=f"line {line}: the worker rendering it was lost ({message}), {lost} time(s) in "
                                   f"all; run the batch again to retry it, or give more --retries"))

    def watch(self, seen: dict[int, tuple[int, int]]) -> None:
        """End every busy worker whose progress has not moved for ``stall_timeout`` seconds, and give up every
        worker that has not started within ``start_timeout`` seconds."""
        now = time.monotonic()
        for wid in sorted(self.starting):
            if self.start_timeout and now - self.started_at[wid] > self.start_timeout:
                self.executor.give_up(wid)
                self.starting.discard(wid)
                self.warn(f"worker {wid} did not start within {self.start_timeout:g} s and was given up")
        for wid, state in seen.items():
            last, since = self.moved.get(wid, (None, now))
            if state != last:
                self.moved[wid] = (state, now)
            elif self.stall_timeout and now - since > self.stall_timeout:
                self.executor.kill(wid)
                self.lose(wid, f"worker {wid} made no progress for {self.stall_timeout:g} s (--stall-timeout) "
                               f"and was ended")

    def warn(self, message: str) -> None:
        self.failures.append(message)
        self.progress.clear()
        print(f"warning: {message}", file=self.err, flush=True)

    def feed(self) -> None:
        while self.pending and self.idle:
            wid = self.idle.pop()
            job = self.pending.popleft()
            self.busy[wid] = job
            self.moved[wid] = (None, time.monotonic())
            self.executor.submit(wid, job)

    def drain(self, grace: float) -> None:
        """After a stop: take the results of the jobs in flight as their workers stop (or finish) them."""
        self.stopping = True
        self.pending.clear()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            for event in self.executor.events(timeout=0.2):
                self.handle(*event)
        self.pending.clear()
