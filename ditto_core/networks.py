"""All six networks of a release, loaded together."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from .models import CheckpointError, load_network
from .release import NETWORK_FILES, check_release, download_instructions


@dataclass(frozen=True)
class DittoNetworks:
    """The release's networks, in eval mode on one device (a memory manager may move them; ``device`` follows)."""

    root: Path
    appearance_extractor: nn.Module
    motion_extractor: nn.Module
    warp_network: nn.Module
    decoder: nn.Module
    stitch_network: nn.Module
    lmdm: nn.Module

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def as_module(self) -> nn.ModuleDict:
        """The six networks in one module (the same objects, not copies), for a memory manager to move."""
        return nn.ModuleDict({name: getattr(self, name) for name in NETWORK_FILES})


def usable_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or a clear error when this PyTorch build cannot use it."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but this PyTorch build sees no CUDA device; choose the cpu device")
    return device


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
    device = usable_device(device)
    networks = {kind: load_network(kind, status.present[kind], device) for kind in NETWORK_FILES}
    return DittoNetworks(root=status.root, **networks)


def compile_renderer(networks: DittoNetworks) -> DittoNetworks:
    """The same networks with the warp network and decoder (the renderer's cost) wrapped in ``torch.compile``.

    For CUDA, where it is not measured yet (no GPU in the sessions so far); the first frames wait for the
    compilation. On a CPU it does not pay for clips of ordinary length (bench/RESULTS.md).
    """
    return replace(networks, warp_network=torch.compile(networks.warp_network), decoder=torch.compile(networks.decoder))
