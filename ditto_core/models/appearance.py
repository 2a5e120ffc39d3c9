"""Appearance feature extractor F: a 256² portrait crop → a 3-D appearance feature volume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import ConvNormAct, ResBlock3d
from .state_dict import count_indexed, shape_of


@dataclass(frozen=True)
class AppearanceConfig:
    block_expansion: int = 64
    num_down_blocks: int = 2
    max_features: int = 512
    reshape_channels: int = 32
    num_resblocks: int = 6

    @property
    def reshape_depth(self) -> int:
        return self.max_features // self.reshape_channels

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "AppearanceConfig":
        return cls(
            block_expansion=shape_of(sd, "first.conv.weight")[0],
            num_down_blocks=count_indexed(sd, "down_blocks."),
            max_features=shape_of(sd, "second.weight")[0],
            reshape_channels=shape_of(sd, "resblocks_3d.3dr0.conv1.weight")[0],
            num_resblocks=count_indexed(sd, "resblocks_3d.3dr"),
        )


class AppearanceFeatureExtractor(nn.Module):
    """source_image ``[B, 3, 256, 256]`` RGB in [0, 1] → f_s ``[B, 32, 16, 64, 64]``."""

    def __init__(self, config: AppearanceConfig = AppearanceConfig()):
        super().__init__()
        self.config = config
        widths = [config.block_expansion * 2**i for i in range(config.num_down_blocks + 1)]
        widths = [min(config.max_features, w) for w in widths]
        self.first = ConvNormAct(2, 3, widths[0])
        self.down_blocks = nn.ModuleList(
            ConvNormAct(2, widths[i], widths[i + 1], resample="down") for i in range(config.num_down_blocks)
        )
        self.second = nn.Conv2d(widths[-1], config.max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(config.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(config.reshape_channels))

    def forward(self, source_image: torch.Tensor) -> torch.Tensor:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        volume = out.view(b, self.config.reshape_channels, self.config.reshape_depth, h, w)
        return self.resblocks_3d(volume)
