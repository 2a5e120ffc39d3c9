"""The Ray executor: one actor per worker on a Ray cluster (or a throwaway local Ray)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from .errors import BatchError
from .jobs import Job
from .results import Result
from .worker import Worker


class RayWorker:
    """The Ray actor: a :class:`Worker` with a stop flag and its progress readable while it renders (the actor
    runs two calls at a time, so ``stop`` and ``progress`` are answered during ``run``)."""

    def __init__(self, models: str, device: str, threads: int | None):
        self.stopping = threading.Event()
        self.current = ("", 0)
        self.worker = Worker(models, device, threads, self.stopping.is_set, self.count)
        self.job_name = ""

    def count(self, frames: int) -> None:
        self.current = (self.job_name, frames)

    def start(self) -> tuple[str, str]:
        return self.worker.start()

    def run(self, job: Job) -> Result:
        self.job_name = job.name
        return self.worker.run(job)

    def stop(self) -> None:
        self.stopping.set()

    def progress(self) -> tuple[str, int]:
        return self.current


def import_ray():
    try:
        import ray
    except ImportError:
        raise BatchError("--ray needs Ray, which is not installed: pip install ray (only this mode needs it; the "
                         "pack never does inside ComfyUI), or leave --ray out to render on this machine") from None
    return ray


def connect_ray(ray, address: str) -> bool:
    """Start a throwaway local Ray instance (``local``) or join a running cluster (``auto`` or an address);
    the pack's code travels with the job. The actors' own output stays in Ray's logs (on each node, under
    /tmp/ray/session_latest/logs): results come back through the driver, whose summary stays the last line.
    Returns whether a local instance was started."""
    package = str(Path(__file__).resolve().parents[1])  # ditto_core
    options = {"runtime_env": {"py_modules": [package], "excludes": ["__pycache__"]},
               "logging_level": logging.WARNING, "log_to_driver": False}
    if address == "local":
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **options)
        return True
    ray.init(address=address, **options)
    return False


def actor_shape(ray, workers: int | None) -> tuple[int, dict, str, int | None]:
    """How many actors and what each asks for: one GPU each when the cluster has GPUs (one actor per GPU by
    default), else an equal share of the CPUs (one actor per node by default)."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), float(resources.get("CPU", 1))
    if gpus:
        count = workers or gpus
        return count, {"num_gpus": min(1.0, gpus / count), "num_cpus": min(1.0, cpus / count)}, "cuda", None
    nodes = [node for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU")]
    count = workers or max(len(nodes), 1)
    smallest = min((node["Resources"]["CPU"] for node in nodes), default=cpus)
    share = min(cpus / count, smallest)
    return count, {"num_cpus": share}, "cpu", max(1, int(share))


class RayExecutor:
    """Ray actors, one per worker, each holding the models, fed one job at a time by the driver."""

    def __init__(self, models: str, workers: int | None, address: str):
        self.ray = import_ray()
        self.started_local = connect_ray(self.ray, address)
        count, resources, device, threads = actor_shape(self.ray, workers)
        remote = self.ray.remote(RayWorker).options(max_concurrency=2, **resources)
        self.actors = [remote.remote(str(models), device, threads) for _ in range(count)]
        self.worker_count = count
        self.summary = f"{count} Ray actor(s), each with {', '.join(f'{k}={v:g}' for k, v in resources.items())}"
        self.calls: dict = {}  # object ref → (wid, job or None for start)
        self.progress_calls: dict = {}  # object ref → wid
        self.progress: dict[int, tuple[str, int]] = {}

    def describe(self) -> str:
        return self.summary

    def start(self) -> None:
        for wid, actor in enumerate(self.actors):
            self.calls[actor.start.remote()] = (wid, None)

    def submit(self, wid: int, job: Job) -> None:
        self.progress[wid] = (job.name, 0)
        self.calls[self.actors[wid].run.remote(job)] = (wid, job)

    def events(self, timeout: float) -> list[tuple]:
        if not self.calls:
            time.sleep(timeout)
            return []
        first, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=timeout)
        if not first:
            return []
        ready, _ = self.ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)
        return [self.event(ref) for ref in ready]

    def event(self, ref) -> tuple:
        wid, job = self.calls.pop(ref)
        try:
            value = self.ray.get(ref)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as exc:
            return "lost", wid, f"Ray actor {wid} was lost: {str(exc).splitlines()[0]}"
        return ("done", wid, value) if job is not None else (value[0], wid, value[1])

    def frames_in_flight(self, busy: dict[int, Job]) -> int:
        """Frames done of the jobs in flight, as the actors last said (asked again when they have answered)."""
        if self.progress_calls:
            ready, _ = self.ray.wait(list(self.progress_calls), num_returns=len(self.progress_calls), timeout=0)
            for ref in ready:
                wid = self.progress_calls.pop(ref)
                try:
                    self.progress[wid] = self.ray.get(ref)
                except self.ray.exceptions.RayError:
                    self.progress[wid] = ("", 0)
        if not self.progress_calls:
            self.progress_calls = {self.actors[wid].progress.remote(): wid for wid in busy}
        return sum(self.progress.get(wid, ("", 0))[1] for wid, job in busy.items()
                   if self.progress.get(wid, ("", 0))[0] == job.name)

    def stop(self) -> None:
        for actor in self.actors:
            actor.stop.remote()

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()
