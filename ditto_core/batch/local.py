"""The local executor: worker processes on this machine, fed through queues."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Iterator

from .jobs import Job
from .worker import Worker


def local_devices(workers: int | None) -> list[str]:
    """One device per worker: one worker per CUDA device by default, one in all on a CPU-only machine."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    count = workers or max(gpus, 1)
    return [f"cuda:{index % gpus}" if gpus else "cpu" for index in range(count)]


def cpu_threads(workers: int) -> int:
    """Torch threads per worker so that the workers share this machine's cores instead of competing for all."""
    return max(1, (os.cpu_count() or 1) // workers)


def local_worker_main(wid: int, models: str, device: str, threads: int, tasks, events, stop, frames) -> None:
    """A local worker process: load the models once, then render the jobs the driver puts in ``tasks`` until it
    sends None or sets ``stop``. Ctrl-C is the driver's to handle: it stops the workers through ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_frame(count: int) -> None:
        frames.value = count

    worker = Worker(models, device, threads, stop.is_set, on_frame)
    state, detail = worker.start()
    events.put((state, wid, detail))
    if state != "ready":
        return
    for job in incoming(tasks, stop):
        events.put(("done", wid, worker.run(job)))


def incoming(tasks, stop) -> Iterator[Job]:
    """The jobs from the driver, until it sends None, sets ``stop`` or is gone."""
    parent = multiprocessing.parent_process()
    while not stop.is_set() and (parent is None or parent.is_alive()):
        try:
            job = tasks.get(timeout=0.2)
        except queue.Empty:
            continue
        if job is None:
            return
        yield job


class LocalExecutor:
    """Worker processes on this machine ("spawn": each starts a fresh interpreter and loads its own models)."""

    def __init__(self, models: str, workers: int | None):
        context = multiprocessing.get_context("spawn")
        self.devices = local_devices(workers)
        threads = cpu_threads(len(self.devices))
        self.stop_flag = context.Event()
        self.events_queue = context.Queue()
        self.tasks = [context.Queue() for _ in self.devices]
        self.frames = [context.Value("q", 0, lock=False) for _ in self.devices]
        self.processes = [
            context.Process(target=local_worker_main, name=f"ditto-batch-{wid}", daemon=True,
                            args=(wid, str(models), device, threads, self.tasks[wid], self.events_queue,
                                  self.stop_flag, self.frames[wid]))
            for wid, device in enumerate(self.devices)]
        self.reported_dead: set[int] = set()
        self.worker_count = len(self.devices)

    def describe(self) -> str:
        return f"{len(self.devices)} local worker(s) on {', '.join(sorted(set(self.devices)))}"

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def submit(self, wid: int, job: Job) -> None:
        self.frames[wid].value = 0
        self.tasks[wid].put(job)

    def events(self, timeout: float) -> list[tuple]:
        found = []
        try:
            found.append(self.events_queue.get(timeout=timeout))
            while True:
                found.append(self.events_queue.get_nowait())
        except queue.Empty:
            pass
        return found + self.deaths()

    def deaths(self) -> list[tuple]:
        """A "lost" event for each process that ended abnormally (killed, crashed)."""
        lost = []
        for wid, process in enumerate(self.processes):
            if wid not in self.reported_dead and process.exitcode not in (None, 0):
                self.reported_dead.add(wid)
                lost.append(("lost", wid, f"worker process {process.pid} ended with exit code {process.exitcode}"))
        return lost

    def frames_in_flight(self, busy: dict[int, Job]) -> int:
        return sum(self.frames[wid].value for wid in busy)

    def stop(self) -> None:
        self.stop_flag.set()

    def close(self) -> None:
        for tasks in self.tasks:
            tasks.put(None)
        started = [process for process in self.processes if process.pid is not None]
        deadline = time.monotonic() + 10
        for process in started:
            process.join(max(deadline - time.monotonic(), 0.1))
        for process in started:
            if process.is_alive():  # stuck: the sweep of temporary files after close removes what it leaves
                process.kill()
                process.join()
        self.events_queue.cancel_join_thread()
