r"""The spatial transformer of Stable Diffusion (Rombach et al., 2022, arXiv:2112.10752, Sec. 3.3).

A feature map (B, C, H, W) is flattened into H*W tokens; each transformer block applies
self-attention among the pixels, cross-attention to the text tokens, and a GEGLU feed-forward,
each pre-normalised and residual:

    h = h + SelfAttn(LN(h));   h = h + CrossAttn(LN(h), text);   h = h + FF(LN(h))

and the whole block is residual around GroupNorm -> proj_in ... proj_out. SD 1.x projects with
1x1 convolutions, SD 2.x with linear layers (``use_linear_projection``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from minivdm.nn.attention import Attention, FeedForward


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int | None,
                 upcast_attention: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, upcast=upcast_attention)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim=cross_attention_dim, upcast=upcast_attention)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # sublayer output first: a sum takes the memory layout of its first operand, and x may be a
        # strided view of a (B, C, H, W) map (see Transformer2DModel); the fresh sublayer output is
        # contiguous, so x becomes contiguous after the first residual and no later LayerNorm copies it
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    def __init__(self, heads: int, dim_head: int, in_channels: int, num_layers: int = 1,
                 cross_attention_dim: int | None = None, norm_num_groups: int = 32,
                 use_linear_projection: bool = False, upcast_attention: bool = False):
        super().__init__()
        inner_dim = heads * dim_head
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner_dim)
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner_dim, 1)
            self.proj_out = nn.Conv2d(inner_dim, in_channels, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, heads, dim_head, cross_attention_dim, upcast_attention) for _ in range(num_layers)]
        )

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.tokens_in(x)
        for block in self.transformer_blocks:
            h = block(h, context)
        return self.tokens_out(h, x)

    def tokens_in(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, H*W, inner_dim): GroupNorm, then proj_in."""
        h = self.norm(x)
        if self.use_linear_projection:
            return self.proj_in(rearrange(h, "b c h w -> b (h w) c"))
        return rearrange(self.proj_in(h), "b c h w -> b (h w) c")

    def tokens_out(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """(B, H*W, inner_dim) -> proj_out, back to (B, C, H, W), plus the block's input ``residual``."""
        height, width = residual.shape[-2:]
        # contiguous: the next GroupNorm / conv then sums in the same order as diffusers (bit-identical outputs)
        if self.use_linear_projection:
            h = rearrange(self.proj_out(h), "b (h w) c -> b c h w", h=height, w=width).contiguous()
        else:
            h = self.proj_out(rearrange(h, "b (h w) c -> b c h w", h=height, w=width).contiguous())
        return h + residual
