"""A batch from start to end: checks, the output folder's lock, planning, dispatch, Ctrl-C and the sweep of
partial files."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .cluster import RayExecutor, import_ray
from .dispatch import STALL_TIMEOUT_S, Dispatcher
from .errors import BatchError
from .jobs import Job, config_sha256, plan_job
from .local import LocalExecutor
from .manifest import BadRow, Row, read_manifest
from .report import Progress, Summary
from .results import RESULTS_FILE, Result, ResultsLog, bad_row_result, skipped_result
from .worker import require_model_files

LOCK_FILE = ".batch.lock"
STOP_GRACE_S = 60.0  # how long a stopped worker may take to finish its current render batch


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


@dataclass(frozen=True)
class WorkerPlan:
    """Who renders: the release folder, how many workers and where (``ray_address`` None: processes on this
    machine), and what brings back lost work (``retries`` per job, ``stall_timeout`` seconds; 0: never)."""

    models: str
    count: int | None = None
    ray_address: str | None = None
    retries: int = 1
    stall_timeout: float = STALL_TIMEOUT_S

    def check(self) -> None:
        if self.count is not None and self.count < 1:
            raise ValueError(f"--workers must be at least 1, got {self.count}")
        if self.retries < 0:
            raise ValueError(f"--retries must be 0 or more, got {self.retries}")
        if not self.stall_timeout >= 0:
            raise ValueError(f"--stall-timeout must be 0 (never) or a number of seconds, got {self.stall_timeout}")

    def executor(self):
        if self.ray_address:
            return RayExecutor(self.models, self.count, self.ray_address)
        return LocalExecutor(self.models, self.count)


def run_batch(manifest: str | Path, models: str | Path, out_dir: str | Path, workers: int | None = None,
              ray_address: str | None = None, save_motion: bool = False, out: TextIO = sys.stdout,
              err: TextIO = sys.stderr, retries: int = 1, stall_timeout: float = STALL_TIMEOUT_S) -> Summary:
    """Render every job of ``manifest`` not already rendered into ``out_dir``; see the package docstring.
    KeyboardInterrupt stops the workers cleanly (finished files stay, no partial file) and is raised again."""
    plan = WorkerPlan(str(models), workers, ray_address, retries, stall_timeout)
    plan.check()
    rows = read_manifest(manifest)
    cfg_sha256 = config_sha256(models)
    if ray_address is None:
        require_model_files(models)
    else:
        import_ray()
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_folder_lock(out_dir):
        return render_rows(rows, plan, out_dir, cfg_sha256, save_motion, out, err)


def render_rows(rows: list[Row | BadRow], plan: WorkerPlan, out_dir: Path, cfg_sha256: str, save_motion: bool,
                out: TextIO, err: TextIO) -> Summary:
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
        dispatch(pending, plan, record, progress, summary, out_dir, err)
    progress.clear()
    print(summary.line(), file=out, flush=True)
    return summary


def dispatch(jobs: list[Job], plan: WorkerPlan, record, progress: Progress, summary: Summary, out_dir: Path,
             err: TextIO) -> None:
    executor = plan.executor()
    print(f"rendering {len(jobs)} job(s) with {executor.describe()}", file=err, flush=True)
    dispatcher = Dispatcher(executor, jobs, record, progress, err, plan.retries, plan.stall_timeout)
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
