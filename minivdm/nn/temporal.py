r"""Temporal layers that turn an image U-Net into a video U-Net by factorising space and time.

Video Diffusion Models (Ho et al., 2022, arXiv:2204.03458) keep every spatial layer of an image
U-Net, applied to each frame on its own, and interleave layers that only mix information along
time. ModelScope text-to-video (Wang et al., 2023, arXiv:2308.06571, Sec. 3) follows that recipe
on Stable Diffusion's U-Net with two temporal layers after each spatial one:

    h <- h + TempConv(h)    a stack of 4 x [GroupNorm, SiLU, Conv3d with kernel (3, 1, 1)]
    h <- h + TempAttn(h)    self-attention over the T frames of each pixel (space in the batch)

Both are residual and start as the identity (the last conv / last projection is zero at init),
so a model built from these layers first behaves as the image model applied frame by frame.

Spatial layers see features as ((B T), C, H, W); each temporal layer takes ``num_frames`` to
unfold T, works on it, and folds it back. Parameter names (conv1.0, conv4.3, proj_in,
transformer_blocks.0.attn1.to_q, ...) follow diffusers' ``TemporalConvLayer`` and
``TransformerTemporalModel``, so the published ModelScope checkpoint loads key for key.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from minivdm.nn.transformer_2d import BasicTransformerBlock


def _check_frames(x: torch.Tensor, num_frames: int, layer: str) -> None:
    if x.ndim != 4 or num_frames <= 0 or x.shape[0] % num_frames:
        raise ValueError(f"{layer} takes features ((B T), C, H, W) with B*T divisible by num_frames={num_frames}, "
                         f"got shape {tuple(x.shape)}")


class TemporalConvLayer(nn.Module):
    r"""Residual 1D convolutions along time at every pixel (ModelScope's temporal convolution).

        h = conv4(conv3(conv2(conv1(x)))),  conv_i = Conv3d_(3,1,1)(SiLU(GroupNorm(.))),   out = x + h

    The (3, 1, 1) kernel sees the previous, current and next frame; zero padding at both ends of
    the clip. ``conv4``'s weights start at zero, so the layer starts as the identity.
    """

    def __init__(self, channels: int, norm_num_groups: int = 32, dropout: float = 0.1):
        super().__init__()

        def temporal_conv(with_dropout: bool) -> nn.Sequential:
            # the index of each layer inside the Sequential is part of the published key (conv2.3.weight)
            layers = [nn.GroupNorm(norm_num_groups, channels), nn.SiLU()]
            layers += [nn.Dropout(dropout)] if with_dropout else []
            return nn.Sequential(*layers, nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0)))

        self.conv1 = temporal_conv(with_dropout=False)
        self.conv2 = temporal_conv(with_dropout=True)
        self.conv3 = temporal_conv(with_dropout=True)
        self.conv4 = temporal_conv(with_dropout=True)
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: ((B T), C, H, W) -> ((B T), C, H, W)."""
        _check_frames(x, num_frames, "TemporalConvLayer")
        video = rearrange(x, "(b t) c h w -> b c t h w", t=num_frames)
        h = self.conv4(self.conv3(self.conv2(self.conv1(video))))
        return rearrange(video + h, "b c t h w -> (b t) c h w")


class TransformerTemporalModel(nn.Module):
    r"""Self-attention across frames, one sequence of T tokens per pixel (ModelScope's temporal attention).

        h = proj_in(GroupNorm(x))                     tokens: (B H W, T, inner_dim)
        h = h + SelfAttn(LN(h));  h = h + SelfAttn(LN(h));  h = h + FF(LN(h))
        out = x + proj_out(h)

    The second attention of each block is self-attention too (diffusers' ``double_self_attention``):
    text enters only through the spatial transformers. There is no positional embedding over frames,
    so attention alone is equivariant to reordering the frames; the temporal convolutions are what
    know which frame comes first. GroupNorm takes its statistics over all frames of a clip.
    ``proj_out`` starts at zero so the layer starts as the identity (ModelScope's ``zero_module``;
    diffusers leaves it random, which only matters when training from scratch).
    """

    def __init__(self, heads: int, dim_head: int, in_channels: int, num_layers: int = 1, norm_num_groups: int = 32):
        super().__init__()
        inner_dim = heads * dim_head
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6)
        self.proj_in = nn.Linear(in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, heads, dim_head, cross_attention_dim=None) for _ in range(num_layers)]
        )
        self.proj_out = nn.Linear(inner_dim, in_channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: ((B T), C, H, W) -> ((B T), C, H, W)."""
        _check_frames(x, num_frames, "TransformerTemporalModel")
        height, width = x.shape[-2:]
        h = self.norm(rearrange(x, "(b t) c h w -> b c t h w", t=num_frames))
        h = self.proj_in(rearrange(h, "b c t h w -> (b h w) t c"))
        for block in self.transformer_blocks:
            h = block(h)  # no context: both attentions attend among the frames
        h = rearrange(self.proj_out(h), "(b h w) t c -> (b t) c h w", h=height, w=width)
        return x + h
