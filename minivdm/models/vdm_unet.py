r"""The factorised space-time 3D U-Net of Video Diffusion Models, at toy-world size.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458, Sec. 3)
extend the 2D diffusion U-Net to videos (B, C, T, H, W) by factorising space and time: every layer
works either on each frame or along time at each pixel, never on both at once.

    space:  each 3x3 conv becomes a space-only 1x3x3 conv; spatial attention attends over the H*W
            pixels of one frame (frames in the batch), here followed by cross-attention to text
    time:   after each spatial attention block, temporal attention over the T frames of each pixel
            (space in the batch) with learned relative position biases (minivdm.nn.relative_position)

A 1x3x3 Conv3d is exactly a 3x3 Conv2d applied to every frame, so we fold the frames into the
batch, "b c t h w -> (b t) c h w", and reuse the image blocks (ResnetBlock2D, Downsample2D,
Upsample2D, Transformer2DModel) unchanged; only TemporalAttention unfolds T.

    f_theta(z_t, lambda_t, c):  z_t (B, C, T, H, W), log-SNR lambda_t (B,), text c (B, L, D)
    encoder:  per level, layers_per_block x [ResBlock (+ SpatialTransformer -> TemporalAttention)],
              a skip after each layer, Downsample between levels
    middle:   ResBlock -> SpatialTransformer -> TemporalAttention -> ResBlock
    decoder:  per level, layers_per_block x [concat skip, ResBlock (+ attention)], Upsample between levels

Noise-level conditioning is on the log-SNR lambda_t = log(alpha_t^2 / sigma_t^2), as in VDM, not on a
schedule's t: the model then works with any schedule. lambda is unbounded (+inf for clean data), so
the sinusoidal embedding receives the angle phi = arctan(exp(-lambda / 2)) = arctan(sigma / alpha),
bounded in [0, pi/2], rescaled to [0, 1000] (the range the sinusoids are built for). For
CosineSchedule phi is linear in t, so this is the usual time embedding for that schedule.

Joint video-image training (VDM Sec. 3): the last ``num_images`` frames along T are independent
images appended to each video. Temporal attention masks them so each image attends only to itself;
every other layer is per frame (GroupNorm and LayerNorm included), so the images are isolated and
the video frames never see them. Text: c of shape (B, L, D) is shared by all frames of an item; pass
(B, T, L, D) to give each frame, in particular each appended image, its own caption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from minivdm.nn import Downsample2D, ResnetBlock2D, TimestepEmbedding, Upsample2D, timestep_embedding
from minivdm.nn.relative_position import TemporalAttention, joint_video_image_mask
from minivdm.nn.transformer_2d import Transformer2DModel
from minivdm.validation import check_tensor, check_video


def scaled_log_snr(log_snr: torch.Tensor) -> torch.Tensor:
    """lambda (B,) -> 1000 * phi / (pi/2) with phi = arctan(exp(-lambda/2)): 0 for clean data, 1000 for pure noise."""
    # exp overflows to inf for very negative lambda (pure noise): atan(inf) = pi/2, still exact
    phi = torch.atan(torch.exp(-0.5 * log_snr.float()))
    return phi * (1000.0 / (math.pi / 2))


class SpaceTimeAttention(nn.Module):
    """Spatial transformer on each frame (self-attention over H*W, cross-attention to text), then temporal attention."""

    def __init__(self, channels: int, heads: int, cross_attention_dim: int, groups: int, max_distance: int):
        super().__init__()
        dim_head = channels // heads
        self.spatial = Transformer2DModel(heads, dim_head, channels, cross_attention_dim=cross_attention_dim,
                                          norm_num_groups=groups, use_linear_projection=True)
        self.temporal = TemporalAttention(channels, heads, dim_head, max_distance)

    def forward(self, h: torch.Tensor, context: torch.Tensor, num_frames: int, num_images: int) -> torch.Tensor:
        """h ((B T), C, H, W), context ((B T), L, D) -> ((B T), C, H, W)."""
        h = self.spatial(h, context)
        return self.temporal(h, num_frames, num_images=num_images)


class VDMLayer(nn.Module):
    """One U-Net layer: a per-frame ResBlock with the log-SNR embedding, then (optionally) space-time attention."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, config: "VDMUNetConfig",
                 with_attention: bool):
        super().__init__()
        self.resnet = ResnetBlock2D(in_channels, out_channels, temb_channels, config.groups)
        self.attention = (SpaceTimeAttention(out_channels, config.heads, config.cross_attention_dim, config.groups,
                                             config.max_relative_distance) if with_attention else None)

    def forward(self, h, temb, context, num_frames: int, num_images: int) -> torch.Tensor:
        h = self.resnet(h, temb)
        if self.attention is not None:
            h = self.attention(h, context, num_frames, num_images)
        return h


