"""The renderer's numeric precision, chosen per device: the one place that decides what runs in reduced precision.

Only the convolution-heavy renderer networks, the warp network and the decoder, may compute in reduced precision
(through autocast). Everything else computes in float32: the extractors, the stitching network, the keypoint
transform, the LMDM, and inside those two networks the operations they keep in float32 (``full_precision``
regions and ``.float()`` casts: the 3-D sampling, the motion blend, the convolutions that make and first read the
warped feature, the final sigmoid), whose rounding the image shows.

``auto`` picks, per device:

- a CPU with native bf16 instructions (AVX512-BF16 or AMX): bf16 (never emulated: without them, fp32);
- CUDA with tensor cores (compute capability ≥ 7.0): fp16, as the reference's own CUDA path runs these networks;
- MPS: fp16;
- anything else: fp32.

``auto`` may only pick a reduced precision whose frames differ from fp32's by less than ``MAX_MEAN_LEVELS`` on
average and at most ``MAX_P999_LEVELS`` at the 99.9th percentile, in 8-bit levels over the face; ``bench/precision.py``
measures that (and the speed) on any device and release.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
REDUCIBLE_NETWORKS = ("warp_network", "decoder")  # DittoNetworks fields whose convolutions may run reduced

# The bound a reduced precision must meet against fp32 for ``auto`` to pick it (8-bit levels, face pixels).
MAX_MEAN_LEVELS = 1.0
MAX_P999_LEVELS = 4.0


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX), as PyTorch's cpuinfo reads them;
    False where this PyTorch cannot tell."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return any(check() for check in checks if check is not None)


@dataclass(frozen=True)
class DeviceDescription:
    """What the precision policy needs to know of a device."""

    type: str  # torch device type: "cpu", "cuda", "mps", …
    native_bf16: bool = False  # CPU: AVX512-BF16/AMX; CUDA: compute capability ≥ 8.0
    fast_fp16: bool = False  # CUDA: tensor cores (compute capability ≥ 7.0)

    @classmethod
    def of(cls, device: str | torch.device) -> "DeviceDescription":
        device = torch.device(device)
        if device.type == "cpu":
            return cls("cpu", native_bf16=cpu_has_native_bf16())
        if device.type == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            return cls("cuda", native_bf16=major >= 8, fast_fp16=major >= 7)
        return cls(device.type)


@dataclass(frozen=True)
class PrecisionPlan:
    """The resolved precision of the networks in ``REDUCIBLE_NETWORKS``; every other network computes in float32."""

    precision: str = "fp32"  # "fp32", "bf16" or "fp16"

    def dtype(self, network: str) -> torch.dtype:
        """The dtype network ``network`` (a DittoNetworks field name) computes its convolutions in."""
        return DTYPES[self.precision] if network in REDUCIBLE_NETWORKS else torch.float32

    def autocast(self, network: str, device_type: str) -> torch.autocast:
        """The autocast region to call ``network`` in (a disabled one at float32)."""
        dtype = self.dtype(network)
        return torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)


def fast_precisions(device: DeviceDescription) -> list[str]:
    """The reduced precisions ``device`` has fast kernels for, ``auto``'s choice first."""
    if device.type == "cpu":
        return ["bf16"] if device.native_bf16 else []
    if device.type == "cuda":
        return ["fp16"] * device.fast_fp16 + ["bf16"] * device.native_bf16
    return ["fp16"] if device.type == "mps" else []


def auto_precision(device: DeviceDescription) -> str:
    """What ``auto`` resolves to on ``device``: its first fast reduced precision, else fp32."""
    return next(iter(fast_precisions(device)), "fp32")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def precision_plan(device: DeviceDescription, precision: str = "auto") -> PrecisionPlan:
    """The plan for ``precision`` on ``device``: ``auto`` chooses per device; an explicit precision is used as
    asked (bf16 on a CPU without native bf16 is correct but slow), except fp16 on a CPU, which is refused."""
    check_precision(precision)
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 has no fast CPU kernels (the small test networks take minutes per frame, the "
                         "official ones hours); on a CPU choose auto, bf16 or fp32")
    return PrecisionPlan(auto_precision(device) if precision == "auto" else precision)


@dataclass(frozen=True)
class ImageDifference:
    """How far frames are from reference frames, in 8-bit levels over the compared pixels, and their PSNR (dB)."""

    mean: float
    p999: float
    max: float
    psnr: float

    @classmethod
    def between(cls, frames: np.ndarray, reference: np.ndarray, where: np.ndarray | None = None) -> "ImageDifference":
        """frames, reference: uint8 or float ``[..., H, W, 3]`` in 0–255; where: bool ``[..., H, W]`` selecting the
        pixels compared (all when None)."""
        diff = np.abs(frames.astype(np.float64) - reference.astype(np.float64))
        if where is not None:
            diff = diff[np.broadcast_to(where, diff.shape[:-1])]
        mse = float(np.mean(diff**2))
        psnr = float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))
        return cls(float(diff.mean()), float(np.percentile(diff, 99.9)), float(diff.max()), psnr)

    @property
    def within_bound(self) -> bool:
        return self.mean < MAX_MEAN_LEVELS and self.p999 <= MAX_P999_LEVELS
