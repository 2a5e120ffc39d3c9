"""The layout of the official Ditto PyTorch release, and what a models folder has of it.

The release is the Hugging Face repository ``digital-avatar/ditto-talkinghead``; the PyTorch pipeline uses its
``ditto_pytorch/`` folder and two configuration files in its sibling ``ditto_cfg/``. Nothing here downloads
anything (``download.py`` does, when asked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HF_REPO = "digital-avatar/ditto-talkinghead"
PYTORCH_DIR = "ditto_pytorch"
CONFIG_DIR = "ditto_cfg"


@dataclass(frozen=True)
class ReleaseFile:
    path: str  # relative to the release root
    role: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{HF_REPO}/resolve/main/{self.path}"


NETWORK_FILES: dict[str, ReleaseFile] = {
    "appearance_extractor": ReleaseFile(f"{PYTORCH_DIR}/models/appearance_extractor.pth", "appearance feature extractor"),
    "motion_extractor": ReleaseFile(f"{PYTORCH_DIR}/models/motion_extractor.pth", "motion extractor (ConvNeXt-V2)"),
    "warp_network": ReleaseFile(f"{PYTORCH_DIR}/models/warp_network.pth", "warping network"),
    "decoder": ReleaseFile(f"{PYTORCH_DIR}/models/decoder.pth", "SPADE decoder"),
    "stitch_network": ReleaseFile(f"{PYTORCH_DIR}/models/stitch_network.pth", "stitching network"),
    "lmdm": ReleaseFile(f"{PYTORCH_DIR}/models/lmdm_v0.4_hubert.pth", "motion diffusion transformer (LMDM v0.4)"),
}

AUX_FILES: dict[str, ReleaseFile] = {
    "face_detector": ReleaseFile(f"{PYTORCH_DIR}/aux_models/det_10g.onnx", "face detector (SCRFD)"),
    "landmark106": ReleaseFile(f"{PYTORCH_DIR}/aux_models/2d106det.onnx", "106-point face landmarks"),
    "landmark203": ReleaseFile(f"{PYTORCH_DIR}/aux_models/landmark203.onnx", "203-point face landmarks"),
    "face_landmarker": ReleaseFile(f"{PYTORCH_DIR}/aux_models/face_landmarker.task", "MediaPipe face landmarker"),
    "hubert": ReleaseFile(f"{PYTORCH_DIR}/aux_models/hubert_streaming_fix_kv.onnx", "HuBERT audio encoder (ONNX)"),
}

CONFIG_FILES: dict[str, ReleaseFile] = {
    "config": ReleaseFile(f"{CONFIG_DIR}/v0.4_hubert_cfg_pytorch.pkl", "release configuration (offline)"),
    "online_config": ReleaseFile(f"{CONFIG_DIR}/v0.4_hubert_cfg_trt_online.pkl",
                                 "release configuration (online; its settings only)"),
}

RELEASE_FILES: dict[str, ReleaseFile] = {**NETWORK_FILES, **AUX_FILES, **CONFIG_FILES}


def resolve_release_root(folder: str | Path) -> Path:
    """The folder that holds ``ditto_pytorch/``; ``folder`` may also be ``ditto_pytorch`` itself."""
    folder = Path(folder).expanduser()
    if folder.name == PYTORCH_DIR and not (folder / PYTORCH_DIR).is_dir():
        return folder.parent
    return folder


def release_path(root: str | Path, name: str) -> Path:
    """Where release file ``name`` (a key of RELEASE_FILES) lives under ``root``."""
    return resolve_release_root(root) / RELEASE_FILES[name].path


PACK_DIR = Path(__file__).resolve().parents[1]  # the folder that holds ditto_core (the pack's, in ComfyUI)


def _shell_path(path: Path) -> str:
    """``path`` as a shell argument: in double quotes when it holds a space (as Windows user folders may)."""
    return f'"{path}"' if " " in str(path) else str(path)


def download_instructions(root: str | Path, files: list[ReleaseFile] | None = None) -> str:
    """What a user runs to fetch the release (or just ``files``) into ``root``."""
    root = resolve_release_root(root)
    if files is None or len(files) == len(RELEASE_FILES):
        patterns = [f"{PYTORCH_DIR}/*", *(f.path for f in CONFIG_FILES.values())]
    else:
        patterns = [f.path for f in files]
    includes = " ".join(f'--include "{pattern}"' for pattern in patterns)
    return (
        f"Download them, pinned to one commit with every file's sha256 checked (from the pack's folder, where "
        f"ditto_core is):\n"
        f"  cd {'/d ' if os.name == 'nt' else ''}{_shell_path(PACK_DIR)} && python -m ditto_core download --models "
        f"{_shell_path(root.absolute())}\n"
        f"or by hand from https://huggingface.co/{HF_REPO}, keeping the sub-folders:\n"
        f"  hf download {HF_REPO} {includes} --local-dir {_shell_path(root)}"
    )


@dataclass(frozen=True)
class ReleaseStatus:
    root: Path
    present: dict[str, Path]
    missing: dict[str, Path]

    @property
    def complete(self) -> bool:
        return not self.missing

    def missing_needed(self, code_defaults: bool = False, audio_backend: str = "onnx") -> set[str]:
        """The missing files a render needs: not the cfgs when running on the code's defaults, not the online cfg
        (live sessions only), not the HuBERT ONNX with the transformers back-end."""
        optional = set(CONFIG_FILES) if code_defaults else {"online_config"}
        if audio_backend == "hubert":
            optional.add("hubert")
        return set(self.missing) - optional

    def report(self) -> str:
        lines = [f"Ditto release at {self.root}:"]
        for name, file in RELEASE_FILES.items():
            if name in self.present:
                lines.append(f"  ok      {file.path}  ({file.role})")
            else:
                lines.append(f"  MISSING {self.missing[name]}  ({file.role})")
        if self.missing:
            lines.append(download_instructions(self.root, [RELEASE_FILES[n] for n in self.missing]))
        return "\n".join(lines)


def check_release(root: str | Path) -> ReleaseStatus:
    """Which release files are present under ``root`` (non-empty files only)."""
    root = resolve_release_root(root)
    present, missing = {}, {}
    for name in RELEASE_FILES:
        path = release_path(root, name)
        (present if path.is_file() and path.stat().st_size > 0 else missing)[name] = path
    return ReleaseStatus(root, present, missing)
