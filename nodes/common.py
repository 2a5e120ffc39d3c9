"""What every Ditto node shares: ComfyUI progress and interrupt hooks, input checks, and safe input and output
paths."""

from __future__ import annotations

import functools
import inspect
import re
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
import numpy as np
import torch

from ..ditto_core.node_inputs import check_node_inputs

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


def with_checked_inputs(cls):
    """The V3 node class ``cls`` with its ``execute`` checking every widget value against ``INPUT_TYPES()`` first:
    values sent to ComfyUI's /prompt API without the front end, or wired in from another node, get one error naming
    the node, the input and the value (``ditto_core.node_inputs``) instead of failing somewhere inside."""
    execute = inspect.getattr_static(cls, "execute").__func__  # its own or a base class's
    signature = inspect.signature(execute)
    spread = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]

    @functools.wraps(execute)
    def checked(node, *args, **kwargs):
        values = dict(signature.bind(node, *args, **kwargs).arguments)
        values.pop(next(iter(signature.parameters)))  # the class
        for name in spread:
            values.update(values.pop(name, {}))
        # the schema of the class as registered: ComfyUI runs execute on a locked copy, whose GET_SCHEMA may not
        # store the schema it makes (AttributeError "Cannot modify class attribute 'SCHEMA' on locked class")
        schema = cls.FINALIZE_SCHEMA()
        check_node_inputs(cls.__name__, cls.INPUT_TYPES(), values, schema.is_input_list)
        return execute(node, *args, **kwargs)

    cls.execute = classmethod(checked)
    return cls


def input_path(relative: str) -> Path:
    """``relative`` (a file or folder named by a widget) inside ComfyUI's input folder; ValueError when it points
    outside it."""
    if not isinstance(relative, str):
        raise ValueError(f"{relative!r} is not a file or folder name; give a path relative to ComfyUI's input folder")
    root = Path(folder_paths.get_input_directory()).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ValueError(f"{relative!r} is outside ComfyUI's input folder; put the file in the input folder and "
                         f"name it relative to it")
    return path


def input_file_check(relative: str, what: str) -> bool | str:
    """ComfyUI's VALIDATE_INPUTS answer for a file named by a widget: True, or why it cannot be used (an answer,
    not an exception, which ComfyUI would show as a traceback)."""
    try:
        path = input_path(relative)
    except ValueError as exc:
        return str(exc)
    return True if path.is_file() else f"{what} not found in input/: {relative}"


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
