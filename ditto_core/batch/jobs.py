"""Jobs: a manifest row with its output paths and the key that says whether an earlier result still holds."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from .manifest import BadRow, Row


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
    from ..config_pickle import ConfigFileError
    from ..release import release_path
    from ..release_config import missing_config_message

    path = release_path(models, "config")
    if not path.is_file():
        raise ConfigFileError(missing_config_message(models, "config"))
    return file_sha256(path, "release cfg")


def describe_error(exc: BaseException) -> str:
    """A job's failure as one line: the message of an error meant for users, else its type and message."""
    if isinstance(exc, (ValueError, OSError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
