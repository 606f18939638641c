r"""Sinusoidal timestep embeddings (Vaswani et al., 2017; Ho et al., DDPM, 2020).

    emb(t)_i = sin(t * w_i),  emb(t)_{i + d/2} = cos(t * w_i),   w_i = max_period^(-i / (d/2 - shift))

With ``flip_sin_to_cos`` the cos half comes first, as Stable Diffusion's checkpoints expect.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minivdm.validation import check_tensor


def timestep_embedding(timesteps: torch.Tensor, dim: int, *, max_period: float = 10000.0,
                       flip_sin_to_cos: bool = True, downscale_freq_shift: float = 0.0) -> torch.Tensor:
    """(B,) timesteps (integer or float) -> (B, dim) sinusoidal features."""
    check_tensor(timesteps, "timesteps", ndim=1, layout="(B,)")
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(exponent / (half - downscale_freq_shift))
    angles = timesteps.float()[:, None] * frequencies[None, :]
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class TimestepEmbedding(nn.Module):
    """The MLP that turns sinusoidal features into the vector every ResNet block receives."""

    def __init__(self, in_channels: int, embed_dim: int, out_dim: int | None = None):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(embed_dim, out_dim or embed_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))
