"""Diffusion constants of the LMDM: the cosine noise schedule and the DDIM time pairs."""

from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000


def cosine_betas(num_timesteps: int = NUM_TRAIN_TIMESTEPS, s: float = 0.008) -> torch.Tensor:
    """β_k = 1 − f(k+1)/f(k) with f(k) = cos²((k/n + s)/(1 + s) · π/2), clipped to [0, 0.999].

    Computed in float64 and returned as float32, as the reference does. Returns ``[num_timesteps]``.
    """
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps + s
    f = torch.cos(steps / (1 + s) * math.pi / 2).pow(2)
    f = f / f[0]
    return (1 - f[1:] / f[:-1]).clamp(0, 0.999).float()


def alphas_cumprod(num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """ᾱ_k = Π_{j≤k} (1 − β_j), accumulated in float32. Returns ``[num_timesteps]``."""
    return torch.cumprod(1.0 - cosine_betas(num_timesteps), dim=0)


def ddim_time_pairs(sampling_steps: int, num_timesteps: int = NUM_TRAIN_TIMESTEPS) -> list[tuple[int, int]]:
    """Consecutive (t, t_next) pairs from ``num_timesteps − 1`` down to −1.

    The times are ``linspace(−1, n − 1, S + 1)`` in float32 truncated toward zero, reversed; the last pair ends
    at −1, meaning "return the predicted clean motion".
    """
    if not 1 <= sampling_steps <= num_timesteps:
        raise ValueError(f"sampling steps must be between 1 and {num_timesteps}, got {sampling_steps}")
    times = torch.linspace(-1, num_timesteps - 1, steps=sampling_steps + 1).int().tolist()[::-1]
    return list(zip(times[:-1], times[1:]))
