"""Warping network W: moves the source appearance volume from source to driving keypoints.

A dense-motion hourglass blends one translation field per keypoint (plus an identity background field) into a
single deformation, warps the volume with it, and predicts an occlusion map that gates the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvNormAct, Hourglass3d, full_precision, keypoint_heatmaps, make_coordinate_grid
from .state_dict import count_indexed, shape_of

HOURGLASS = "dense_motion_network.hourglass."


@dataclass(frozen=True)
class WarpingConfig:
    num_kp: int = 21
    feature_channels: int = 32  # channels of the appearance volume
    feature_depth: int = 16  # depth of the appearance volume
    compress_channels: int = 4
    hourglass_expansion: int = 32
    hourglass_blocks: int = 5
    hourglass_max_features: int = 1024
    out_channels: int = 256

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "WarpingConfig":
        num_blocks = count_indexed(sd, HOURGLASS + "encoder.down_blocks.")
        down_widths = [shape_of(sd, f"{HOURGLASS}encoder.down_blocks.{i}.conv.weight")[0] for i in range(num_blocks)]
        hourglass_out = shape_of(sd, HOURGLASS + "decoder.conv.weight")[0]
        return cls(
            num_kp=shape_of(sd, "dense_motion_network.mask.weight")[0] - 1,
            feature_channels=shape_of(sd, "dense_motion_network.compress.weight")[1],
            feature_depth=shape_of(sd, "dense_motion_network.occlusion.weight")[1] // hourglass_out,
            compress_channels=shape_of(sd, "dense_motion_network.compress.weight")[0],
            hourglass_expansion=shape_of(sd, f"{HOURGLASS}decoder.up_blocks.{num_blocks - 1}.conv.weight")[0],
            hourglass_blocks=num_blocks,
            hourglass_max_features=max(down_widths),
            out_channels=shape_of(sd, "fourth.weight")[0],
        )


class DenseMotionNetwork(nn.Module):
    def __init__(self, config: WarpingConfig):
        super().__init__()
        self.num_kp = config.num_kp
        slots = config.num_kp + 1
        self.compress = nn.Conv3d(config.feature_channels, config.compress_channels, 1)
        self.norm = nn.BatchNorm3d(config.compress_channels)
        self.hourglass = Hourglass3d(
            in_channels=slots * (config.compress_channels + 1),
            block_expansion=config.hourglass_expansion,
            num_blocks=config.hourglass_blocks,
            max_features=config.hourglass_max_features,
        )
        self.mask = nn.Conv3d(self.hourglass.out_channels, slots, 7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels * config.feature_depth, 1, 7, padding=3)

    def sparse_motions(self, grid: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """Identity field followed by one pure translation per keypoint.

        grid: ``[D, H, W, 3]``; kp_*: ``[B, K, 3]``. Returns ``[B, K+1, D, H, W, 3]``.
        """
        per_kp = grid[None, None] - kp_driving[:, :, None, None, None, :] + kp_source[:, :, None, None, None, :]
        identity = grid[None, None].expand(kp_source.shape[0], 1, *grid.shape)
        return torch.cat([identity, per_kp], dim=1)

    def forward(
        self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feature ``[B, C, D, H, W]`` → deformation ``[B, D, H, W, 3]`` and occlusion ``[B, 1, H, W]``, both
        float32. Under reduced-precision autocast only the convolutions run in low precision: the sampling, the
        keypoint fields and the blend of the motions stay float32."""
        b, _, d, h, w = feature.shape
        slots = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))
        grid = make_coordinate_grid(d, h, w, like=kp_source)
        motions = self.sparse_motions(grid, kp_source, kp_driving)

        repeated = feature[:, None].expand(b, slots, *feature.shape[1:]).reshape(b * slots, -1, d, h, w)
        deformed = F.grid_sample(repeated.float(), motions.reshape(b * slots, d, h, w, 3), align_corners=False)
        deformed = deformed.view(b, slots, -1, d, h, w)

        heatmap = keypoint_heatmaps(kp_driving, grid) - keypoint_heatmaps(kp_source, grid)
        heatmap = torch.cat([heatmap.new_zeros(b, 1, d, h, w), heatmap], dim=1)
        hourglass_in = torch.cat([heatmap[:, :, None], deformed], dim=2).view(b, -1, d, h, w)

        prediction = self.hourglass(hourglass_in)
        mask = F.softmax(self.mask(prediction).float(), dim=1)
        deformation = (motions * mask[..., None]).sum(dim=1)
        occlusion = torch.sigmoid(self.occlusion(prediction.view(b, -1, h, w)).float())
        return deformation, occlusion


class WarpingNetwork(nn.Module):
    """feature_3d ``[B, 32, 16, 64, 64]``, kp_source ``[B, 21, 3]``, kp_driving ``[B, 21, 3]`` →
    warped 2-D features ``[B, 256, 64, 64]``, float32.

    Under reduced-precision autocast the dense-motion network's convolutions run in low precision; the warp
    itself and the two 2-D convolutions that make the output stay float32: the decoder's image follows their
    rounding closely (bf16 there alone costs about one 8-bit level on average, see ``ditto_core.precision``).
    """

    def __init__(self, config: WarpingConfig = WarpingConfig()):
        super().__init__()
        self.config = config
        self.dense_motion_network = DenseMotionNetwork(config)
        flat_channels = config.feature_channels * config.feature_depth
        self.third = ConvNormAct(2, flat_channels, config.out_channels, leaky=True)
        self.fourth = nn.Conv2d(config.out_channels, config.out_channels, 1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        deformation, occlusion = self.dense_motion_network(feature_3d, kp_source, kp_driving)
        with full_precision(feature_3d):
            warped = F.grid_sample(feature_3d, deformation, align_corners=False)
            b, c, d, h, w = warped.shape
            out = self.fourth(self.third(warped.view(b, c * d, h, w)))
            return out * occlusion
