"""Building blocks shared by the LivePortrait-family renderer networks.

Every block keeps the parameter names of the released checkpoints (``conv``, ``norm``, ``weight_orig`` ...), so a
network assembled from them loads the official files with a strict ``load_state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def full_precision(like: torch.Tensor) -> torch.autocast:
    """A region that runs in float32 even inside reduced-precision autocast; its inputs must be float32.

    For the few operations whose rounding the rendered image shows (see ``ditto_core.precision``); outside
    autocast it changes nothing.
    """
    return torch.autocast(like.device.type, enabled=False)


def make_coordinate_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Normalised (x, y, z) coordinates of every voxel of a volume.

    Each axis runs linearly from -1 to 1 inclusive (x to the right, y down, z into the image).

    Returns: ``[depth, height, width, 3]`` in the dtype and device of ``like``.
    """

    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, dtype=like.dtype, device=like.device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_heatmaps(kp: torch.Tensor, grid: torch.Tensor, variance: float = 0.01) -> torch.Tensor:
    """Unnormalised Gaussian bumps centred on each keypoint.

    kp: ``[B, K, 3]``; grid: ``[D, H, W, 3]``. Returns ``[B, K, D, H, W]``.
    """
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


class ConvNormAct(nn.Module):
    """Convolution → BatchNorm → ReLU (or LeakyReLU), optionally with nearest ×2 upsampling before it
    (3-D: height and width only) or 2×2 average pooling after it.

    Serves the checkpoints' ``SameBlock2d``, ``DownBlock2d``, ``DownBlock3d`` and ``UpBlock3d``.
    """

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        leaky: bool = False,
        resample: str | None = None,
    ):
        super().__init__()
        if resample not in (None, "down", "up"):
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        conv_cls, norm_cls = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.conv = conv_cls(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = norm_cls(out_channels)
        self.leaky = leaky
        self.resample = resample
        self.dims = dims

    def _spatial_factor(self) -> tuple[int, ...]:
        return (2, 2) if self.dims == 2 else (1, 2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            x = F.interpolate(x, scale_factor=self._spatial_factor())
        x = self.norm(self.conv(x))
        x = F.leaky_relu(x, 0.01) if self.leaky else F.relu(x)
        if self.resample == "down":
            pool = F.avg_pool2d if self.dims == 2 else F.avg_pool3d
            x = pool(x, self._spatial_factor())
        return x


class ResBlock3d(nn.Module):
    """Pre-activation residual block: x + conv2(relu(norm2(conv1(relu(norm1(x))))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm1 = nn.BatchNorm3d(channels)
        self.norm2 = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


def hourglass_widths(block_expansion: int, num_blocks: int, max_features: int) -> list[int]:
    """Channel width of hourglass level i (0 = input resolution): min(max_features, E · 2^i)."""
    return [min(max_features, block_expansion * 2**i) for i in range(num_blocks + 1)]


class HourglassEncoder3d(nn.Module):
    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        widths = hourglass_widths(block_expansion, num_blocks, max_features)
        ins = [in_channels] + widths[1:num_blocks]
        self.down_blocks = nn.ModuleList(
            ConvNormAct(3, ins[i], widths[i + 1], resample="down") for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Returns the input followed by every level's output (finest first)."""
        levels = [x]
        for block in self.down_blocks:
            levels.append(block(levels[-1]))
        return levels


class HourglassDecoder3d(nn.Module):
    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        widths = hourglass_widths(block_expansion, num_blocks, max_features)
        self.up_blocks = nn.ModuleList(
            ConvNormAct(3, (1 if i == num_blocks - 1 else 2) * widths[i + 1], widths[i], resample="up")
            for i in reversed(range(num_blocks))
        )
        self.out_channels = block_expansion + in_channels
        self.conv = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        out = levels[-1]
        for block, skip in zip(self.up_blocks, reversed(levels[:-1])):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass3d(nn.Module):
    """U-Net over a feature volume; the output has ``block_expansion + in_channels`` channels."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.encoder = HourglassEncoder3d(in_channels, block_expansion, num_blocks, max_features)
        self.decoder = HourglassDecoder3d(in_channels, block_expansion, num_blocks, max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class SpectralNormConv2d(nn.Module):
    """A Conv2d whose weight is stored the way ``torch.nn.utils.spectral_norm`` stores it.

    The checkpoint holds ``weight_orig`` with the power-iteration vectors ``weight_u`` and ``weight_v``; at
    inference the effective weight is ``weight_orig / σ`` with ``σ = u · (W v)`` and no further iteration, which
    is what the reference's eval-mode module computes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("weight_u", torch.empty(out_channels))
        self.register_buffer("weight_v", torch.empty(in_channels * kernel_size * kernel_size))
        self.padding = kernel_size // 2
        nn.init.kaiming_uniform_(self.weight_orig, a=5**0.5)
        nn.init.normal_(self.weight_u)
        nn.init.normal_(self.weight_v)

    @property
    def weight(self) -> torch.Tensor:
        sigma = torch.dot(self.weight_u, torch.mv(self.weight_orig.flatten(1), self.weight_v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class SPADE(nn.Module):
    """Spatially-adaptive normalisation: instance-normalised x modulated by maps predicted from a segmap."""

    def __init__(self, channels: int, label_channels: int, hidden_channels: int = 128):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden_channels, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden_channels, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        actv = self.mlp_shared(F.interpolate(segmap, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Residual block of two SPADE → LeakyReLU(0.2) → spectral-norm conv steps, with a learned 1×1 shortcut
    when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, label_channels: int, hidden_channels: int = 128):
        super().__init__()
        mid_channels = min(in_channels, out_channels)
        self.conv_0 = SpectralNormConv2d(in_channels, mid_channels, 3)
        self.conv_1 = SpectralNormConv2d(mid_channels, out_channels, 3)
        self.norm_0 = SPADE(in_channels, label_channels, hidden_channels)
        self.norm_1 = SPADE(mid_channels, label_channels, hidden_channels)
        self.learned_shortcut = in_channels != out_channels
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(in_channels, out_channels, 1, bias=False)
            self.norm_s = SPADE(in_channels, label_channels, hidden_channels)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), 0.2))
        return shortcut + dx
