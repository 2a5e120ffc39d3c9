"""All six networks of a release, loaded together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .models import CheckpointError, load_network
from .release import NETWORK_FILES, check_release, download_instructions


@dataclass(frozen=True)
class DittoNetworks:
    """The release's networks, in eval mode on one device."""

    root: Path
    device: torch.device
    appearance_extractor: nn.Module
    motion_extractor: nn.Module
    warp_network: nn.Module
    decoder: nn.Module
    stitch_network: nn.Module
    lmdm: nn.Module


def load_networks(root: str | Path, device: str | torch.device = "cpu") -> DittoNetworks:
    """Load every network under release folder ``root``; a missing file raises CheckpointError listing all the
    missing files and how to download them."""
    status = check_release(root)
    missing = [NETWORK_FILES[kind] for kind in NETWORK_FILES if kind in status.missing]
    if missing:
        listed = "\n".join(f"  {status.root / f.path}" for f in missing)
        raise CheckpointError(
            f"Ditto model files are missing:\n{listed}\n{download_instructions(status.root, missing)}"
        )
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but this PyTorch build sees no CUDA device; choose the cpu device")
    networks = {kind: load_network(kind, status.present[kind], device) for kind in NETWORK_FILES}
    return DittoNetworks(root=status.root, device=device, **networks)
