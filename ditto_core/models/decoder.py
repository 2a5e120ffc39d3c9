"""SPADE decoder G: warped 2-D features → a 512² RGB face."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import SPADEResBlock, full_precision
from .state_dict import count_indexed, shape_of


@dataclass(frozen=True)
class DecoderConfig:
    in_channels: int = 256  # also the width of the segmap every SPADE reads
    out_channels: int = 64  # width before the final conv
    num_middle_blocks: int = 6
    spade_hidden: int = 128
    upscale: int = 2  # pixel-shuffle factor of the final conv

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "DecoderConfig":
        img_out = shape_of(sd, "conv_img.0.weight")[0]
        return cls(
            in_channels=shape_of(sd, "fc.weight")[1],
            out_channels=shape_of(sd, "up_1.conv_1.weight_orig")[0],
            num_middle_blocks=count_indexed(sd, "G_middle_"),
            spade_hidden=shape_of(sd, "up_1.norm_0.mlp_shared.0.weight")[0],
            upscale=round((img_out / 3) ** 0.5),
        )


class SPADEDecoder(nn.Module):
    """feature ``[B, 256, 64, 64]`` float32 → image ``[B, 3, 512, 512]`` float32 RGB in (0, 1).

    Under reduced-precision autocast the first convolution still runs in float32: it maps the feature straight
    into the residual stream, and rounding either costs about one 8-bit level on average (see
    ``ditto_core.precision``); it is 1% of the decoder's work. The final sigmoid is float32 too (bf16 cannot
    hold an 8-bit image exactly).
    """

    def __init__(self, config: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.config = config
        c, hidden = config.in_channels, config.spade_hidden
        self.fc = nn.Conv2d(c, 2 * c, 3, padding=1)
        for i in range(config.num_middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResBlock(2 * c, 2 * c, c, hidden))
        self.up_0 = SPADEResBlock(2 * c, c, c, hidden)
        self.up_1 = SPADEResBlock(c, config.out_channels, c, hidden)
        self.conv_img = nn.Sequential(
            nn.Conv2d(config.out_channels, 3 * config.upscale**2, 3, padding=1),
            nn.PixelShuffle(config.upscale),
        )

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        if feature.device.type == "cpu":  # oneDNN convolves channels-last activations without reordering each one
            feature = feature.contiguous(memory_format=torch.channels_last)
        with full_precision(feature):
            x = self.fc(feature)
        for i in range(self.config.num_middle_blocks):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2.0), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2.0), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)).float())
