"""Load Ditto Models: the release's networks, face models and audio encoder as one DITTO_MODELS value."""

from __future__ import annotations

import os
from pathlib import Path

import comfy.utils
import folder_paths
from comfy import model_management
from comfy_api.latest import io

from ..ditto_core.download import download_release
from ..ditto_core.models import CheckpointError
from ..ditto_core.networks import usable_device
from ..ditto_core.release import PYTORCH_DIR, check_release
from .common import CATEGORY, ESSENTIALS, check_interrupt
from .memory import shared_pipeline
from .types import DittoModels

MODEL_FOLDER = "ditto"
SETTINGS = {"as released (ditto_cfg)": False, "reference code defaults": True}
folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))


def release_choices() -> list[str]:
    """``ditto_pytorch`` folders found under the registered ``models/ditto`` folders, relative to them.

    The default location (``ditto_pytorch`` directly under ``models/ditto``) is always offered, so a workflow
    validates before the files are downloaded and the run explains what is missing.
    """
    found = {PYTORCH_DIR}
    for base in folder_paths.get_folder_paths(MODEL_FOLDER):
        base_path = Path(base)
        if base_path.is_dir():
            found.update(str(p.relative_to(base_path)) for p in base_path.glob(f"**/{PYTORCH_DIR}") if p.is_dir())
    return sorted(found)


def resolve_choice(choice: str) -> Path:
    bases = [Path(b) for b in folder_paths.get_folder_paths(MODEL_FOLDER)]
    for base in bases:
        if (base / choice).is_dir():
            return base / choice
    return bases[0] / choice


class DittoLoadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DittoLoadModels",
            display_name="Load Ditto Models",
            category=CATEGORY,
            description=(
                "Loads the official Ditto PyTorch release from models/ditto/: the six networks (appearance and motion "
                "extractors, warping network, decoder, stitching network, motion diffusion model), the face detector "
                "and landmark models, the HuBERT audio encoder, and the release's configuration (ditto_cfg: blinks, "
                "emotion, steps, clipping, …), which every Ditto node follows unless told otherwise. Get them from "
                "the Hugging Face repo digital-avatar/ditto-talkinghead (folders ditto_pytorch and ditto_cfg), or "
                "switch on download_missing."
            ),
            search_aliases=["ditto", "talking head model", "load checkpoint", "download models"],
            essentials_category=ESSENTIALS,
            inputs=[
                io.Combo.Input("release", options=release_choices(), tooltip="A ditto_pytorch folder under models/ditto/."),
                io.Combo.Input("device", options=["auto", "cpu", "cuda"], default="auto",
                               tooltip="auto: ComfyUI's device."),
                io.Combo.Input("settings", options=list(SETTINGS), default="as released (ditto_cfg)",
                               tooltip="as released: official Ditto's configuration from ditto_cfg/ next to "
                                       "ditto_pytorch/. reference code defaults: the reference code's built-in "
                                       "settings instead (no blinks, 50 steps, …; not what official Ditto does)."),
                io.Boolean.Input("download_missing", default=False, optional=True,
                                 tooltip="When release files are missing, download them from Hugging Face (about "
                                         "2 GB), each checked against the hub's sha256 for one pinned commit and "
                                         "written atomically; files already there that match are kept, damaged "
                                         "ones replaced."),
            ],
            outputs=[DittoModels.Output("models",
                                        tooltip="The loaded Ditto models, cached until the folder or device changes.")],
        )

    @classmethod
    def execute(cls, release: str, device: str, settings: str = "as released (ditto_cfg)",
                download_missing: bool = False) -> io.NodeOutput:
        folder = resolve_choice(release)
        code_defaults = SETTINGS[settings]
        status = check_release(folder)
        missing = status.missing_needed(code_defaults)
        if missing and not download_missing:
            raise CheckpointError(f"{status.report()}\nOr switch on download_missing on this node"
                                  + ("." if code_defaults else ", or choose 'reference code defaults' (settings) "
                                     "if only ditto_cfg is missing."))
        if missing:
            bar = comfy.utils.ProgressBar(100)

            def on_bytes(path: str, done: int, total: int) -> None:
                check_interrupt()
                bar.update_absolute(100 * done // max(total, 1))

            download_release(folder, progress=on_bytes)
        torch_device = model_management.get_torch_device() if device == "auto" else usable_device(device)
        # the networks start on ComfyUI's offload device; each Ditto node asks for them on torch_device as it runs
        return io.NodeOutput(shared_pipeline(folder, torch_device, code_defaults))
