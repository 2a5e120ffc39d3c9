"""``results.jsonl``: how each job ended, appended as it ends, read back to resume."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .jobs import Job
from .manifest import BadRow

RESULTS_FILE = "results.jsonl"


@dataclass(frozen=True)
class Result:
    """How one job ended: ok, error, skipped (done before, unchanged) or stopped (interrupted: not recorded); or
    how one attempt at it ended: lost (its worker died or stalled; retried). ``attempt`` counts from 1 (None for a
    job that was not rendered: skipped, or a bad row)."""

    name: str
    line: int
    status: str
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    key: str | None = None
    worker: str | None = None
    attempt: int | None = None

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
    off by a crash, or edited by hand into something else)."""
    if not path.is_file():
        return {}, 0
    latest, unreadable = {}, 0
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):
            record = None
        if not well_formed(record):
            unreadable += 1
        elif record.get("key"):
            latest[record["name"]] = record
    return latest, unreadable


def well_formed(record) -> bool:
    """Whether a parsed line has the fields a resume reads, of their types."""
    return (isinstance(record, dict) and isinstance(record.get("name"), str) and isinstance(record.get("status"), str)
            and isinstance(record.get("key"), (str, type(None)))
            and isinstance(record.get("frames", 0), int) and not isinstance(record.get("frames"), bool))


def bad_row_result(row: BadRow) -> Result:
    return Result(row.name, row.line, "error", error=row.message)


def skipped_result(job: Job, record: dict) -> Result:
    return Result(job.name, job.row.line, "skipped", frames=record.get("frames") or 0, key=job.key,
                  worker=record.get("worker"))
