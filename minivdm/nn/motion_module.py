r"""AnimateDiff's motion module (Guo et al., 2023, arXiv:2307.04725, Sec. 4.2): a temporal transformer
that a frozen text-to-image U-Net gets after each of its layers, trained once on video and then plugged
into any personalised image model of the same base.

    h = proj_in(GroupNorm(x))                        tokens: (B H W, T, C) -- each pixel's T frames
    h = h + SelfAttn(LN(h) + PE);  h = h + SelfAttn(LN(h) + PE);  h = h + FF(LN(h))
    out = x + proj_out(h)

It is ModelScope's temporal transformer (``minivdm.nn.temporal.TransformerTemporalModel``, two
self-attentions per block) with one difference that matters: PE, a sinusoidal encoding of the frame index
added before each attention, so the module knows which frame comes first (attention alone is blind to
order). ``proj_out`` starts at zero, as in AnimateDiff's training code: a fresh module is the identity.

Names follow diffusers' ``AnimateDiffTransformer3D`` (the PE is the buffer ``pos_embed.pe`` of each block,
saved in the published checkpoints), so a ``MotionAdapter`` checkpoint loads key for key.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minivdm.nn.frames import FrameAware
from minivdm.nn.temporal import TransformerTemporalModel
from minivdm.nn.transformer_2d import BasicTransformerBlock


class SinusoidalFramePositions(nn.Module):
    """PE(i)_{2k} = sin(i w_k), PE(i)_{2k+1} = cos(i w_k), w_k = 10000^(-2k / d): added to frame i's token."""

    def __init__(self, dim: int, max_frames: int = 32):
        super().__init__()
        if dim % 2:
            raise ValueError(f"the frame encoding needs an even width, got {dim}")
        self.register_buffer("pe", torch.zeros(1, max_frames, dim))  # persistent: the published checkpoints hold it
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fill ``pe`` (also after a model built on the meta device gets real, uninitialised memory)."""
        max_frames, dim = self.pe.shape[1:]
        position = torch.arange(max_frames, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_frames, dim)
        pe[0, :, 0::2] = torch.sin(position * frequency)
        pe[0, :, 1::2] = torch.cos(position * frequency)
        if self.pe.device.type != "meta":
            with torch.no_grad():
                self.pe.copy_(pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[1]
        if frames > self.pe.shape[1]:
            raise ValueError(f"this motion module encodes at most {self.pe.shape[1]} frames (motion_max_seq_length), "
                             f"got {frames}")
        return x + self.pe[:, :frames].to(x.dtype)


class MotionTransformerBlock(BasicTransformerBlock):
    """Two self-attentions over the frames and a feed-forward, the frame encoding added before each attention."""

    def __init__(self, dim: int, heads: int, dim_head: int, max_frames: int = 32):
        super().__init__(dim, heads, dim_head, cross_attention_dim=None)
        self.pos_embed = SinusoidalFramePositions(dim, max_frames)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn1(self.pos_embed(self.norm1(x))) + x
        x = self.attn2(self.pos_embed(self.norm2(x))) + x  # self-attention again (context is the frames)
        return self.ff(self.norm3(x)) + x


class MotionModule(FrameAware, TransformerTemporalModel):
    """``module(x)``: features ((B T), C, H, W) -> the same, mixed along time at each pixel."""

    def __init__(self, channels: int, heads: int = 8, num_layers: int = 1, norm_num_groups: int = 32,
                 max_frames: int = 32):
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by the motion module's heads ({heads})")
        super().__init__(heads, channels // heads, channels, num_layers, norm_num_groups)
        self.transformer_blocks = nn.ModuleList(
            [MotionTransformerBlock(channels, heads, channels // heads, max_frames) for _ in range(num_layers)])

    def reset_temporal_to_identity(self) -> None:
        """Fresh weights (torch's defaults), proj_out zero: the module returns its input."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        return super().forward(x, self.frames(x.shape[0], num_frames))
