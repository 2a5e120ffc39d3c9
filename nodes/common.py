"""What every Ditto node shares: ComfyUI progress and interrupt hooks, and safe output paths."""

from __future__ import annotations

import re
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
import numpy as np
import torch

CATEGORY = "Ditto"
ESSENTIALS = "Video Tools"  # the Essentials tab's place for the few nodes a newcomer needs


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel."""
    comfy.model_management.throw_exception_if_processing_interrupted()


class Progress:
    """ComfyUI progress bar over ``total`` steps."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(max(total, 1))
        self.done = 0

    def update(self, steps: int = 1) -> None:
        self.done += steps
        self.bar.update_absolute(self.done)


def input_path(relative: str) -> Path:
    """``relative`` (a file or folder named by a widget) inside ComfyUI's input folder; ValueError when it points
    outside it."""
    root = Path(folder_paths.get_input_directory()).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside ComfyUI's input folder")
    return path


def unique_output_path(prefix: str, extension: str) -> Path:
    """A file name in ComfyUI's output directory named after ``prefix`` (sub-folders allowed) that no file has yet,
    never outside the output directory whatever ``prefix`` contains. Nothing is created: writers fill a hidden
    temporary file and rename it to this name only when complete, so no placeholder shows while rendering."""
    root = Path(folder_paths.get_output_directory()).resolve()
    cleaned = [part for part in re.split(r"[\\/]+", prefix.strip()) if part not in ("", ".", "..")]
    cleaned = [re.sub(r"[^\w\-. ]", "_", part) for part in cleaned] or ["ditto"]
    folder = root.joinpath(*cleaned[:-1])
    folder.mkdir(parents=True, exist_ok=True)
    if root not in (folder.resolve(), *folder.resolve().parents):
        raise ValueError(f"output prefix {prefix!r} leaves the output directory")
    counter = 1
    while (path := folder / f"{cleaned[-1]}_{counter:05d}{extension}").exists():
        counter += 1
    return path


def output_ui_entry(path: Path) -> dict:
    root = Path(folder_paths.get_output_directory()).resolve()
    relative = path.resolve().relative_to(root)
    return {"filename": relative.name, "subfolder": str(relative.parent) if str(relative.parent) != "." else "",
            "type": "output"}


def audio_value(waveform: np.ndarray, sample_rate: int) -> dict:
    """ComfyUI's AUDIO, as Load Audio gives it, from a waveform ``[C, M]``: ``waveform`` ``[1, C, M]`` float32."""
    return {"waveform": torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None],
            "sample_rate": sample_rate}
