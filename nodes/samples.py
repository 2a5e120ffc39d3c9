"""The sample inputs the example workflows use, copied into ComfyUI's input folder when the pack loads, so every
template runs as shipped (Load Image, Load Audio, Load Video and Load Motion only list files in input/, and Load
Portraits and Load Speech Clips only its folders).

Copies go under names of their own (``ditto_…``, or in the ``ditto_batch`` folder) and never replace a file: a name
that is already taken by the same bytes is left alone silently, by other bytes (the user's own file) is left alone
with one log line.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"

BATCH_FOLDER = "ditto_batch"
# name in input/ → file in assets/ (assets/README.md says where each comes from)
SAMPLE_INPUTS = {
    "ditto_portrait.jpg": "portrait.jpg",
    "ditto_portrait_2.jpg": "portrait_2.jpg",
    "ditto_speech.wav": "speech.wav",
    "ditto_driving.mp4": "driving.mp4",
    "ditto_nod.safetensors": "nod.safetensors",
    # the batch template's folder: two portraits and a speech clip
    f"{BATCH_FOLDER}/portrait.jpg": "portrait.jpg",
    f"{BATCH_FOLDER}/portrait_2.jpg": "portrait_2.jpg",
    f"{BATCH_FOLDER}/speech.wav": "speech.wav",
}

log = logging.getLogger("ComfyUI-Ditto")


def _copy_new(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` unless ``target`` exists (checked atomically: a finished temporary copy is
    hard-linked into place, which fails on an existing name). True when copied."""
    target.parent.mkdir(exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, tmp_name)
        os.chmod(tmp_name, 0o644)
        try:
            os.link(tmp_name, target)
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system: check, then rename
            if target.exists():
                return False
            os.replace(tmp_name, target)
        return True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def stage_sample_inputs(input_dir: str | Path | None = None, assets: Path = ASSETS) -> dict[str, str]:
    """Copy the sample inputs into ``input_dir`` (default: ComfyUI's input folder). Returns name → what happened:
    "copied", "present" (same bytes already there), "kept" (another file of that name, left alone) or "no asset"."""
    if input_dir is None:
        import folder_paths

        input_dir = folder_paths.get_input_directory()
    input_dir = Path(input_dir)
    input_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    for name, asset in SAMPLE_INPUTS.items():
        source, target = assets / asset, input_dir / name
        if not source.is_file():
            result[name] = "no asset"
        elif target.exists() and not target.is_file():
            result[name] = "kept"
        elif target.is_file():
            result[name] = "present" if filecmp.cmp(source, target, shallow=False) else "kept"
        elif target.parent.exists() and not target.parent.is_dir():  # a file of the sample folder's name
            result[name] = "kept"
        elif _copy_new(source, target):
            result[name] = "copied"
        else:  # made by someone else meanwhile
            result[name] = "present" if filecmp.cmp(source, target, shallow=False) else "kept"
        if result[name] == "kept":
            log.warning("ComfyUI-Ditto: %s in %s is not the pack's sample (left as it is); the example workflows "
                        "that use it will use that file", name, input_dir)
    copied = [name for name, status in result.items() if status == "copied"]
    if copied:
        log.info("ComfyUI-Ditto: copied the example workflows' sample inputs to %s: %s", input_dir, ", ".join(copied))
    return result
