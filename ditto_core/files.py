"""Writing files so that a reader never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def readable_mode() -> int:
    """0666 less the process umask: the permissions an ordinary new file gets."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_sibling(path: Path, suffix: str) -> str:
    """A new empty temporary file in ``path``'s folder (so the final rename stays on one file system)."""
    handle, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    return name


def finish_atomically(tmp_name: str, path: Path) -> None:
    """Give the finished temporary file ordinary permissions and move it into place."""
    os.chmod(tmp_name, readable_mode())
    os.replace(tmp_name, path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (its folder made if needed) so that no reader ever sees a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = temporary_sibling(path, path.suffix)
    try:
        Path(tmp_name).write_bytes(data)
        finish_atomically(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return path
