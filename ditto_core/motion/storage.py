"""The motion file: ``.safetensors`` with ``frames`` ``[N, 265]``, ``anchor`` ``[265]`` and a text header (format,
version, fps, JSON metadata). Motion files are shared like workflows, so every value is checked as it is read:
the layout (tensor names, dtypes, shapes) before any tensor is loaded, then the values (by :class:`Motion`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

FORMAT = "ditto-motion"
# files of versions 1 … FORMAT_VERSION are read; a newer one is refused. 2: face edits (``exp_offsets``) added
FORMAT_VERSION = 2
MOTION_DIM = 265
EXP_DIM = 63  # the 21 keypoints' expression offsets, x y z each
MAX_FRAMES = 360_000  # 4 hours at 25 fps (380 MB as float32): a larger count is a damaged or foreign file
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


class MotionFileError(ValueError):
    """A motion file that cannot be read; the message names the file and the value."""


def motion_header(fps: float, metadata: dict) -> dict[str, str]:
    return {"format": FORMAT, "version": str(FORMAT_VERSION), "fps": repr(float(fps)),
            "metadata": json.dumps(metadata)}


def read_motion_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], dict]:
    """The tensors (``frames``, maybe ``anchor``), the header and the metadata of a motion file whose layout is
    checked; MotionFileError otherwise. The values themselves are checked by ``Motion``."""
    from safetensors import safe_open

    if not path.is_file():
        raise MotionFileError(f"motion file not found: {path}")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise MotionFileError(f"{path} is not a readable motion file (damaged or not safetensors): {exc}") from exc
    with handle:
        header = handle.metadata() or {}
        if header.get("format") != FORMAT:
            raise MotionFileError(f"{path} is a safetensors file but not a Ditto motion (no {FORMAT} header)")
        check_version(header.get("version"), path)
        layout = {key: (handle.get_slice(key).get_dtype(), handle.get_slice(key).get_shape()) for key in handle.keys()}
        check_layout(layout, path)
        tensors = {key: handle.get_tensor(key) for key in layout}
    return tensors, header, read_metadata(header.get("metadata", "{}"), path)


def check_version(text: str | None, path: Path) -> int:
    try:
        version = int(text)
    except (TypeError, ValueError):
        raise MotionFileError(f"{path}: the format version is {text!r}, not a whole number; the file is damaged or "
                              f"was not written by ComfyUI-Ditto") from None
    if version > FORMAT_VERSION:
        raise MotionFileError(f"{path} was made by a newer version of the pack (motion format version {version}; "
                              f"this one reads versions up to {FORMAT_VERSION}): update ComfyUI-Ditto to load it")
    if version < 1:
        raise MotionFileError(f"{path}: the format version is {version}; versions start at 1, so the file is "
                              f"damaged or was not written by ComfyUI-Ditto")
    return version


def check_layout(layout: dict[str, tuple[str, list[int]]], path: Path) -> None:
    """Tensor names, dtypes and shapes, before anything is loaded (so a header cannot ask for gigabytes)."""
    unknown = sorted(set(layout) - {"frames", "anchor", "exp_offsets"})
    if unknown:
        raise MotionFileError(f"{path} holds tensor(s) {', '.join(map(repr, unknown))}; a motion file holds only "
                              f"'frames', 'anchor' and 'exp_offsets'")
    if "frames" not in layout:
        raise MotionFileError(f"{path} has no 'frames' tensor; the file is damaged")
    for key, (dtype, shape) in layout.items():
        if dtype not in FLOAT_DTYPES:
            raise MotionFileError(f"{path}: {key} has dtype {dtype}; motion is stored as floating point "
                                  f"({', '.join(FLOAT_DTYPES)})")
    shape = layout["frames"][1]
    if len(shape) != 2 or shape[1] != MOTION_DIM or not 1 <= shape[0] <= MAX_FRAMES:
        raise MotionFileError(f"{path}: frames have shape {shape}; a motion's frames are [N, {MOTION_DIM}] with N "
                              f"from 1 to {MAX_FRAMES}")
    if "anchor" in layout and layout["anchor"][1] != [MOTION_DIM]:
        raise MotionFileError(f"{path}: anchor has shape {layout['anchor'][1]}; a motion's anchor is [{MOTION_DIM}]")
    if "exp_offsets" in layout and layout["exp_offsets"][1] != [shape[0], EXP_DIM]:
        raise MotionFileError(f"{path}: exp_offsets have shape {layout['exp_offsets'][1]}; a motion's face edits are "
                              f"[N, {EXP_DIM}], one row per frame ({shape[0]})")


def read_metadata(text: str, path: Path) -> dict:
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MotionFileError(f"{path}: the metadata is not valid JSON ({type(exc).__name__}: "
                              f"{str(exc)[:120]})") from None
    if not isinstance(metadata, dict):
        raise MotionFileError(f"{path}: the metadata is a JSON {type(metadata).__name__}, not an object")
    return metadata
