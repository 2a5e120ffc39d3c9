"""Batch rendering: a manifest of jobs rendered by worker processes on this machine or by Ray actors on a
cluster, resumable, nothing lost and nothing repeated.

    python -m ditto_core batch JOBS.csv --models DIR --out OUT_DIR [--workers N] [--ray ADDRESS|auto|local]

The driver (this process) reads and checks the whole manifest before anything is rendered, decides which jobs
need rendering, feeds them one at a time to workers that each load the models once, and appends one line per
finished job to ``OUT_DIR/results.jsonl`` (only the driver writes it). A job is skipped when its outputs exist
and its last record is a success with the same key: the sha256 of the input files' bytes, the row's settings and
the release cfg's sha256. Workers write every output atomically (a hidden temporary file renamed into place), so
an interrupted or failed job leaves nothing behind, and the next run renders exactly what is missing.

The local and the Ray executors run the same :class:`Worker`; only the transport differs.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import multiprocessing
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

REQUIRED_COLUMNS = ("portrait", "audio")
OPTIONAL_COLUMNS = ("name", "emotion", "seed", "fps", "steps")
SAMPLED_FPS = 25  # the rate motion is sampled at; other output rates are resampled from it
RESULTS_FILE = "results.jsonl"
LOCK_FILE = ".batch.lock"
STOP_GRACE_S = 60.0  # how long a stopped worker may take to finish its current render batch


class ManifestError(ValueError):
    """The manifest as a whole cannot be used (said before anything is rendered)."""


class BatchError(RuntimeError):
    """The batch cannot go on (no worker could start, or all of them died)."""


class ModelFilesMissing(FileNotFoundError):
    """A worker's node lacks release files under ``--models``."""


class JobStopped(Exception):
    """Raised inside a render when the driver has asked the workers to stop."""


# ----------------------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class Row:
    """One job of the manifest, checked: absolute input paths and typed settings (None: the release cfg's)."""

    line: int
    name: str
    portrait: Path
    audio: Path
    emotion: str | None = None
    seed: int = 0
    fps: float | None = None  # None: a video portrait's own rate, else 25
    steps: int | None = None

    def settings(self) -> dict:
        return {"emotion": self.emotion, "seed": self.seed, "fps": self.fps, "steps": self.steps}


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be rendered; it fails alone with ``message``."""

    line: int
    name: str
    message: str


def read_manifest(path: str | Path) -> list[Row | BadRow]:
    """The manifest's rows in order, each checked (a bad one becomes a BadRow); ManifestError when the file, its
    header or its columns cannot be used."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ManifestError(f"manifest not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        columns = check_header(next(reader, None), path)
        rows = [parse_row(values, columns, reader.line_num, path.parent)
                for values in reader if any(value.strip() for value in values)]
    if not rows:
        raise ManifestError(f"{path} has a header but no jobs; add one line per video, e.g. portrait.jpg,speech.wav")
    return mark_duplicates(rows)


def check_header(header: list[str] | None, path: Path) -> list[str]:
    """The column names of line 1, lower-cased; ManifestError naming every problem with them."""
    expected = (f"the columns are {', '.join(REQUIRED_COLUMNS)} (required) and {', '.join(OPTIONAL_COLUMNS)} "
                f"(optional)")
    if not header or not any(name.strip() for name in header):
        raise ManifestError(f"{path} line 1: empty; the first line must name the columns: {expected}")
    columns = [name.strip().lower() for name in header]
    problems = []
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        problems.append(f"column(s) {', '.join(twice)} appear more than once")
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(f"missing required column(s) {', '.join(missing)}")
    unknown = [name for name in columns if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(repr(name) for name in unknown)}")
    if problems:
        raise ManifestError(f"{path} line 1: {'; '.join(problems)}. The first line is the header; {expected}.")
    return columns


def parse_row(values: list[str], columns: list[str], line: int, folder: Path) -> Row | BadRow:
    fields = {name: value.strip() for name, value in zip(columns, values)}
    name = fields.get("name") or default_name(fields.get("portrait", ""), fields.get("audio", ""), line)
    if len(values) != len(columns):
        return BadRow(line, name, f"line {line}: {len(values)} values for {len(columns)} columns "
                                  f"({', '.join(columns)}); quote values that contain commas")
    try:
        return Row(line=line, name=check_name(name), portrait=input_path(fields["portrait"], "portrait", folder),
                   audio=input_path(fields["audio"], "audio", folder), emotion=check_emotion(fields.get("emotion")),
                   seed=integer(fields.get("seed"), "seed", 0), fps=check_fps(fields.get("fps")),
                   steps=integer(fields.get("steps"), "steps", None, minimum=1))
    except ValueError as exc:
        return BadRow(line, name, f"line {line}: {exc}")


