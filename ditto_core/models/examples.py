"""Well-formed random inputs for each network, sized from its (file-inferred) config."""

from __future__ import annotations

import torch
from torch import nn


def example_inputs(kind: str, net: nn.Module, image_size: int = 256, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Positional inputs for ``net.forward`` at batch 1, on the network's device.

    image_size: side of the 256² crop fed to the extractors (the feature maps are a quarter of it).
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(net.parameters()).device
    cfg = net.config
    feat = image_size // 4

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=gen)

    def keypoints(num_kp: int) -> torch.Tensor:
        return rand(1, num_kp, 3) * 1.6 - 0.8

    if kind in ("appearance_extractor", "motion_extractor"):
        inputs = (rand(1, 3, image_size, image_size),)
    elif kind == "warp_network":
        kp_source = keypoints(cfg.num_kp)
        kp_driving = kp_source + 0.05 * torch.randn(kp_source.shape, generator=gen)
        inputs = (rand(1, cfg.feature_channels, cfg.feature_depth, feat, feat) - 0.5, kp_source, kp_driving)
    elif kind == "decoder":
        inputs = (rand(1, cfg.in_channels, feat, feat) * 0.2,)
    elif kind == "stitch_network":
        num_kp = cfg.widths[0] // 6
        inputs = (keypoints(num_kp), keypoints(num_kp))
    elif kind == "lmdm":
        inputs = (
            torch.randn(1, cfg.seq_len, cfg.motion_dim, generator=gen),
            torch.randn(1, cfg.motion_dim, generator=gen) * 0.1,
            torch.randn(1, cfg.seq_len, cfg.cond_dim, generator=gen),
            torch.tensor([500]),
        )
    else:
        raise ValueError(f"unknown network kind {kind!r}")
    return tuple(x.to(device) for x in inputs)
