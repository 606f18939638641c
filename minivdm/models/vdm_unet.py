r"""The factorised space-time 3D U-Net of Video Diffusion Models, at toy-world size.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458, Sec. 3)
extend the 2D diffusion U-Net to videos (B, C, T, H, W) by factorising space and time: every layer
works either on each frame or along time at each pixel, never on both at once.

    space:  each 3x3 conv becomes a space-only 1x3x3 conv; spatial attention attends over the H*W
            pixels of one frame (frames in the batch), here followed by cross-attention to text
    time:   after each spatial attention block, temporal attention over the T frames of each pixel
            (space in the batch) with learned relative positions, one table per term of
            A_ij = softmax_j(q_i . (k_j + a[d]) / sqrt(d_head) + b[d] + M_ij), out_i = sum_j A_ij (v_j + r[d]):
            key offsets a, a bias b on the logits and value offsets r, d = clip(j - i, -K, K)
            (``key_offsets_a``, ``bias_b``, ``value_offsets_r``; minivdm.nn.relative_position)

A 1x3x3 Conv3d is exactly a 3x3 Conv2d applied to every frame, so we fold the frames into the
batch, "b c t h w -> (b t) c h w", and reuse the image blocks (ResnetBlock2D, Downsample2D,
Upsample2D, Transformer2DModel) unchanged; only TemporalAttention unfolds T.

    f_theta(z_t, lambda_t, c):  z_t (B, C, T, H, W), log-SNR lambda_t (B,), text c (B, L, D)
    conditioning: lambda_t's embedding plus W_c mean_l(c_l), the text pooled over its tokens (those
              ``context_mask`` keeps), goes to every ResBlock; the text's tokens go to every spatial
              transformer's cross-attention; optionally (``temporal_text_modulation``) the pooled
              text also scales and shifts every temporal attention's tokens
    encoder:  per level, layers_per_block x [ResBlock (+ SpatialTransformer -> TemporalAttention)],
              a skip after each layer and after each Downsample
    middle:   ResBlock -> SpatialTransformer -> TemporalAttention -> ResBlock
    decoder:  per level, (layers_per_block + 1) x [concat skip, ResBlock (+ attention)], then Upsample

The spatial layers are laid out, and named, exactly as the text-conditional image U-Net
(``minivdm.models.unet_2d_condition``, diffusers' ``UNet2DConditionModel``); the temporal attention
blocks sit beside them as ``temporal_attentions``. Temporal attention starts as the identity, so a
freshly built VDMUNet is an image U-Net applied to every frame, and ``VDMUNet.from_image_unet``
starts it from a trained image model's weights ("inflation", as Make-A-Video and Video LDM do):
video training then only has to teach time. The toy VDM is trained that way from the toy
text-to-image model.

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

Why the pooled text as well as cross-attention (as Imagen, on which VDM builds, adds a pooled text
embedding to the timestep embedding): cross-attention reaches a pixel only where the query learns to
look at a word, and the image model's queries look at colour and shape words, which image captions
had. The motion words reach the U-Net through cross-attention only weakly (see ``minivdm.toy.vdm``);
the pooled vector puts them into every ResBlock of every frame, and from there into the temporal
attention's queries, which choose with the relative key offsets a which way in time to look.
W_c starts at zero, so an inflated image model is unchanged by it. Measured on the toy VDM, this
route is not yet enough: the model still ignores the motion word (``bench/toy_vdm_motion_word.py``).
``temporal_text_modulation`` gives the caption a direct, multiplicative say in temporal attention
(FiLM of its tokens: ``minivdm.nn.relative_position`` says why), also starting at zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from minivdm.models.unet_2d_condition import (ATTENTION_DOWN, ATTENTION_UP, PLAIN_DOWN, PLAIN_UP,
                                              UNet2DConditionConfig, UNet2DConditionModel, UNetBlock,
                                              UNetDownBlock, UNetMidBlock, UNetUpBlock)
from minivdm.nn import TimestepEmbedding, timestep_embedding
from minivdm.nn.relative_position import TemporalAttention, joint_video_image_mask
from minivdm.validation import check_matches_weights, check_tensor, check_video


def angle_timestep(log_snr: torch.Tensor) -> torch.Tensor:
    """The noise level as the timestep a U-Net embeds: the angle phi_t = arctan(sigma_t / alpha_t) = arctan(exp(-lambda/2))
    of log-SNR lambda (B,), rescaled from [0, pi/2] to [0, 1000] (0 for clean data, 1000 for pure noise).

    lambda is unbounded (+-20 under the toy cosine schedule), the angle is not; and [0, 1000] is the range of
    timesteps the image U-Net was trained on, so the inflated model reads the noise level as the image model did."""
    # exp overflows to inf for very negative lambda (pure noise): atan(inf) = pi/2, still exact
    phi = torch.atan(torch.exp(-0.5 * log_snr.float()))
    return phi * (1000.0 / (math.pi / 2))


@dataclass(frozen=True)
class VDMUNetConfig:
    """The defaults are the toy-world size (``minivdm.configs.vdm.TINY_VDM``)."""

    name: str = "tiny-vdm"
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)  # one entry per resolution level: 32x32, 16x16, 8x8
    attention_levels: tuple[bool, ...] = (False, True, True)  # spatial attention over 1024 pixels is slow on a CPU
    layers_per_block: int = 1
    heads: int = 4  # dim_head = channels of the level // heads
    groups: int = 8
    cross_attention_dim: int = 64  # hidden size of the toy CLIP text encoder (minivdm.text)
    max_relative_distance: int = 15  # K: every distance of a 16-frame clip has its own a[d], b[d], r[d]
    use_linear_projection: bool = False  # the spatial transformers' in/out projections: Linear, or 1x1 Conv
    # the pooled caption scales and shifts every temporal attention's tokens (minivdm.nn.relative_position)
    temporal_text_modulation: bool = False
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

    def image_unet_config(self) -> UNet2DConditionConfig:
        """The image U-Net whose layers (same names, same shapes) are this model's spatial layers."""
        return UNet2DConditionConfig(
            name=f"{self.name}-spatial", sample_size=32, in_channels=self.in_channels, out_channels=self.in_channels,
            block_out_channels=self.channels,
            down_block_types=tuple(ATTENTION_DOWN if a else PLAIN_DOWN for a in self.attention_levels),
            up_block_types=tuple(ATTENTION_UP if a else PLAIN_UP for a in reversed(self.attention_levels)),
            layers_per_block=self.layers_per_block, attention_head_dim=self.heads,
            cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.groups,
            use_linear_projection=self.use_linear_projection)


