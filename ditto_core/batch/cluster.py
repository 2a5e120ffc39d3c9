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
from .worker import WORKER_RESTARTS, Worker

RESTART_POLL_S = 1.0  # how often a restarting actor is asked to load the models again


class RayWorker:
    """The Ray actor: a :class:`Worker` with a stop flag and its progress readable while it renders (the actor
    runs two calls at a time, so ``stop`` and ``progress`` are answered during ``run``)."""

    def __init__(self, models: str, device: str, threads: int | None):
        self.stopping = threading.Event()
        self.current = ("", 0, 0)
        self.worker = Worker(models, device, threads, self.stopping.is_set, self.count)
        self.job_name = ""

    def count(self, frames: int, beats: int) -> None:
        self.current = (self.job_name, frames, beats)

    def start(self) -> tuple[str, str]:
        return self.worker.start()

    def run(self, job: Job) -> Result:
        self.job_name = job.name
        return self.worker.run(job)

    def stop(self) -> None:
        self.stopping.set()

    def progress(self) -> tuple[str, int, int]:
        """(job name, frames done, heartbeat)."""
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
        # Ray restarts a dead actor (a killed process, a lost node); the driver retries the job it held itself
        remote = self.ray.remote(RayWorker).options(max_concurrency=2, max_restarts=WORKER_RESTARTS,
                                                    max_task_retries=0, **resources)
        self.actors = [remote.remote(str(models), device, threads) for _ in range(count)]
        self.worker_count = count
        self.summary = f"{count} Ray actor(s), each with {', '.join(f'{k}={v:g}' for k, v in resources.items())}"
        self.calls: dict = {}  # object ref → (wid, job or None for start)
        self.progress_calls: dict = {}  # object ref → wid
        self.last_progress: dict[int, tuple[str, int, int]] = {}
        self.restarting: dict[int, float] = {}  # wid → when to ask a restarting actor to load the models again
        self.unavailable = getattr(self.ray.exceptions, "ActorUnavailableError", ())  # Ray ≥ 2.23

    def describe(self) -> str:
        return self.summary

    def start(self) -> None:
        for wid in range(self.worker_count):
            self.restart(wid)

    def restart(self, wid: int) -> None:
        """Load the models in actor ``wid`` again (Ray restarts a dead actor's process; its state starts empty)."""
        self.calls[self.actors[wid].start.remote()] = (wid, None)

    def kill(self, wid: int, restart: bool = True) -> None:
        """End actor ``wid``'s process now (Ray restarts it unless ``restart`` is False); no event comes from its
        calls in flight."""
        self.calls = {ref: call for ref, call in self.calls.items() if call[0] != wid}
        self.progress_calls = {ref: other for ref, other in self.progress_calls.items() if other != wid}
        self.ray.kill(self.actors[wid], no_restart=not restart)

    def give_up(self, wid: int) -> None:
        """End actor ``wid`` for good: Ray does not place it again (it would hold a GPU idle for the batch)."""
        self.kill(wid, restart=False)

    def submit(self, wid: int, job: Job) -> None:
        self.last_progress[wid] = (job.name, 0, 0)
        self.calls[self.actors[wid].run.remote(job)] = (wid, job)

    def events(self, timeout: float) -> list[tuple]:
        now = time.monotonic()
        for wid in [wid for wid, due in self.restarting.items() if due <= now]:
            del self.restarting[wid]
            self.restart(wid)
        if not self.calls:
            time.sleep(timeout)
            return []
        first, _ = self.ray.wait(list(self.calls), num_returns=1, timeout=timeout)
        if not first:
            return []
        ready, _ = self.ray.wait(list(self.calls), num_returns=len(self.calls), timeout=0)
        return [event for event in map(self.event, ready) if event is not None]

    def event(self, ref) -> tuple | None:
        wid, job = self.calls.pop(ref)
        try:
            value = self.ray.get(ref)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as exc:
            if job is None and isinstance(exc, self.unavailable):  # Ray is still restarting it: ask again soon
                self.restarting[wid] = time.monotonic() + RESTART_POLL_S
                return None
            return "lost", wid, f"Ray actor {wid} was lost: {str(exc).splitlines()[0]}"
        return ("done", wid, value) if job is not None else (value[0], wid, value[1])

    def progress(self, busy: dict[int, Job]) -> dict[int, tuple[int, int]]:
        """(frames done, heartbeat) of each busy actor's current job, as it last said; each actor is asked again
        once it has answered (one that hangs keeps its last answer, which is how a stall shows)."""
        if self.progress_calls:
            ready, _ = self.ray.wait(list(self.progress_calls), num_returns=len(self.progress_calls), timeout=0)
            for ref in ready:
                wid = self.progress_calls.pop(ref)
                try:
                    self.last_progress[wid] = self.ray.get(ref)
                except self.ray.exceptions.RayError:  # lost: its job's call reports it
                    continue
        asked = set(self.progress_calls.values())
        self.progress_calls.update({self.actors[wid].progress.remote(): wid for wid in busy if wid not in asked})
        shown = {wid: self.last_progress.get(wid, ("", 0, 0)) for wid in busy}
        return {wid: (frames if name == busy[wid].name else 0, beats) for wid, (name, frames, beats) in shown.items()}

    def stop(self) -> None:
        for actor in self.actors:
            actor.stop.remote()

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.ray.shutdown()
