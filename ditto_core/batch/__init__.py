"""Batch rendering: a manifest of jobs rendered by worker processes on this machine or by Ray actors on a
cluster, resumable, nothing lost and nothing repeated.

    python -m ditto_core batch JOBS.csv --models DIR --out OUT_DIR [--workers N] [--ray ADDRESS|auto|local]
                               [--retries N] [--stall-timeout SECONDS]

The driver (this process) reads and checks the whole manifest before anything is rendered, decides which jobs
need rendering, feeds them one at a time to workers that each load the models once, and appends one line per
finished job to ``OUT_DIR/results.jsonl`` (only the driver writes it). A job is skipped when its outputs exist
and its last record is a success with the same key: the sha256 of the input files' bytes, the row's settings and
the release cfg's sha256. Workers write every output atomically (a hidden temporary file renamed into place), so
an interrupted or failed job leaves nothing behind, and the next run renders exactly what is missing.

A worker that dies or stalls loses only the attempt it was rendering: the job is tried again (``--retries``), the
worker replaced, and every attempt recorded; see :mod:`.dispatch`.

The local and the Ray executors run the same :class:`Worker`; only the transport differs.

Modules: ``manifest`` (the CSV, checked), ``jobs`` (rows with outputs and keys), ``results`` (results.jsonl),
``worker`` (the renderer), ``local`` and ``cluster`` (the executors), ``dispatch`` (jobs to workers), ``report``
(progress and summary), ``run`` (a batch from start to end).
"""

from .cluster import RayExecutor, RayWorker, import_ray
from .dispatch import Dispatcher
from .errors import BatchError
from .jobs import Job, describe_error, plan_job
from .local import LocalExecutor
from .manifest import BadRow, ManifestError, Row, check_name, default_name, read_manifest
from .report import Progress, Summary
from .results import RESULTS_FILE, Result, ResultsLog, read_results
from .run import run_batch
from .worker import JobStopped, ModelFilesMissing, Worker

__all__ = [
    "BadRow",
    "BatchError",
    "Dispatcher",
    "Job",
    "JobStopped",
    "LocalExecutor",
    "ManifestError",
    "ModelFilesMissing",
    "Progress",
    "RESULTS_FILE",
    "RayExecutor",
    "RayWorker",
    "Result",
    "ResultsLog",
    "Row",
    "Summary",
    "Worker",
    "check_name",
    "default_name",
    "describe_error",
    "import_ray",
    "plan_job",
    "read_manifest",
    "read_results",
    "run_batch",
]