TEMPORAL_PARAMETERS = ".temporal_attentions."  # in the names of the temporal attention blocks' parameters (and their modulation)
POOLED_TEXT_PARAMETERS = "text_embedding."  # the pooled text's projection W_c
# the layers an image U-Net does not have: they start at zero, and train faster (train-vdm --temporal-lr-factor)
VIDEO_ONLY_PARAMETERS = (TEMPORAL_PARAMETERS, POOLED_TEXT_PARAMETERS)


def _temporal_attentions(block: UNetBlock, channels: int, config: VDMUNetConfig) -> nn.ModuleList:
    """One temporal attention per spatial transformer of ``block``."""
    condition_dim = config.cross_attention_dim if config.temporal_text_modulation else None
    return nn.ModuleList([TemporalAttention(channels, config.heads, channels // config.heads, config.max_relative_distance,
                                            condition_dim=condition_dim)
                          for _ in block.attentions])


class SpaceTimeAttend:
    """Space, then time: the image block's spatial transformer ``index`` (each frame, with text), then its
    temporal attention (each pixel, over the frames). Everything else in a block is the image U-Net's."""

    def attend(self, index: int, h, context, *, num_frames: int, num_images: int, pooled_text=None):
        h = self.attentions[index](h, context)
        return self.temporal_attentions[index](h, num_frames, num_images=num_images, condition=pooled_text)


