"""The local executor: worker processes on this machine, each with a pipe of its own to the driver (a worker
killed mid-message breaks only its own pipe, never a lock the others share), replaced when one dies."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from .jobs import Job
from .worker import Worker

CLOSE_GRACE_S = 10.0  # how long close() waits for the workers to exit before killing them


def local_devices(workers: int | None) -> list[str]:
    """One device per worker: one worker per CUDA device by default, one in all on a CPU-only machine."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    count = workers or max(gpus, 1)
    return [f"cuda:{index % gpus}" if gpus else "cpu" for index in range(count)]


def cpu_threads(workers: int) -> int:
    """Torch threads per worker so that the workers share this machine's cores instead of competing for all."""
    return max(1, (os.cpu_count() or 1) // workers)


def local_worker_main(models: str, device: str, threads: int, conn: Connection, stop, progress) -> None:
    """A local worker process: load the models once, then render the jobs the driver sends on ``conn`` until it
    sends None, sets ``stop`` or is gone; ``progress`` holds the current job's frames done and heartbeat. Ctrl-C is
    the driver's to handle: it stops the workers through ``stop``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_progress(frames: int, beats: int) -> None:
        progress[0], progress[1] = frames, beats

    worker = Worker(models, device, threads, lambda: bool(stop.value), on_progress)
    state, detail = worker.start()
    conn.send((state, detail))
    if state != "ready":
        return
    for job in incoming(conn, stop):
        conn.send(("done", worker.run(job)))


def incoming(conn: Connection, stop) -> Iterator[Job]:
    """The jobs from the driver, until it sends None, sets ``stop`` or is gone."""
    parent = multiprocessing.parent_process()
    while not stop.value and (parent is None or parent.is_alive()):
        if not conn.poll(0.2):
            continue
        try:
            job = conn.recv()
        except EOFError:  # the driver closed its end
            return
        if job is None:
            return
        yield job


def ending(process: multiprocessing.Process) -> str:
    code = process.exitcode
    killed = f" (killed by {signal.Signals(-code).name})" if code < 0 and -code in signal.valid_signals() else ""
    return f"worker process {process.pid} ended with exit code {code}{killed}"


@dataclass
class Slot:
    """One worker: its process, the driver's end of its pipe, and its shared [frames, heartbeat]."""

    process: multiprocessing.Process
    conn: Connection
    progress: object
    ended: bool = False


class LocalExecutor:
    """Worker processes on this machine ("spawn": each starts a fresh interpreter and loads its own models)."""

    def __init__(self, models: str, workers: int | None):
        self.context = multiprocessing.get_context("spawn")
        self.models = str(models)
        self.devices = local_devices(workers)
        self.threads = cpu_threads(len(self.devices))
        self.stop_flag = self.context.Value("b", 0, lock=False)  # no lock: a killed worker cannot hold it
        self.slots: list[Slot] = []
        self.worker_count = len(self.devices)

    def describe(self) -> str:
        return f"{len(self.devices)} local worker(s) on {', '.join(sorted(set(self.devices)))}"

    def spawn(self, wid: int) -> Slot:
        driver_end, worker_end = self.context.Pipe()
        progress = self.context.Array("q", 2, lock=False)
        process = self.context.Process(target=local_worker_main, name=f"ditto-batch-{wid}", daemon=True,
                                       args=(self.models, self.devices[wid], self.threads, worker_end,
                                             self.stop_flag, progress))
        process.start()
        worker_end.close()
        return Slot(process, driver_end, progress)

    def start(self) -> None:
        self.slots = [self.spawn(wid) for wid in range(self.worker_count)]

    def restart(self, wid: int) -> None:
        """A fresh process in place of worker ``wid`` (lost, or ended for making no progress)."""
        self.kill(wid)
        self.slots[wid] = self.spawn(wid)

    def give_up(self, wid: int) -> None:
        """End worker ``wid`` for good (a local process is not restarted unless asked)."""
        self.kill(wid)

    def kill(self, wid: int) -> None:
        """End worker ``wid`` now; no event comes from it afterwards."""
        slot = self.slots[wid]
        slot.process.kill()
        slot.process.join()
        slot.conn.close()
        slot.ended = True

    def submit(self, wid: int, job: Job) -> None:
        slot = self.slots[wid]
        slot.progress[0] = 0
        try:
            slot.conn.send(job)
        except OSError:  # the worker died just now: events() reports it as lost, with this job
            slot.process.join(1)

    def events(self, timeout: float) -> list[tuple]:
        """What the workers said, and a "lost" event for each that ended without being asked to."""
        watched = {}
        for wid, slot in enumerate(self.slots):
            if not slot.ended:
                watched[slot.conn] = watched[slot.process.sentinel] = wid
        if not watched:
            time.sleep(timeout)
            return []
        ready = {watched[handle] for handle in wait(list(watched), timeout)}
        return [event for wid in sorted(ready) for event in self.drain(wid)]

    def drain(self, wid: int) -> list[tuple]:
        slot = self.slots[wid]
        found = []
        try:
            while slot.conn.poll():
                kind, detail = slot.conn.recv()
                found.append((kind, wid, detail))
        except (EOFError, OSError):  # its end is closed: the process has ended or is ending
            slot.process.join(5)
        if slot.process.exitcode is not None:
            slot.ended = True
            slot.conn.close()
            found.append(("lost", wid, ending(slot.process)))
        return found

    def progress(self, busy: dict[int, Job]) -> dict[int, tuple[int, int]]:
        """(frames done, heartbeat) of each busy worker's current job."""
        return {wid: (self.slots[wid].progress[0], self.slots[wid].progress[1]) for wid in busy}

    def stop(self) -> None:
        self.stop_flag.value = 1

    def close(self) -> None:
        live = [slot for slot in self.slots if not slot.ended]
        for slot in live:
            try:
                slot.conn.send(None)
            except OSError:  # already gone: joined below all the same
                continue
        deadline = time.monotonic() + CLOSE_GRACE_S
        for slot in live:
            slot.process.join(max(deadline - time.monotonic(), 0.1))
        for slot in live:
            if slot.process.is_alive():  # stuck: the sweep of temporary files after close removes what it leaves
                slot.process.kill()
                slot.process.join()
