"""LMDM: the motion diffusion transformer that predicts clean motion windows from audio-driven conditions.

The released file holds the denoiser (``MotionDenoiser``); ``LMDM`` wraps it with classifier-free guidance and
the diffusion constants, and its forward is one guided denoising step: (x_t, cond_frame, cond, t) →
(predicted noise, predicted clean motion).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..diffusion import alphas_cumprod
from .state_dict import CheckpointMismatch, count_indexed, shape_of

DEFAULT_NUM_HEADS = 8  # packed attention projections do not reveal the head count


@dataclass(frozen=True)
class LMDMConfig:
    motion_dim: int = 265
    cond_dim: int = 1103
    seq_len: int = 80
    latent_dim: int = 512
    ff_dim: int = 1024
    num_layers: int = 8
    num_cond_layers: int = 2
    num_heads: int = DEFAULT_NUM_HEADS

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> "LMDMConfig":
        latent_dim, input_dim = shape_of(sd, "input_projection.weight")
        motion_dim = shape_of(sd, "final_layer.weight")[0]
        if input_dim != 2 * motion_dim:
            raise CheckpointMismatch(
                f"input_projection takes {input_dim} features but final_layer emits {motion_dim} "
                f"(expected {2 * motion_dim}: noisy motion and the condition frame)"
            )
        if latent_dim % DEFAULT_NUM_HEADS:
            raise CheckpointMismatch(f"latent width {latent_dim} is not divisible by {DEFAULT_NUM_HEADS} heads")
        return cls(
            motion_dim=motion_dim,
            cond_dim=shape_of(sd, "cond_projection.weight")[1],
            seq_len=shape_of(sd, "null_cond_embed")[1],
            latent_dim=latent_dim,
            ff_dim=shape_of(sd, "seqTransDecoder.stack.0.linear1.weight")[0],
            num_layers=count_indexed(sd, "seqTransDecoder.stack."),
            num_cond_layers=count_indexed(sd, "cond_encoder."),
        )


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the whole feature vector: pair (2k, 2k+1) of the token at position p is
    rotated by p·θ_k with θ_k = 10000^(−2k/dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[B, N, dim]`` → the same shape, token i rotated as position i."""
        positions = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype)
        angles = (positions[:, None] * self.freqs[None, :]).repeat_interleave(2, dim=-1).to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))
        rotated_half = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
        return x * angles.cos() + rotated_half * angles.sin()