class VDMDownBlock(SpaceTimeAttend, UNetDownBlock):
    def __init__(self, *args, config: VDMUNetConfig, **kwargs):
        super().__init__(*args, config=config.image_unet_config(), **kwargs)
        self.temporal_attentions = _temporal_attentions(self, self.resnets[0].conv1.out_channels, config)


class VDMMidBlock(SpaceTimeAttend, UNetMidBlock):
    def __init__(self, channels: int, temb_channels: int, heads: int, config: VDMUNetConfig):
        super().__init__(channels, temb_channels, heads, config.image_unet_config())
        self.temporal_attentions = _temporal_attentions(self, channels, config)


class VDMUpBlock(SpaceTimeAttend, UNetUpBlock):
    def __init__(self, *args, config: VDMUNetConfig, **kwargs):
        super().__init__(*args, config=config.image_unet_config(), **kwargs)
        self.temporal_attentions = _temporal_attentions(self, self.resnets[0].conv1.out_channels, config)


class VDMUNet(nn.Module):
    def __init__(self, config: VDMUNetConfig = VDMUNetConfig()):
        super().__init__()
        self.config = config
        channels, heads = config.channels, config.heads
        temb_channels = 4 * channels[0]
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.text_embedding = nn.Linear(config.cross_attention_dim, temb_channels)  # W_c, on the pooled text
        nn.init.zeros_(self.text_embedding.weight)
        nn.init.zeros_(self.text_embedding.bias)

        self.down_blocks = nn.ModuleList()
        for level, width in enumerate(channels):
            is_last = level == len(channels) - 1
            self.down_blocks.append(VDMDownBlock(channels[max(level - 1, 0)], width, temb_channels,
                                                 config.layers_per_block, config.attention_levels[level],
                                                 not is_last, heads, config=config))
        self.mid_block = VDMMidBlock(channels[-1], temb_channels, heads, config)

        self.up_blocks = nn.ModuleList()
        reversed_channels, reversed_attention = channels[::-1], config.attention_levels[::-1]
        for level, width in enumerate(reversed_channels):
            is_last = level == len(channels) - 1
            self.up_blocks.append(VDMUpBlock(
                reversed_channels[min(level + 1, len(channels) - 1)], width, reversed_channels[max(level - 1, 0)],
                temb_channels, config.layers_per_block + 1, reversed_attention[level], not is_last, heads,
                config=config))

        self.conv_norm_out = nn.GroupNorm(config.groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], config.in_channels, 3, padding=1)
        # zero-init the output so the untrained model predicts 0, a neutral start for every parameterization
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @classmethod
    def from_image_unet(cls, image_unet: UNet2DConditionModel, *, name: str = "vdm-from-image",
                        max_relative_distance: int = 15) -> "VDMUNet":
        """Inflate a trained image U-Net: its weights become the spatial layers, temporal attention starts
        as the identity. The result predicts, frame by frame, exactly what the image model does.

        Raises ValueError when the image U-Net's layout has no VDMUNet counterpart."""
        image = image_unet.config
        heads = set(h for h, t in zip(image.heads_per_block(), image.down_block_types) if t == ATTENTION_DOWN)
        attention_levels = tuple(t == ATTENTION_DOWN for t in image.down_block_types)
        if len(heads) > 1 or image.in_channels != image.out_channels:
            raise ValueError(f"from_image_unet needs one head count on every attention level and in_channels == "
                             f"out_channels, got attention_head_dim={image.attention_head_dim}, "
                             f"in/out channels {image.in_channels}/{image.out_channels}")
        config = VDMUNetConfig(
            name=name, in_channels=image.in_channels, channels=tuple(image.block_out_channels),
            attention_levels=attention_levels, layers_per_block=image.layers_per_block,
            heads=heads.pop() if heads else 1, groups=image.norm_num_groups,
            cross_attention_dim=image.cross_attention_dim, max_relative_distance=max_relative_distance,
            use_linear_projection=image.use_linear_projection)
        if config.image_unet_config().up_block_types != tuple(image.up_block_types) or image.norm_eps != 1e-5:
            raise ValueError(f"from_image_unet needs up blocks mirroring the down blocks and norm_eps 1e-5, got {image}")
        model = cls(config)
        missing, unexpected = model.load_state_dict(image_unet.state_dict(), strict=False)
        not_video_only = [key for key in missing if not any(part in key for part in VIDEO_ONLY_PARAMETERS)]
        if not_video_only or unexpected:
            raise ValueError(f"image U-Net weights do not fit the spatial layers: missing {not_video_only[:5]}, "
                             f"unexpected {unexpected[:5]}")
        return model

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
        check_matches_weights(z_t, "z_t", self.conv_in.weight)
        layout = f"(B, L, D) or (B, T, L, D) with B = {batch}, T = {num_frames}, D = {self.config.cross_attention_dim}"
        check_tensor(context, "context", ndim=(3, 4), layout=layout, floating=True)
        expected_leading = (batch,) if context.ndim == 3 else (batch, num_frames)
        if context.shape[:-2] != expected_leading or context.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(f"context must be {layout}, got shape {tuple(context.shape)}")
        check_matches_weights(context, "context", self.conv_in.weight)
        joint_video_image_mask(num_frames, num_images)  # raises for num_images outside [0, T)

    def forward(self, z_t: torch.Tensor, log_snr: torch.Tensor, context: torch.Tensor, *,
                num_images: int = 0, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """z_t (B, C, T, H, W), log_snr (B,), context (B, L, D) or (B, T, L, D) -> prediction (B, C, T, H, W).

        The last ``num_images`` of the T frames are independent images (joint video-image training).
        ``context_mask`` (bool, context's shape without D) marks the caption's own tokens, which the pooled
        text averages; without it every token counts, padding included.
        """
        self._check_inputs(z_t, log_snr, context, num_images)
        num_frames = z_t.shape[2]
        # every spatial layer sees the frames as a batch of images
        h = rearrange(z_t, "b c t h w -> (b t) c h w")
        temb = self.time_embedding(timestep_embedding(angle_timestep(log_snr), self.config.channels[0]))
        temb = repeat(temb, "b e -> (b t) e", t=num_frames).to(h.dtype)
        if context_mask is None:
            context_mask = torch.ones(context.shape[:-1], dtype=torch.bool, device=context.device)
        elif context_mask.shape != context.shape[:-1] or context_mask.dtype != torch.bool:
            raise ValueError(f"context_mask must be bool of shape {tuple(context.shape[:-1])} (context without D), "
                             f"got {context_mask.dtype} {tuple(context_mask.shape)}")
        if context.ndim == 3:
            context = repeat(context, "b l d -> (b t) l d", t=num_frames)
            context_mask = repeat(context_mask, "b l -> (b t) l", t=num_frames)
        else:
            context = rearrange(context, "b t l d -> (b t) l d")
            context_mask = rearrange(context_mask, "b t l -> (b t) l")
        # each frame's own caption, averaged over its tokens (at least one, so an all-False row cannot divide by 0)
        weights = context_mask.to(context.dtype)[..., None]
        pooled_text = (context * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        temb = temb + self.text_embedding(pooled_text)

        h = self.conv_in(h)
        skips = [h]
        frames = {"num_frames": num_frames, "num_images": num_images,
                  "pooled_text": pooled_text if self.config.temporal_text_modulation else None}
        for block in self.down_blocks:
            h, block_skips = block(h, temb, context, **frames)
            skips.extend(block_skips)
        h = self.mid_block(h, temb, context, **frames)
        for block in self.up_blocks:
            h = block(h, skips, temb, context, **frames)
        out = self.conv_out(F.silu(self.conv_norm_out(h)))
        return rearrange(out, "(b t) c h w -> b c t h w", t=num_frames)