@dataclass(frozen=True)
class VDMUNetConfig:
    """The defaults are the toy-world size (``minivdm.configs.vdm.TINY_VDM``)."""

    name: str = "tiny-vdm"
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 96)  # one entry per resolution level: 32x32, 16x16, 8x8
    attention_levels: tuple[bool, ...] = (False, True, True)  # spatial attention over 1024 pixels is slow on a CPU
    layers_per_block: int = 1
    heads: int = 4  # dim_head = channels of the level // heads
    groups: int = 8
    cross_attention_dim: int = 64  # hidden size of the toy CLIP text encoder (minivdm.text)
    max_relative_distance: int = 15  # every distance of a 16-frame clip has its own bias
    prediction_type: str = "v"
    extra: dict = field(default_factory=dict)  # free-form notes saved with a checkpoint

    def __post_init__(self):
        if len(self.attention_levels) != len(self.channels):
            raise ValueError(f"attention_levels must have one entry per level ({len(self.channels)}), "
                             f"got {self.attention_levels}")
        for width in self.channels:
            if width % self.heads or width % self.groups:
                raise ValueError(f"every entry of channels must be divisible by heads={self.heads} and "
                                 f"groups={self.groups}, got {self.channels}")


class VDMUNet(nn.Module):
    def __init__(self, config: VDMUNetConfig = VDMUNetConfig()):
        super().__init__()
        self.config = config
        channels = config.channels
        temb_channels = 4 * channels[0]
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            layers = []
            for _ in range(config.layers_per_block):
                layers.append(VDMLayer(previous, width, temb_channels, config, config.attention_levels[level]))
                previous = width
            self.down_blocks.append(nn.ModuleList(layers))
            is_last = level == len(channels) - 1
            self.downsamplers.append(nn.Identity() if is_last else Downsample2D(width))

        self.mid_blocks = nn.ModuleList([
            VDMLayer(previous, previous, temb_channels, config, with_attention=True),
            VDMLayer(previous, previous, temb_channels, config, with_attention=False),
        ])

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            layers = []
            for _ in range(config.layers_per_block):
                layers.append(VDMLayer(previous + width, width, temb_channels, config, config.attention_levels[level]))
                previous = width
            self.up_blocks.append(nn.ModuleList(layers))
            self.upsamplers.append(nn.Identity() if level == 0 else Upsample2D(width))

        self.norm_out = nn.GroupNorm(config.groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], config.in_channels, 3, padding=1)
        # zero-init the output so the untrained model predicts 0, a neutral start for every parameterization
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _check_inputs(self, z_t, log_snr, context, num_images) -> None:
        check_video(z_t, "z_t")
        batch, in_channels, num_frames, height, width = z_t.shape
        if in_channels != self.config.in_channels:
            raise ValueError(f"z_t must be (B, C, T, H, W) with C = {self.config.in_channels}, "
                             f"got shape {tuple(z_t.shape)}")
        levels = len(self.config.channels) - 1
        if height % 2**levels or width % 2**levels:
            raise ValueError(f"z_t must be (B, C, T, H, W) with H and W divisible by 2**{levels} = {2**levels}, "
                             f"got shape {tuple(z_t.shape)}")
        check_tensor(log_snr, "log_snr", ndim=1, layout="(B,)", floating=True)
        if log_snr.shape[0] != batch:
            raise ValueError(f"log_snr must be (B,) with one log-SNR per batch item ({batch}), got shape "
                             f"{tuple(log_snr.shape)}")
        if torch.isnan(log_snr).any():
            raise ValueError("log_snr must not contain NaN")
        layout = f"(B, L, D) or (B, T, L, D) with B = {batch}, T = {num_frames}, D = {self.config.cross_attention_dim}"
        check_tensor(context, "context", ndim=(3, 4), layout=layout, floating=True)
        expected_leading = (batch,) if context.ndim == 3 else (batch, num_frames)
        if context.shape[:-2] != expected_leading or context.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(f"context must be {layout}, got shape {tuple(context.shape)}")
        joint_video_image_mask(num_frames, num_images)  # raises for num_images outside [0, T)

    def forward(self, z_t: torch.Tensor, log_snr: torch.Tensor, context: torch.Tensor, *,
                num_images: int = 0) -> torch.Tensor:
        """z_t (B, C, T, H, W), log_snr (B,), context (B, L, D) or (B, T, L, D) -> prediction (B, C, T, H, W).

        The last ``num_images`` of the T frames are independent images (joint video-image training).
        """
        self._check_inputs(z_t, log_snr, context, num_images)
        num_frames = z_t.shape[2]
        # every spatial layer sees the frames as a batch of images
        h = rearrange(z_t, "b c t h w -> (b t) c h w")
        temb = self.time_embedding(timestep_embedding(scaled_log_snr(log_snr), self.config.channels[0]))
        temb = repeat(temb, "b e -> (b t) e", t=num_frames).to(h.dtype)
        if context.ndim == 3:
            context = repeat(context, "b l d -> (b t) l d", t=num_frames)
        else:
            context = rearrange(context, "b t l d -> (b t) l d")

        h = self.conv_in(h)
        skips = []
        for layers, down in zip(self.down_blocks, self.downsamplers):
            for layer in layers:
                h = layer(h, temb, context, num_frames, num_images)
                skips.append(h)
            h = down(h)
        for layer in self.mid_blocks:
            h = layer(h, temb, context, num_frames, num_images)
        for layers, up in zip(self.up_blocks, self.upsamplers):
            for layer in layers:
                h = layer(torch.cat([h, skips.pop()], dim=1), temb, context, num_frames, num_images)
            h = up(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return rearrange(out, "(b t) c h w -> b c t h w", t=num_frames)
