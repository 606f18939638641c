r"""Video LDM's temporal mixing layers (Blattmann et al., 2023, arXiv:2304.08818, Sec. 3.1), merged with
the frozen spatial layers by a learned factor.

The image LDM's spatial layer l^i_theta runs on every frame; a new temporal layer l^i_phi mixes the
frames of its output; the two are blended:

    z' = alpha^i_phi z + (1 - alpha^i_phi) z_t,    z = l^i_theta(x) spatial,  z_t = l^i_phi(z) temporal,
    alpha^i_phi = sigmoid(m^i)  (one learned scalar per layer)

so each layer learns how much of the video model it lets in. Two kinds of temporal layer: a residual
block of (3, 1, 1) convolutions after each spatial ResNet block (``SpatioTemporalResBlock``), and a
temporal transformer (attention over the frames at each pixel, with a sinusoidal embedding of the frame
index) after each spatial transformer block (``SpatioTemporalTransformer``). Stable Video Diffusion
keeps this layout (and fine-tunes all of it).

Names follow diffusers (``AlphaBlender``'s ``mix_factor``, ``SpatioTemporalResBlock``,
``TransformerSpatioTemporalModel``), so an SVD-layout checkpoint loads key for key; a test checks our
outputs against diffusers' modules. ``image_only`` (diffusers' ``image_only_indicator``, (B, T), True
for a frame that is an image on its own) forces alpha = 1 there: the spatial layer alone.

``reset_temporal_to_identity`` zeroes the last projection of every temporal branch (and the frame
embedding), so z_t = z and z' = z for any alpha: an inflated model then starts as the image model
frame by frame, as Make-A-Video's does (diffusers and SVD initialise these layers at random).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from minivdm.nn.attention import Attention, FeedForward
from minivdm.nn.embeddings import TimestepEmbedding, timestep_embedding
from minivdm.nn.frames import FrameAware
from minivdm.nn.resnet import ResnetBlock2D
from minivdm.nn.transformer_2d import Transformer2DModel


class AlphaMerge(nn.Module):
    """z' = alpha z + (1 - alpha) z_t with alpha = sigmoid(mix_factor), learned; alpha = 1 on image-only frames."""

    def __init__(self, mix_factor: float = 0.5):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([float(mix_factor)]))

    def reset(self, mix_factor: float) -> None:
        with torch.no_grad():
            self.mix_factor.fill_(mix_factor)

    def alpha(self, image_only: torch.Tensor | None = None) -> torch.Tensor:
        """sigmoid(mix_factor); with ``image_only`` (B, T): per frame, 1 where True."""
        alpha = torch.sigmoid(self.mix_factor)
        if image_only is None:
            return alpha
        return torch.where(image_only.bool(), torch.ones_like(alpha), alpha)

    def forward(self, z_spatial: torch.Tensor, z_temporal: torch.Tensor,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        """z_spatial, z_temporal: (B, C, T, H, W) or ((B T), N, C); image_only: (B, T) booleans or None."""
        if z_spatial.shape != z_temporal.shape:
            raise ValueError(f"the spatial and temporal outputs must have one shape, got {tuple(z_spatial.shape)} "
                             f"and {tuple(z_temporal.shape)}")
        if image_only is not None and z_spatial.ndim not in (3, 5):
            raise ValueError(f"with image_only, z must be (B, C, T, H, W) or ((B T), N, C), got {tuple(z_spatial.shape)}")
        alpha = self.alpha(image_only)
        if image_only is not None:  # one alpha per frame, placed on the frame axis of z
            alpha = alpha[:, None, :, None, None] if z_spatial.ndim == 5 else rearrange(alpha, "b t -> (b t) 1 1")
        alpha = alpha.to(z_spatial.dtype)
        return alpha * z_spatial + (1 - alpha) * z_temporal


def _fresh(*branches: nn.Module) -> None:
    """A fresh init of every layer in ``branches`` (torch's defaults, from its global generator)."""
    for branch in branches:
        for module in branch.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


def _zero(*linears: nn.Module) -> None:
    for linear in linears:
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


def _check_image_only(image_only: torch.Tensor | None, batch: int, num_frames: int) -> None:
    if image_only is not None and tuple(image_only.shape) != (batch, num_frames):
        raise ValueError(f"image_only must be (B, T) = ({batch}, {num_frames}), got {tuple(image_only.shape)}")


class TemporalResnetBlock(nn.Module):
    """The ResNet block with (3, 1, 1) convolutions: each pixel sees the previous, current and next frame.

        h = conv1(SiLU(GroupNorm(x))) + Linear(SiLU(temb))
        out = shortcut(x) + conv2(Dropout(SiLU(GroupNorm(h))))      x: (B, C, T, H, W), temb: (B, T, D)
    """

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int | None, groups: int = 32,
                 eps: float = 1e-6):
        super().__init__()
        kernel, padding = (3, 1, 1), (1, 0, 0)
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel, padding=padding)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels) if temb_channels is not None else None
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel, padding=padding)
        self.conv_shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def reset_to_identity(self) -> None:
        """Fresh weights with conv2 zero: the block returns its input (in_channels == out_channels)."""
        if self.conv_shortcut is not None:
            raise ValueError("a temporal ResNet block that changes the channel count cannot start as the identity")
        _fresh(self)
        _zero(self.conv2)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + rearrange(self.time_emb_proj(F.silu(temb)), "b t c -> b c t 1 1")
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class SpatioTemporalResBlock(FrameAware, nn.Module):
    """z = spatial ResNet on each frame; z_t = temporal ResNet over the frames of z; out = alpha z + (1 - alpha) z_t."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, groups: int = 32, eps: float = 1e-6,
                 temporal_eps: float | None = None, merge_factor: float = 0.5):
        super().__init__()
        self.spatial_res_block = ResnetBlock2D(in_channels, out_channels, temb_channels, groups, eps=eps)
        self.temporal_res_block = TemporalResnetBlock(out_channels, out_channels, temb_channels, groups,
                                                      eps=temporal_eps if temporal_eps is not None else eps)
        self.time_mixer = AlphaMerge(merge_factor)

    def reset_temporal_to_identity(self, merge_factor: float = 0.5) -> None:
        """The temporal branch as a fresh inflation has it (the identity), alpha = sigmoid(merge_factor)."""
        self.temporal_res_block.reset_to_identity()
        self.time_mixer.reset(merge_factor)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, num_frames: int | None = None,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        """x: ((B T), C, H, W), temb: ((B T), D) -> ((B T), C', H, W)."""
        frames = self.frames(x.shape[0], num_frames)
        _check_image_only(image_only, x.shape[0] // frames, frames)
        z = rearrange(self.spatial_res_block(x, temb), "(b t) c h w -> b c t h w", t=frames)
        z_t = self.temporal_res_block(z, rearrange(temb, "(b t) d -> b t d", t=frames))
        return rearrange(self.time_mixer(z, z_t, image_only), "b c t h w -> (b t) c h w")


class TemporalTransformerBlock(nn.Module):
    """The transformer block of the temporal branch; tokens are the T frames of one pixel:

        h = x + FF_in(LN(x));  h = h + SelfAttn(LN(h));  h = h + CrossAttn(LN(h), c);  h = h + FF(LN(h))

    c is the first frame's context (text, or SVD's image embedding), the same for every pixel."""

    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int | None):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = FeedForward(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim) if cross_attention_dim is not None else None
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim) if cross_attention_dim is not None else None
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def reset_to_identity(self) -> None:
        """Fresh weights with every residual branch's last projection zero: the block returns its input."""
        _fresh(self)
        _zero(self.ff_in.net[2], self.attn1.to_out[0], self.ff.net[2])
        if self.attn2 is not None:
            _zero(self.attn2.to_out[0])

    def forward(self, x: torch.Tensor, num_frames: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: ((B T), N, dim); context: ((B N), L, D) -> ((B T), N, dim)."""
        pixels = x.shape[1]
        h = rearrange(x, "(b t) n d -> (b n) t d", t=num_frames)
        h = self.ff_in(self.norm_in(h)) + h
        h = self.attn1(self.norm1(h)) + h
        if self.attn2 is not None:
            h = self.attn2(self.norm2(h), context) + h
        h = self.ff(self.norm3(h)) + h
        return rearrange(h, "(b n) t d -> (b t) n d", n=pixels)


class SpatioTemporalTransformer(FrameAware, Transformer2DModel):
    """The image model's spatial transformer with a temporal transformer block after each of its blocks:

        h = spatial block(h, text)
        h_t = temporal block(h + PE(frame index), first frame's context)
        h = alpha h + (1 - alpha) h_t           (one alpha for the whole transformer, as in diffusers)
    """

    def __init__(self, heads: int, dim_head: int, in_channels: int, num_layers: int = 1,
                 cross_attention_dim: int | None = None, norm_num_groups: int = 32,
                 use_linear_projection: bool = True, upcast_attention: bool = False):
        super().__init__(heads, dim_head, in_channels, num_layers, cross_attention_dim, norm_num_groups,
                         use_linear_projection, upcast_attention)
        inner_dim = heads * dim_head
        if inner_dim != in_channels:
            raise ValueError(f"the frame embedding is added at width in_channels={in_channels}: heads * dim_head must "
                             f"equal it, got {heads} * {dim_head}")
        self.temporal_transformer_blocks = nn.ModuleList(
            [TemporalTransformerBlock(inner_dim, heads, dim_head, cross_attention_dim) for _ in range(num_layers)])
        self.time_pos_embed = TimestepEmbedding(in_channels, 4 * in_channels, out_dim=in_channels)
        self.time_mixer = AlphaMerge(0.5)

    def reset_temporal_to_identity(self, merge_factor: float = 0.5) -> None:
        """The temporal branch as a fresh inflation has it (the identity), alpha = sigmoid(merge_factor)."""
        for block in self.temporal_transformer_blocks:
            block.reset_to_identity()
        _fresh(self.time_pos_embed)
        _zero(self.time_pos_embed.linear_2)
        self.time_mixer.reset(merge_factor)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, num_frames: int | None = None,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        """x: ((B T), C, H, W), context ((B T), L, D) -> ((B T), C, H, W)."""
        frames = self.frames(x.shape[0], num_frames)
        batch, pixels = x.shape[0] // frames, x.shape[-2] * x.shape[-1]
        _check_image_only(image_only, batch, frames)
        first_frame_context = None
        if context is not None:
            first = rearrange(context, "(b t) l d -> b t l d", t=frames)[:, 0]
            first_frame_context = repeat(first, "b l d -> (b n) l d", n=pixels)
        index = repeat(torch.arange(frames, device=x.device), "t -> (b t)", b=batch)
        position = self.time_pos_embed(timestep_embedding(index, x.shape[1]).to(x.dtype))[:, None, :]
        h = self.tokens_in(x)
        for block, temporal_block in zip(self.transformer_blocks, self.temporal_transformer_blocks):
            h = block(h, context)
            h_t = temporal_block(h + position, frames, first_frame_context)
            h = self.time_mixer(h, h_t, image_only)
        return self.tokens_out(h, x)
