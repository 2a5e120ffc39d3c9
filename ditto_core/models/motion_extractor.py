"""Motion extractor M: a ConvNeXt-V2 that reads head pose, expression, scale, translation and canonical
keypoints off a 256² portrait crop."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .state_dict import count_indexed, shape_of


@dataclass(frozen=True)
class MotionExtractorConfig:
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (3, 3, 9, 3)
    num_kp: int = 21
    num_bins: int = 66

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "MotionExtractorConfig":
        num_stages = count_indexed(sd, "detector.stages.")
        dims = tuple(shape_of(sd, f"detector.stages.{s}.0.dwconv.weight")[0] for s in range(num_stages))
        depths = tuple(count_indexed(sd, f"detector.stages.{s}.") for s in range(num_stages))
        return cls(
            dims=dims,
            depths=depths,
            num_kp=shape_of(sd, "detector.fc_kp.weight")[0] // 3,
            num_bins=shape_of(sd, "detector.fc_pitch.weight")[0],
        )


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (biased variance, eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on NHWC: x + γ·(x·N) + β with N the spatial L2 norm over its channel mean."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise 7×7 conv → LayerNorm → Linear ×4 → GELU → GRN → Linear, plus the identity."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2KeypointDetector(nn.Module):
    """ConvNeXt-V2 trunk with seven linear heads (the checkpoint's ``detector``)."""

    def __init__(self, config: MotionExtractorConfig):
        super().__init__()
        dims = config.dims
        stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0]))
        downsamples = [
            nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2))
            for i in range(len(dims) - 1)
        ]
        self.downsample_layers = nn.ModuleList([stem, *downsamples])
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth))) for dim, depth in zip(dims, config.depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        width = dims[-1]
        self.fc_kp = nn.Linear(width, 3 * config.num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, config.num_bins)
        self.fc_yaw = nn.Linear(width, config.num_bins)
        self.fc_roll = nn.Linear(width, config.num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * config.num_kp)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))
        x = self.norm(x.mean((-2, -1)))
        heads = (self.fc_pitch, self.fc_yaw, self.fc_roll, self.fc_t, self.fc_exp, self.fc_scale, self.fc_kp)
        return tuple(head(x) for head in heads)


class MotionExtractor(nn.Module):
    """x ``[B, 3, 256, 256]`` RGB in [0, 1] → raw head outputs, in the release's order:

    pitch, yaw, roll ``[B, 66]`` (bin logits), t ``[B, 3]``, exp ``[B, 63]``, scale ``[B, 1]``, kp ``[B, 63]``.
    """

    OUTPUT_NAMES = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")

    def __init__(self, config: MotionExtractorConfig = MotionExtractorConfig()):
        super().__init__()
        self.config = config
        self.detector = ConvNeXtV2KeypointDetector(config)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.detector(x)
