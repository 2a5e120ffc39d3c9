"""Stitching network S: corrects driving keypoints so the animated face lines up with the original shoulders."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .state_dict import CheckpointMismatch, shape_of


@dataclass(frozen=True)
class StitchingConfig:
    widths: tuple[int, ...] = (126, 128, 128, 64, 65)  # input, hidden…, output

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "StitchingConfig":
        linear_indices = sorted(int(k.split(".")[1]) for k in sd if k.startswith("mlp.") and k.endswith(".weight"))
        if linear_indices != list(range(0, 2 * len(linear_indices), 2)):
            raise CheckpointMismatch(f"expected linear layers mlp.0, mlp.2, …; found indices {linear_indices}")
        shapes = [shape_of(sd, f"mlp.{i}.weight") for i in linear_indices]
        widths = (shapes[0][1], *(s[0] for s in shapes))
        num_kp, rest = divmod(widths[0], 6)
        if rest or widths[-1] != 3 * num_kp + 2:
            raise CheckpointMismatch(f"the MLP maps {widths[0]} values to {widths[-1]}; stitching reads two sets of "
                                     f"K 3-D keypoints (6K values) and gives 3K + 2")
        return cls(widths=widths)


class StitchingNetwork(nn.Module):
    """kp_source ``[B, K, 3]``, kp_driving ``[B, K, 3]`` → stitched kp_driving ``[B, K, 3]``.

    An MLP reads both keypoint sets and predicts a per-coordinate offset (3K values) plus a shared x/y shift
    (2 values), both added to the driving keypoints.
    """

    def __init__(self, config: StitchingConfig = StitchingConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(config.widths[:-1], config.widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.mlp = nn.Sequential(*layers[:-1])

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        b, k, _ = kp_driving.shape
        delta = self.mlp(torch.cat([kp_source.reshape(b, -1), kp_driving.reshape(b, -1)], dim=1))
        offsets = delta[:, : 3 * k].reshape(b, k, 3)
        shift_xy = delta[:, 3 * k : 3 * k + 2].reshape(b, 1, 2)
        stitched = kp_driving + offsets
        return torch.cat([stitched[..., :2] + shift_xy, stitched[..., 2:]], dim=-1)