class Attention(nn.Module):
    """Multi-head attention with packed q/k/v projections (the parameter layout of nn.MultiheadAttention)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query ``[B, Nq, D]``, key/value ``[B, Nk, D]`` → ``[B, Nq, D]``."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        heads = [
            F.linear(x, w, b).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
            for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v))
        ]
        out = F.scaled_dot_product_attention(*heads)
        return self.out_proj(out.transpose(1, 2).flatten(-2))


class CondEncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer with rotary self-attention and a GELU feed-forward."""

    def __init__(self, dim: int, ff_dim: int, num_heads: int, rotary: RotaryEmbedding):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.rotary = rotary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        qk = self.rotary(y)
        x = x + self.self_attn(qk, qk, y)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FiLM(nn.Module):
    """Mish → Linear: a (scale, shift) pair from the time/condition vector, applied as (1 + scale)·y + shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Mish(), nn.Linear(dim, 2 * dim))

    def forward(self, y: torch.Tensor, t_vec: torch.Tensor) -> torch.Tensor:
        """y ``[B, N, D]``, t_vec ``[B, D]``."""
        scale, shift = self.block(t_vec)[:, None].chunk(2, dim=-1)
        return (scale + 1) * y + shift


class FiLMDecoderLayer(nn.Module):
    """Pre-norm decoder layer: rotary self-attention, rotary cross-attention to the condition memory and a
    feed-forward, each residual branch modulated by its own FiLM."""

    def __init__(self, dim: int, ff_dim: int, num_heads: int, rotary: RotaryEmbedding):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.multihead_attn = Attention(dim, num_heads)
        self.linear1 = nn.Linear(dim, ff_dim)
        self.linear2 = nn.Linear(ff_dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.film1 = FiLM(dim)
        self.film2 = FiLM(dim)
        self.film3 = FiLM(dim)
        self.rotary = rotary

    def forward(self, x: torch.Tensor, memory: torch.Tensor, t_vec: torch.Tensor) -> torch.Tensor:
        """x ``[B, T, D]``, memory ``[B, M, D]``, t_vec ``[B, D]``."""
        y = self.norm1(x)
        qk = self.rotary(y)
        x = x + self.film1(self.self_attn(qk, qk, y), t_vec)
        y = self.norm2(x)
        x = x + self.film2(self.multihead_attn(self.rotary(y), self.rotary(memory), memory), t_vec)
        return x + self.film3(self.linear2(F.gelu(self.linear1(self.norm3(x)))), t_vec)


class DecoderStack(nn.Module):
    def __init__(self, layers: list[FiLMDecoderLayer]):
        super().__init__()
        self.stack = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, t_vec: torch.Tensor) -> torch.Tensor:
        for layer in self.stack:
            x = layer(x, memory, t_vec)
        return x


class SinusoidalTimeEmbedding(nn.Module):
    """t ``[B]`` (integer steps) → ``[B, dim]``: sin(t·ω_k) then cos(t·ω_k), ω_k = 10000^(−k/(dim/2 − 1))."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        omega = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        angles = t[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class MotionDenoiser(nn.Module):
    """The transformer stored in ``lmdm_v0.4_hubert.pth`` (``model_state_dict``): predicts the clean motion
    window x₀ from a noisy window, one condition frame, per-frame conditions and the diffusion step."""

    def __init__(self, config: LMDMConfig = LMDMConfig()):
        super().__init__()
        self.config = config
        d = config.latent_dim
        self.rotary = RotaryEmbedding(d)
        self.time_mlp = nn.Sequential(SinusoidalTimeEmbedding(d), nn.Linear(d, 4 * d), nn.Mish())
        self.to_time_cond = nn.Sequential(nn.Linear(4 * d, d))
        self.to_time_tokens = nn.Sequential(nn.Linear(4 * d, 2 * d))
        self.null_cond_embed = nn.Parameter(torch.randn(1, config.seq_len, d))
        self.null_cond_hidden = nn.Parameter(torch.randn(1, d))
        self.norm_cond = nn.LayerNorm(d)
        self.input_projection = nn.Linear(2 * config.motion_dim, d)
        self.cond_encoder = nn.Sequential(
            *(CondEncoderLayer(d, config.ff_dim, config.num_heads, self.rotary) for _ in range(config.num_cond_layers))
        )
        self.cond_projection = nn.Linear(config.cond_dim, d)
        self.non_attn_cond_projection = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.seqTransDecoder = DecoderStack(
            [FiLMDecoderLayer(d, config.ff_dim, config.num_heads, self.rotary) for _ in range(config.num_layers)]
        )
        self.final_layer = nn.Linear(d, config.motion_dim)

    def condition(self, cond: torch.Tensor, time_cond: torch.Tensor, conditioned: bool = True,
                  batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's memory ``[B, T+2, D]`` and FiLM vector ``[B, D]`` from cond ``[B, T, C]`` and time_cond
        ``[B]`` int64. ``conditioned=False`` is the guidance's unconditional branch: the learned null embeddings
        (``batch`` copies) replace the encoded conditions, and ``cond`` is unused."""
        if conditioned:
            cond_tokens = self.cond_encoder(self.cond_projection(cond))
            cond_hidden = self.non_attn_cond_projection(cond_tokens.mean(dim=-2))
        else:
            cond_tokens = self.null_cond_embed.expand(batch, -1, -1)
            cond_hidden = self.null_cond_hidden.expand(batch, -1)

        t_hidden = self.time_mlp(time_cond)
        t_vec = self.to_time_cond(t_hidden) + cond_hidden
        t_tokens = self.to_time_tokens(t_hidden).view(batch, 2, -1)
        return self.norm_cond(torch.cat([cond_tokens, t_tokens], dim=-2)), t_vec

    def denoise(self, x: torch.Tensor, cond_frame: torch.Tensor, memory: torch.Tensor, t_vec: torch.Tensor
                ) -> torch.Tensor:
        """x ``[B, T, 265]``, cond_frame ``[B, 265]`` and ``condition``'s memory and vector → x₀ ``[B, T, 265]``."""
        b, seq_len = x.shape[:2]
        h = self.input_projection(torch.cat([x, cond_frame[:, None].expand(b, seq_len, -1)], dim=-1))
        return self.final_layer(self.seqTransDecoder(h, memory, t_vec))

    def forward(
        self,
        x: torch.Tensor,
        cond_frame: torch.Tensor,
        cond: torch.Tensor,
        time_cond: torch.Tensor,
        conditioned: bool = True,
    ) -> torch.Tensor:
        """x ``[B, T, 265]``, cond_frame ``[B, 265]``, cond ``[B, T, C]``, time_cond ``[B]`` int64 → x₀ ``[B, T, 265]``.

        ``conditioned=False`` is the guidance's unconditional branch: the learned null embeddings replace the
        encoded conditions (``cond`` is then unused); ``cond_frame`` is kept.
        """
        memory, t_vec = self.condition(cond, time_cond, conditioned, batch=x.shape[0])
        return self.denoise(x, cond_frame, memory, t_vec)


class LMDM(nn.Module):
    """One classifier-free-guided denoising step of the LMDM.

    forward(x ``[B, T, 265]``, cond_frame ``[B, 265]``, cond ``[B, T, C]``, time_cond ``[B]`` int64) →
    (pred_noise ``[B, T, 265]``, x_start ``[B, T, 265]``), with x_start = u + (c − u)·w for the unconditional
    and conditional predictions u, c and guidance weight w (2 in the release).

    ``batched_guidance``: compute u and c in one decoder call of batch 2B instead of two calls, the same numbers
    up to float rounding (not bit-identical to the reference; off by default, see bench/RESULTS.md).
    """

    def __init__(self, model: MotionDenoiser, guidance_weight: float = 2.0, batched_guidance: bool = False):
        super().__init__()
        self.model = model
        self.guidance_weight = guidance_weight
        self.batched_guidance = batched_guidance
        acp = alphas_cumprod()
        self.register_buffer("alphas_cumprod", acp, persistent=False)
        self.register_buffer("sqrt_recip1m_alphas_cumprod", torch.sqrt(1.0 / (1.0 - acp)), persistent=False)
        self.register_buffer("sqrt_recipm1_alphas_cumprod", torch.sqrt(1.0 / acp - 1), persistent=False)

    @property
    def config(self) -> LMDMConfig:
        return self.model.config

    def guided_x_start(
        self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor, time_cond: torch.Tensor
    ) -> torch.Tensor:
        if self.batched_guidance:
            unconditional, conditional = self.both_branches(x, cond_frame, cond, time_cond).chunk(2)
        else:
            unconditional = self.model(x, cond_frame, cond, time_cond, conditioned=False)
            conditional = self.model(x, cond_frame, cond, time_cond, conditioned=True)
        return unconditional + (conditional - unconditional) * self.guidance_weight

    def both_branches(
        self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor, time_cond: torch.Tensor
    ) -> torch.Tensor:
        """The unconditional then the conditional prediction ``[2B, T, 265]``, from one decoder call."""
        b = x.shape[0]
        branches = [self.model.condition(cond, time_cond, conditioned, batch=b) for conditioned in (False, True)]
        memory, t_vec = (torch.cat(parts) for parts in zip(*branches))
        return self.model.denoise(x.repeat(2, 1, 1), cond_frame.repeat(2, 1), memory, t_vec)

    def noise_from_x_start(self, x: torch.Tensor, time_cond: torch.Tensor, x_start: torch.Tensor) -> torch.Tensor:
        """ε̂ = x_t/√(1 − ᾱ_t) − x₀/√(1/ᾱ_t − 1)."""
        a = self.sqrt_recip1m_alphas_cumprod[time_cond].view(-1, 1, 1)
        b = self.sqrt_recipm1_alphas_cumprod[time_cond].view(-1, 1, 1)
        return a * x - x_start / b

    def forward(
        self, x: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor, time_cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_start = self.guided_x_start(x, cond_frame, cond, time_cond)
        return self.noise_from_x_start(x, time_cond, x_start), x_start
