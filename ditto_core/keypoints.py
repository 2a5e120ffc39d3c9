"""Implicit-keypoint geometry: pose bins → degrees, Euler rotation, and LivePortrait's keypoint transform."""

from __future__ import annotations

import math

import torch

POSE_BIN_DEGREES = 3.0
MIN_LOG_PROB = -30.0  # log-probability floor of an emptied pose bin


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Expected angle under the softmax of pose-bin logits.

    logits: ``[..., num_bins]`` (66 in the release: 3° bins centred on 0) → degrees ``[...]`` in
    [−97.5°, 97.5°].
    """
    num_bins = logits.shape[-1]
    index = torch.arange(num_bins, dtype=logits.dtype, device=logits.device)
    expected_bin = (logits.softmax(dim=-1) * index).sum(dim=-1)
    return expected_bin * POSE_BIN_DEGREES - POSE_BIN_DEGREES * (num_bins - 1) / 2


def shift_bins(logits: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Pose-bin logits ``[N, 66]`` whose expected angle is ``degrees`` ``[N]`` higher.

    The bin probabilities are moved by degrees/3 bins with linear interpolation, which shifts the expected angle
    exactly while no probability crosses the ±97.5° ends (it is renormalised if some does).
    """
    probs = logits.softmax(dim=-1)
    bins = logits.shape[-1]
    source = torch.arange(bins, dtype=torch.float32)[None] - (degrees / POSE_BIN_DEGREES)[:, None]
    low = source.floor()
    frac = source - low
    low = low.long()

    def gather(index):
        valid = (index >= 0) & (index < bins)
        return torch.where(valid, probs.gather(1, index.clamp(0, bins - 1)), torch.zeros(()))

    shifted = gather(low) * (1 - frac) + gather(low + 1) * frac
    shifted = shifted / shifted.sum(dim=-1, keepdim=True)
    return shifted.clamp_min(math.exp(MIN_LOG_PROB)).log()


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(R_z(roll) · R_y(yaw) · R_x(pitch))ᵀ for right-multiplying row-vector keypoints.

    pitch, yaw, roll: ``[B]`` in degrees → ``[B, 3, 3]``.
    """
    x, y, z = (angle * (math.pi / 180) for angle in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def matrix(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=-1).view(*x.shape, 3, 3)

    rot_x = matrix(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    rot_y = matrix(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rot_z = matrix(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return (rot_z @ rot_y @ rot_x).transpose(-1, -2)


def transform_keypoints(
    kp: torch.Tensor,
    pitch: torch.Tensor,
    yaw: torch.Tensor,
    roll: torch.Tensor,
    t: torch.Tensor,
    exp: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """x = scale · (kp · R + exp) + [t_x, t_y, 0]  (t_z is unused).

    kp, exp: ``[B, K·3]`` or ``[B, K, 3]``; pitch, yaw, roll: ``[B]`` degrees; t: ``[B, 3]``; scale: ``[B, 1]``.
    Returns ``[B, K, 3]``.
    """
    b = kp.shape[0]
    kp = kp.reshape(b, -1, 3)
    x = kp @ rotation_matrix(pitch, yaw, roll) + exp.reshape(b, -1, 3)
    x = x * scale.reshape(b, 1, 1)
    shift = torch.cat([t[:, :2], torch.zeros_like(t[:, :1])], dim=-1)
    return x + shift[:, None, :]