def default_name(portrait: str, audio: str, line: int) -> str:
    if not portrait or not audio:
        return f"line-{line}"
    return f"{Path(portrait).stem}_{Path(audio).stem}"


def check_name(name: str) -> str:
    if name.startswith(".") or "/" in name or "\\" in name or not name.strip():
        raise ValueError(f"the name {name!r} cannot be a file name in the output folder; use letters, digits, "
                         f"'-' and '_' (no folders, not starting with '.')")
    return name


def input_path(value: str, column: str, folder: Path) -> Path:
    """An input file's path: absolute as given, or relative to the manifest's folder."""
    if not value:
        raise ValueError(f"the {column} column is empty; give a file path (relative to the manifest's folder or "
                         f"absolute)")
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def check_emotion(value: str | None) -> str | None:
    from .motion.conditions import parse_emotion

    if not value:
        return None
    parse_emotion(value)  # ConditionError (a ValueError) says what is wrong
    return value


def integer(value: str | None, column: str, default: int | None, minimum: int | None = None) -> int | None:
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{column} must be a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{column} must be at least {minimum}, got {number}")
    return number


def check_fps(value: str | None) -> float | None:
    """The fps column: empty (None) for a video portrait's own rate, else Ditto's own 25; or a rate from 10 to 60
    (the motion is resampled)."""
    from .stream import check_fps as check_rate

    if not value:
        return None
    try:
        fps = float(value)
    except ValueError:
        raise ValueError(f"fps must be a number, got {value!r}") from None
    check_rate(fps)
    return fps


def mark_duplicates(rows: list[Row | BadRow]) -> list[Row | BadRow]:
    """Every good row whose name an earlier good row already has becomes a BadRow (the earlier one is rendered;
    a bad row keeps its own message)."""
    first: dict[str, int] = {}
    marked = []
    for row in rows:
        if isinstance(row, Row) and row.name in first:
            row = BadRow(row.line, row.name, f"line {row.line}: the name {row.name!r} is already used by line "
                                             f"{first[row.name]}; give this row its own name (the name column)")
        elif isinstance(row, Row):
            first[row.name] = row.line
        marked.append(row)
    return marked


# --------------------------------------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """A row to render: its outputs and the key that says whether an earlier result still holds."""

    row: Row
    video: Path
    motion: Path | None
    key: str

    @property
    def name(self) -> str:
        return self.row.name

    @property
    def outputs(self) -> list[Path]:
        return [self.video] + ([self.motion] if self.motion is not None else [])


