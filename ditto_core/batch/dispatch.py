"""The dispatcher: feeds jobs to an executor's workers and records every result as it comes."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

from .errors import BatchError
from .jobs import Job
from .report import Progress
from .results import Result


class Dispatcher:
    """Feeds the jobs to the executor's workers, one at a time each, and records every result as it comes."""

    def __init__(self, executor, jobs: list[Job], record: Callable[[Result], None], progress: Progress,
                 err: TextIO):
        self.executor, self.record, self.progress, self.err = executor, record, progress, err
        self.pending = deque(jobs)
        self.busy: dict[int, Job] = {}
        self.idle: set[int] = set()
        self.starting = set(range(executor.worker_count))
        self.failures: list[str] = []
        self.recorded = 0

    def run(self) -> None:
        self.executor.start()
        while self.pending or self.busy:
            for event in self.executor.events(timeout=0.5):
                self.handle(*event)
            self.feed()
            if not (self.starting or self.idle or self.busy) and self.pending:
                raise BatchError(f"no worker is left to render the {len(self.pending)} remaining job(s) (see the "
                                 f"warnings above); the first: {self.failures[0].splitlines()[0]}")
            self.progress.refresh(self.executor.frames_in_flight(self.busy))

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
        self.keep(result)

    def keep(self, result: Result) -> None:
        self.recorded += 1
        self.record(result)

    def lose(self, wid: int, message: str) -> None:
        if wid not in self.starting | self.idle | set(self.busy):
            return
        self.starting.discard(wid)
        self.idle.discard(wid)
        job = self.busy.pop(wid, None)
        self.warn(message)
        if job is not None:
            self.keep(Result(job.name, job.row.line, "error", key=job.key,
                               error=f"line {job.row.line}: the worker rendering it was lost ({message}); run the "
                                     f"batch again to retry it"))

    def warn(self, message: str) -> None:
        self.failures.append(message)
        self.progress.clear()
        print(f"warning: {message}", file=self.err, flush=True)

    def feed(self) -> None:
        while self.pending and self.idle:
            wid = self.idle.pop()
            job = self.pending.popleft()
            self.busy[wid] = job
            self.executor.submit(wid, job)

    def drain(self, grace: float) -> None:
        """After a stop: take the results of the jobs in flight as their workers stop (or finish) them."""
        self.pending.clear()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            for event in self.executor.events(timeout=0.2):
                self.handle(*event)
        self.pending.clear()
