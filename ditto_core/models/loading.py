"""``load_network``: the official Ditto files → our networks, with sizes read from the tensors.

Files are data: ``.pth`` files are read with ``torch.load(weights_only=True)`` (a pickle that would build any
other Python object is refused, never run) and ``.safetensors`` files with safetensors.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..release import HF_REPO, NETWORK_FILES
from .appearance import AppearanceConfig, AppearanceFeatureExtractor
from .decoder import DecoderConfig, SPADEDecoder
from .lmdm import LMDM, LMDMConfig, MotionDenoiser
from .motion_extractor import MotionExtractor, MotionExtractorConfig
from .state_dict import CheckpointMismatch, load_strict
from .stitching import StitchingConfig, StitchingNetwork
from .warping import WarpingConfig, WarpingNetwork

# Containers the release wraps state dicts in: LMDM saves {"model_state_dict": …}; the stitching file holds
# LivePortrait's retargeting MLPs, of which Ditto uses "retarget_shoulder".
CONTAINER_KEYS = ("model_state_dict", "retarget_shoulder")
DDP_PREFIX = "module."


class CheckpointError(ValueError):
    """A model file that cannot be used, with what to do about it."""


@dataclass(frozen=True)
class NetworkSpec:
    config_from_state_dict: Callable[[Mapping[str, torch.Tensor]], object]
    build: Callable[[object], nn.Module]  # config → the module the file's tensors load into
    wrap: Callable[[nn.Module], nn.Module] = lambda module: module


NETWORKS: dict[str, NetworkSpec] = {
    "appearance_extractor": NetworkSpec(AppearanceConfig.from_state_dict, AppearanceFeatureExtractor),
    "motion_extractor": NetworkSpec(MotionExtractorConfig.from_state_dict, MotionExtractor),
    "warp_network": NetworkSpec(WarpingConfig.from_state_dict, WarpingNetwork),
    "decoder": NetworkSpec(DecoderConfig.from_state_dict, SPADEDecoder),
    "stitch_network": NetworkSpec(StitchingConfig.from_state_dict, StitchingNetwork),
    "lmdm": NetworkSpec(LMDMConfig.from_state_dict, MotionDenoiser, LMDM),
}


def read_checkpoint(path: Path) -> object:
    """The raw content of a ``.pth``/``.pt`` or ``.safetensors`` file, as tensors only."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).splitlines()
        reason = next((line.strip() for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
        raise CheckpointError(
            f"{path} holds Python objects other than tensors; it was refused without being run, because "
            f"unpickling it could execute code. Use the official file or a .safetensors copy. ({reason})"
        ) from exc


def unwrap_state_dict(content: object) -> dict[str, torch.Tensor]:
    """The state dict inside a release container, with DDP ``module.`` prefixes removed."""
    if not isinstance(content, Mapping):
        raise CheckpointMismatch(f"expected a dict of tensors, found {type(content).__name__}")
    for key in CONTAINER_KEYS:
        if isinstance(content.get(key), Mapping):
            content = content[key]
            break
    return {(k[len(DDP_PREFIX) :] if k.startswith(DDP_PREFIX) else k): v for k, v in content.items()}


# values a network may hold beyond its file's tensors: buffers computed from its config (the LMDM's noise schedule,
# sampling grids), never the millions a damaged width would ask for
UNSTORED_VALUES = 10_000_000


def check_planned_size(build: Callable[[object], nn.Module], config, state_dict: Mapping[str, torch.Tensor]) -> None:
    """CheckpointMismatch when the network the file's shapes describe would hold far more values than the file
    does (a few bytes of tensors can name widths that ask for gigabytes): it is planned on the meta device, which
    allocates nothing, before it is built."""
    with torch.device("meta"):
        planned = build(config)
    needed = sum(t.numel() for t in (*planned.parameters(), *planned.buffers()))
    held = sum(t.numel() for t in state_dict.values() if isinstance(t, torch.Tensor))
    if needed > held + UNSTORED_VALUES:
        raise CheckpointMismatch(f"its shapes describe a network of {needed} values, but it holds {held}")


def load_network(kind: str, path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build network ``kind`` from its official file and return it in eval mode on ``device``.

    kind: one of ``appearance_extractor``, ``motion_extractor``, ``warp_network``, ``decoder``,
    ``stitch_network``, ``lmdm``. Architecture sizes are read from the file's tensors.
    """
    if kind not in NETWORKS:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {', '.join(NETWORKS)}")
    spec, release_file = NETWORKS[kind], NETWORK_FILES[kind]
    path = Path(path).expanduser()
    where = f"the official file is {release_file.path} from the Hugging Face repo {HF_REPO}"
    if not path.is_file():
        raise CheckpointError(f"Ditto {kind} model file not found: {path} ({where})")
    try:
        content = read_checkpoint(path)
    except CheckpointError:
        raise
    except Exception as exc:  # zip/safetensors readers raise assorted types for damaged files
        raise CheckpointError(
            f"cannot read {path} as a Ditto {kind} checkpoint; the file is damaged or incomplete "
            f"(re-download it: {where}). Reader said: {exc}"
        ) from exc
    try:
        state_dict = unwrap_state_dict(content)
        empty = [key for key, value in state_dict.items() if isinstance(value, torch.Tensor) and value.numel() == 0]
        if empty:  # no release tensor is empty; widths read off one could be anything
            raise CheckpointMismatch(f"{len(empty)} tensor(s) hold no values, e.g. {empty[0]}")
        config = spec.config_from_state_dict(state_dict)
        check_planned_size(spec.build, config, state_dict)
        module = spec.build(config)
        load_strict(module, state_dict)
    except CheckpointMismatch as exc:
        raise CheckpointError(f"{path} does not match the Ditto {kind} network: {exc} ({where})") from exc
    return spec.wrap(module).eval().to(device)