def file_sha256(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def job_key(row: Row, config_sha256: str) -> str:
    """sha256 of what decides a job's output: the input files' bytes, the row's settings and the release cfg."""
    recipe = {"portrait": file_sha256(row.portrait, "portrait"), "audio": file_sha256(row.audio, "audio"),
              "settings": row.settings(), "config": config_sha256}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def plan_job(row: Row, out_dir: Path, save_motion: bool, config_sha256: str) -> Job | BadRow:
    try:
        key = job_key(row, config_sha256)
    except OSError as exc:
        return BadRow(row.line, row.name, f"line {row.line}: {describe_error(exc)}")
    motion = out_dir / f"{row.name}.safetensors" if save_motion else None
    return Job(row, out_dir / f"{row.name}.mp4", motion, key)


def config_sha256(models: str | Path) -> str:
    """The release cfg's sha256 (part of every job's key); ConfigFileError when the cfg is missing."""
    from .config_pickle import ConfigFileError
    from .release import release_path
    from .release_config import missing_config_message

    path = release_path(models, "config")
    if not path.is_file():
        raise ConfigFileError(missing_config_message(models, "config"))
    return file_sha256(path, "release cfg")


# ------------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Result:
    """How one job ended: ok, error, skipped (done before, unchanged) or stopped (interrupted: not recorded)."""

    name: str
    line: int
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    key: str | None = None
    worker: str | None = None

    def record(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


class ResultsLog:
    """``OUT_DIR/results.jsonl``: one JSON line per finished job, appended and flushed as each job ends; the
    last line of a name says where that job stands."""

    def __init__(self, path: Path):
        self.path = path
        self.previous, self.unreadable = read_results(path)
        self.needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")

    def done_before(self, job: Job) -> dict | None:
        """The earlier record that makes ``job`` a skip: a success with the same key, its outputs all there."""
        record = self.previous.get(job.name)
        if record is None or record.get("status") not in ("ok", "skipped") or record.get("key") != job.key:
            return None
        return record if all(path.is_file() for path in job.outputs) else None

    def append(self, result: Result) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            if self.needs_newline:  # a run cut off while writing its last line
                handle.write("\n")
                self.needs_newline = False
            handle.write(json.dumps(result.record()) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def read_results(path: Path) -> tuple[dict[str, dict], int]:
    """The last record of each name that describes a render (one with a key: a row refused before rendering,
    such as a duplicate name, says nothing about the output), and how many lines could not be read (a line cut
    off by a crash)."""
    if not path.is_file():
        return {}, 0
    latest, unreadable = {}, 0
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            if record.get("key"):
                latest[record["name"]] = record
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
    return latest, unreadable


def bad_row_result(row: BadRow) -> Result:
    return Result(row.name, row.line, "error", error=row.message)


def skipped_result(job: Job, record: dict) -> Result:
    return Result(job.name, job.row.line, "skipped", frames=record.get("frames") or 0, key=job.key,
                  worker=record.get("worker"))


# ------------------------------------------------------------------------------------------------------- worker


def describe_error(exc: BaseException) -> str:
    """A job's failure as one line: the message of an error meant for users, else its type and message."""
    if isinstance(exc, (ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def missing_model_files(models: str | Path) -> list[Path]:
    """The release files a render needs that are missing under ``models`` on this node."""
    from .release import check_release

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
    from .audio import load_audio
    from .motion import SamplerOptions
    from .stream import clip_for_source, default_fps, speech_to_video

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
    process and in a Ray actor. ``should_stop`` is polled between render batches; ``on_frame`` sees the frames
    done of the current job."""

    def __init__(self, models: str, device: str, threads: int | None = None,
                 should_stop: Callable[[], bool] | None = None, on_frame: Callable[[int], None] | None = None):
        self.models, self.device, self.threads = models, device, threads
        self.should_stop = should_stop or (lambda: False)
        self.on_frame = on_frame or (lambda count: None)
        self.pipeline = None
        self.where = f"{socket.gethostname()}:{os.getpid()} {device}"

    def start(self) -> tuple[str, str]:
        """Load the models: ("ready", where) or ("failed", what went wrong)."""
        import torch

        from .pipeline import DittoPipeline

        try:
            require_model_files(self.models)
            if self.threads:
                torch.set_num_threads(self.threads)
            self.pipeline = DittoPipeline.load(self.models, self.device)
        except Exception as exc:  # reported to the driver, which carries on with the other workers
            return "failed", f"worker {self.where} cannot start: {describe_error(exc)}"
        return "ready", self.where

    def check(self) -> None:
        if self.should_stop():
            raise JobStopped()

    def run(self, job: Job) -> Result:
        """Render ``job``; a failure becomes an error result (the batch goes on), a stop a "stopped" one."""
        start = time.perf_counter()
        self.on_frame(0)
        try:
            self.check()
            frames = render_job(self.pipeline, job, self.check, self.on_frame)
        except JobStopped:
            return Result(job.name, job.row.line, "stopped", key=job.key, worker=self.where)
        except Exception as exc:  # a bad row fails alone; the worker renders the next one
            return Result(job.name, job.row.line, "error", seconds=time.perf_counter() - start,
                          error=f"line {job.row.line}: {describe_error(exc)}", key=job.key, worker=self.where)
        return Result(job.name, job.row.line, "ok", frames, time.perf_counter() - start, key=job.key,
                      worker=self.where)


# ------------------------------------------------------------------------------------------------ local executor


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


# -------------------------------------------------------------------------------------------------- Ray executor


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
    package = str(Path(__file__).resolve().parent)
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


# -------------------------------------------------------------------------------------------------------- driver


@dataclass
class Summary:
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    not_done: int = 0

    def count(self, result: Result) -> None:
        if result.status == "ok":
            self.ok += 1
        elif result.status == "skipped":
            self.skipped += 1
        else:
            self.failed += 1

    @property
    def all_good(self) -> bool:
        return self.failed == 0 and self.not_done == 0

    def line(self) -> str:
        text = f"{self.ok} ok, {self.skipped} skipped, {self.failed} failed"
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
        self.finished += 1
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
    return f"error   {result.name}: {result.error}"


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


@contextmanager
def output_folder_lock(out_dir: Path):
    """One batch at a time per output folder (two would render the same jobs and sweep each other's files)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one batch per folder is then the user's to ensure
        yield
        return
    with (out_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchError(f"another batch is writing to {out_dir}; wait for it to end, or give another --out")
        yield


def sweep_partial_files(out_dir: Path, names: list[str]) -> int:
    """Remove the hidden temporary files of these jobs' outputs (left only when a worker was killed outright)."""
    pattern = re.compile(rf"^\.({'|'.join(map(re.escape, names))})\.[A-Za-z0-9_]{{8}}\.(mp4|safetensors)$")
    removed = 0
    for path in out_dir.iterdir():
        if names and pattern.match(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def make_executor(models: str | Path, workers: int | None, ray_address: str | None):
    if ray_address:
        return RayExecutor(str(models), workers, ray_address)
    return LocalExecutor(str(models), workers)


def run_batch(manifest: str | Path, models: str | Path, out_dir: str | Path, workers: int | None = None,
              ray_address: str | None = None, save_motion: bool = False, out: TextIO = sys.stdout,
              err: TextIO = sys.stderr) -> Summary:
    """Render every job of ``manifest`` not already rendered into ``out_dir``; see the module docstring.
    KeyboardInterrupt stops the workers cleanly (finished files stay, no partial file) and is raised again."""
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    rows = read_manifest(manifest)
    cfg_sha256 = config_sha256(models)
    if ray_address is None:
        require_model_files(models)
    else:
        import_ray()
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_folder_lock(out_dir):
        return render_rows(rows, models, out_dir, cfg_sha256, workers, ray_address, save_motion, out, err)


def render_rows(rows: list[Row | BadRow], models, out_dir: Path, cfg_sha256: str, workers, ray_address,
                save_motion: bool, out: TextIO, err: TextIO) -> Summary:
    log = ResultsLog(out_dir / RESULTS_FILE)
    if log.unreadable:
        print(f"note: {log.unreadable} line(s) of {log.path} could not be read (a run cut off while writing); "
              f"their jobs are rendered again", file=err)
    sweep_partial_files(out_dir, [row.name for row in rows])
    summary, progress = Summary(), Progress(len(rows), out, err)

    def record(result: Result) -> None:
        log.append(result)
        summary.count(result)
        progress.job(result)

    pending = []
    for row in rows:
        planned = plan_job(row, out_dir, save_motion, cfg_sha256) if isinstance(row, Row) else row
        if isinstance(planned, BadRow):
            record(bad_row_result(planned))
        elif (earlier := log.done_before(planned)) is not None:
            record(skipped_result(planned, earlier))
        else:
            pending.append(planned)
    if pending:
        dispatch(pending, models, workers, ray_address, record, progress, summary, out_dir, err)
    progress.clear()
    print(summary.line(), file=out, flush=True)
    return summary


def dispatch(jobs: list[Job], models, workers, ray_address, record, progress: Progress, summary: Summary,
             out_dir: Path, err: TextIO) -> None:
    executor = make_executor(models, workers, ray_address)
    print(f"rendering {len(jobs)} job(s) with {executor.describe()}", file=err, flush=True)
    dispatcher = Dispatcher(executor, jobs, record, progress, err)
    try:
        dispatcher.run()
    except KeyboardInterrupt:
        progress.clear()
        print("\nstopping: the jobs in flight end at their next frame batch; finished files are kept", file=err,
              flush=True)
        executor.stop()
        dispatcher.drain(STOP_GRACE_S)
        summary.not_done = len(jobs) - dispatcher.recorded
        progress.clear()
        print(summary.line(), file=progress.out, flush=True)
        raise
    finally:
        executor.close()
        sweep_partial_files(out_dir, [job.name for job in jobs])
