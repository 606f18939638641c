r"""Stable Video Diffusion's video U-Net (Blattmann et al., 2023, "Stable Video Diffusion: Scaling Latent Video
Diffusion Models to Large Datasets", arXiv:2311.15127), built from minivdm's blocks.

SVD is Video LDM's layout (``minivdm.models.video_ldm_unet``) trained as an image-to-video model. Every spatial layer
l_theta of the image U-Net is followed by a temporal layer l_phi over the frames, blended by a learned alpha:

    z' = alpha z + (1 - alpha) l_phi(z),    z = l_theta(x) on each frame,    alpha = sigmoid(m)  (one m per layer)

(``minivdm.nn.temporal_merge``: a ResNet block of (3, 1, 1) convolutions after each ResNet block, a temporal
transformer with a sinusoidal embedding of the frame index after each spatial transformer block). SVD trains all of
it, spatial layers included. The network F_theta (EDM's, inside D = c_skip z + c_out F: ``minivdm.diffusion.edm``;
SVD's F predicts v) is conditioned on the still image x_0 that the video starts from, twice, and on three numbers:

    F_theta([c_in z ; E(x_0)], c_noise(sigma), c_clip, (fps - 1, motion_bucket_id, noise_aug_strength))

* the image's **VAE latent** E(x_0) (B, 4, H, W), repeated on every frame and concatenated to the noisy latent z_t
  on the channel axis: ``in_channels`` = 8 = 4 + 4. The concatenation happens in the sampling pipeline; this
  module receives the 8-channel video.
* the image's **CLIP embedding** c_clip (B, 1, 1024) takes the place of the text: the keys and values of every
  cross-attention, spatial and temporal.
* **micro-conditioning** (SDXL's, Podell et al., 2023): the added time ids u = (fps - 1, motion_bucket_id,
  noise_aug_strength) of each clip (the pipeline sends fps - 1) are embedded like the timestep and added to it:

      emb = MLP_t(PE(t)) + MLP_u([PE(u_1) ; PE(u_2) ; PE(u_3)])      PE: sinusoidal, addition_time_embed_dim each

  so every ResNet block of every frame sees the frame rate, the amount of motion and the conditioning noise it
  was trained with; at sampling they are the knobs of the motion.

Parameter names are diffusers' ``UNetSpatioTemporalConditionModel`` (time_embedding, add_embedding,
down_blocks.N.resnets.M.spatial_res_block ...), so a published state dict loads key for key (``load_svd_unet``).
Where diffusers' layers differ only in their GroupNorm epsilon, we keep its values: 1e-6 in the down blocks with
attention and in every up block, 1e-5 in the down block without attention and in the middle block.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import nn

from minivdm.models.diffusers_format import (config_from_diffusers, config_to_diffusers, from_pretrained,
                                             pop_sample_size)
from minivdm.models.unet_3d_condition import frames_down_mid_up
from minivdm.nn.embeddings import TimestepEmbedding, timestep_embedding
from minivdm.nn.resnet import Downsample2D, Upsample2D
from minivdm.nn.temporal_merge import SpatioTemporalResBlock, SpatioTemporalTransformer
from minivdm.validation import check_matches_weights, check_tensor, check_timesteps, check_video

CLASS_NAME = "UNetSpatioTemporalConditionModel"
ATTENTION_DOWN, PLAIN_DOWN = "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"
ATTENTION_UP, PLAIN_UP = "CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal"
NORM_GROUPS = 32  # diffusers' SVD blocks fix 32 groups in every GroupNorm


@dataclass(frozen=True)
class SVDUNetConfig:
    """Field names and defaults are diffusers' ``UNetSpatioTemporalConditionModel`` arguments (its defaults are the
    published SVD-XT U-Net but for ``sample_size``; see ``minivdm/configs/svd.py``).

    ``num_frames`` is the clip length the checkpoint was trained on (14 for SVD, 25 for SVD-XT); the forward takes
    any T. ``sample_size`` changes nothing the U-Net computes. ``layers_per_block``,
    ``transformer_layers_per_block`` and ``cross_attention_dim`` are one value for every block (a config.json list
    of one value throughout is read as it; different values per block are refused by name)."""

    name: str = "svd-xt"
    sample_size: int | None = None
    in_channels: int = 8
    out_channels: int = 4
    down_block_types: tuple[str, ...] = (ATTENTION_DOWN, ATTENTION_DOWN, ATTENTION_DOWN, PLAIN_DOWN)
    up_block_types: tuple[str, ...] = (PLAIN_UP, ATTENTION_UP, ATTENTION_UP, ATTENTION_UP)
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 768
    layers_per_block: int = 2
    cross_attention_dim: int = 1024
    transformer_layers_per_block: int = 1
    num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20)
    num_frames: int = 25

    def __post_init__(self):
        levels = len(self.block_out_channels)
        if not levels == len(self.down_block_types) == len(self.up_block_types) == len(self.heads_per_block()):
            raise ValueError(f"block_out_channels, down_block_types, up_block_types and num_attention_heads need one "
                             f"entry per level, got {self.block_out_channels}, {self.down_block_types}, "
                             f"{self.up_block_types}, {self.num_attention_heads}")
        for key, allowed in (("down_block_types", (ATTENTION_DOWN, PLAIN_DOWN)),
                             ("up_block_types", (ATTENTION_UP, PLAIN_UP))):
            unknown = [kind for kind in getattr(self, key) if kind not in allowed]
            if unknown:
                raise ValueError(f"{key} has {unknown}; minivdm's SVD U-Net builds only {list(allowed)}")
        for channels, heads in zip(self.block_out_channels, self.heads_per_block()):
            if channels % NORM_GROUPS or channels % heads:
                raise ValueError(f"block_out_channels {self.block_out_channels} must be multiples of {NORM_GROUPS} "
                                 f"(GroupNorm groups) and of their num_attention_heads {self.heads_per_block()}")
        if self.projection_class_embeddings_input_dim % self.addition_time_embed_dim:
            raise ValueError(f"projection_class_embeddings_input_dim={self.projection_class_embeddings_input_dim} "
                             f"must be a multiple of addition_time_embed_dim={self.addition_time_embed_dim}: "
                             f"the concatenated embeddings of the added time ids, each that wide")

    def heads_per_block(self) -> tuple[int, ...]:
        heads = self.num_attention_heads
        return tuple(heads) if isinstance(heads, (tuple, list)) else (heads,) * len(self.block_out_channels)

    @property
    def num_added_time_ids(self) -> int:
        """How many micro-conditioning numbers each clip gets: 3 in SVD (fps, motion_bucket_id, noise_aug_strength)."""
        return self.projection_class_embeddings_input_dim // self.addition_time_embed_dim

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "SVDUNetConfig":
        """Read a diffusers unet/config.json dict: every key honoured or refused by name."""
        if not isinstance(config, dict):
            raise TypeError(f"a {CLASS_NAME} config must be a dict (config.json), got {type(config).__name__}")
        config = dict(config)
        sample_size = pop_sample_size(config, CLASS_NAME)
        if isinstance(config.get("num_attention_heads"), int):  # diffusers accepts one count for every block
            config["num_attention_heads"] = [config["num_attention_heads"]] * len(config.get("block_out_channels",
                                                                                               cls.block_out_channels))
        nested = config.get("transformer_layers_per_block")
        if isinstance(nested, (list, tuple)) and any(isinstance(value, (list, tuple)) for value in nested):
            raise ValueError(f"config has transformer_layers_per_block={nested!r}; minivdm's {CLASS_NAME} supports "
                             f"one count for every block (an int), not one per layer")
        loaded = config_from_diffusers(cls, config, name=name, class_name=CLASS_NAME, fixed={},
                                       per_block_ints=("layers_per_block", "transformer_layers_per_block",
                                                       "cross_attention_dim"))
        return replace(loaded, sample_size=sample_size)

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, CLASS_NAME)


def _transformer(channels: int, heads: int, config: SVDUNetConfig) -> SpatioTemporalTransformer:
    return SpatioTemporalTransformer(heads, channels // heads, channels, config.transformer_layers_per_block,
                                     config.cross_attention_dim, NORM_GROUPS, use_linear_projection=True)


class SpatioTemporalDownBlock(nn.Module):
    """layers x [alpha-merged ResNet, (alpha-merged transformer)], then an optional stride-2 convolution."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, with_attention: bool,
                 add_downsample: bool, heads: int, config: SVDUNetConfig):
        super().__init__()
        eps = 1e-6 if with_attention else 1e-5
        self.resnets = nn.ModuleList([
            SpatioTemporalResBlock(in_channels if i == 0 else out_channels, out_channels, temb_channels, NORM_GROUPS,
                                   eps=eps) for i in range(config.layers_per_block)])
        self.attentions = nn.ModuleList(
            [_transformer(out_channels, heads, config) for _ in range(config.layers_per_block)]
            if with_attention else [])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)] if add_downsample else [])

    def forward(self, h, temb, context, num_frames: int):
        skips = []
        for index, resnet in enumerate(self.resnets):
            h = resnet(h, temb, num_frames)
            if self.attentions:
                h = self.attentions[index](h, context, num_frames)
            skips.append(h)
        for downsampler in self.downsamplers:
            h = downsampler(h)
            skips.append(h)
        return h, skips


class SpatioTemporalMidBlock(nn.Module):
    """Alpha-merged ResNet, transformer, ResNet at the lowest resolution."""

    def __init__(self, channels: int, temb_channels: int, heads: int, config: SVDUNetConfig):
        super().__init__()
        self.resnets = nn.ModuleList([SpatioTemporalResBlock(channels, channels, temb_channels, NORM_GROUPS, eps=1e-5)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([_transformer(channels, heads, config)])

    def forward(self, h, temb, context, num_frames: int):
        h = self.resnets[0](h, temb, num_frames)
        h = self.attentions[0](h, context, num_frames)
        return self.resnets[1](h, temb, num_frames)


class SpatioTemporalUpBlock(nn.Module):
    """layers x [concatenate a skip, alpha-merged ResNet, (alpha-merged transformer)], then an optional upsampler."""

    def __init__(self, in_channels: int, out_channels: int, prev_output_channels: int, temb_channels: int,
                 with_attention: bool, add_upsample: bool, heads: int, config: SVDUNetConfig):
        super().__init__()
        num_layers = config.layers_per_block + 1
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(SpatioTemporalResBlock(resnet_in + skip_channels, out_channels, temb_channels, NORM_GROUPS,
                                                  eps=1e-6))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList(
            [_transformer(out_channels, heads, config) for _ in range(num_layers)] if with_attention else [])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)] if add_upsample else [])

    def forward(self, h, skips: list, temb, context, num_frames: int):
        for index, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), temb, num_frames)
            if self.attentions:
                h = self.attentions[index](h, context, num_frames)
        for upsampler in self.upsamplers:
            h = upsampler(h)
        return h


class SVDUNet(nn.Module):
    """``model(sample, timestep, encoder_hidden_states, added_time_ids)`` -> the prediction (B, out_channels, T, H, W).

    sample (B, in_channels, T, H, W): each frame's noisy latent with the image's latent concatenated (minivdm's
    layout; diffusers' is (B, T, C, H, W)); timestep a number or (B,); encoder_hidden_states (B, L, D), the
    image's CLIP embedding (L = 1 in SVD); added_time_ids (B, N) = (fps - 1, motion_bucket_id, noise_aug_strength)."""

    def __init__(self, config: SVDUNetConfig = SVDUNetConfig()):
        super().__init__()
        self.config = config
        channels, heads = config.block_out_channels, config.heads_per_block()
        temb_channels = 4 * channels[0]
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.add_embedding = TimestepEmbedding(config.projection_class_embeddings_input_dim, temb_channels)

        self.down_blocks = nn.ModuleList()
        for level, block_type in enumerate(config.down_block_types):
            self.down_blocks.append(SpatioTemporalDownBlock(
                channels[max(level - 1, 0)], channels[level], temb_channels,
                with_attention=block_type == ATTENTION_DOWN, add_downsample=level < len(channels) - 1,
                heads=heads[level], config=config))
        self.mid_block = SpatioTemporalMidBlock(channels[-1], temb_channels, heads[-1], config)

        self.up_blocks = nn.ModuleList()
        reversed_channels, reversed_heads = channels[::-1], heads[::-1]
        for level, block_type in enumerate(config.up_block_types):
            self.up_blocks.append(SpatioTemporalUpBlock(
                in_channels=reversed_channels[min(level + 1, len(channels) - 1)], out_channels=reversed_channels[level],
                prev_output_channels=reversed_channels[max(level - 1, 0)], temb_channels=temb_channels,
                with_attention=block_type == ATTENTION_UP, add_upsample=level < len(channels) - 1,
                heads=reversed_heads[level], config=config))

        self.conv_norm_out = nn.GroupNorm(NORM_GROUPS, channels[0], eps=1e-5)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "unet", **options) -> "SVDUNet":
        """Load a diffusers-format unet folder, or a pipeline folder's ``unet`` (options: dtype, device,
        allow_pickle)."""
        return from_pretrained(cls, SVDUNetConfig, path, subfolder, **options)

    def embed_time(self, timesteps: torch.Tensor, added_time_ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """emb = MLP_t(PE(t)) + MLP_u([PE(u_1) ; ... ; PE(u_N)]): (B,), (B, N) -> (B, 4 * block_out_channels[0])."""
        batch = timesteps.shape[0]
        temb = self.time_embedding(timestep_embedding(timesteps, self.config.block_out_channels[0]).to(dtype))
        ids = timestep_embedding(rearrange(added_time_ids, "b n -> (b n)"), self.config.addition_time_embed_dim)
        ids = rearrange(ids, "(b n) d -> b (n d)", b=batch)
        return temb + self.add_embedding(ids.to(temb.dtype))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor) -> torch.Tensor:
        batch, num_frames = self._check_inputs(sample, encoder_hidden_states, added_time_ids)
        timesteps = check_timesteps(timestep, batch, sample.device)
        temb = repeat(self.embed_time(timesteps, added_time_ids, sample.dtype), "b d -> (b t) d", t=num_frames)
        context = repeat(encoder_hidden_states, "b l d -> (b t) l d", t=num_frames)  # every frame sees the image

        h = self.conv_in(rearrange(sample, "b c t h w -> (b t) c h w"))
        return frames_down_mid_up(self, h, temb, context, num_frames)

    def _check_inputs(self, sample, encoder_hidden_states, added_time_ids) -> tuple[int, int]:
        config = self.config
        check_video(sample, "sample")
        batch, channels, num_frames, height, width = sample.shape
        if channels != config.in_channels:
            raise ValueError(f"sample must be (B, C, T, H, W) with C = {config.in_channels} (the noisy latent and the "
                             f"image's latent, concatenated), got {tuple(sample.shape)}; diffusers' (B, T, C, H, W) "
                             f"is rearranged with einops: 'b t c h w -> b c t h w'")
        factor = 2 ** (len(config.block_out_channels) - 1)
        if height % factor or width % factor:
            raise ValueError(f"H and W of sample (B, C, T, H, W) must be divisible by {factor}, got {(height, width)}")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)",
                     floating=True)
        if encoder_hidden_states.shape[0] != batch or encoder_hidden_states.shape[2] != config.cross_attention_dim:
            raise ValueError(f"encoder_hidden_states must be (B, L, D) = ({batch}, L, {config.cross_attention_dim}), "
                             f"the image's CLIP embedding for each clip, got {tuple(encoder_hidden_states.shape)}")
        check_tensor(added_time_ids, "added_time_ids", ndim=2, layout="(B, N)")
        if tuple(added_time_ids.shape) != (batch, config.num_added_time_ids):
            raise ValueError(f"added_time_ids must be (B, N) = ({batch}, {config.num_added_time_ids}): "
                             f"(fps - 1, motion_bucket_id, noise_aug_strength) for each clip, got "
                             f"{tuple(added_time_ids.shape)}")
        check_matches_weights(sample, "sample", self.conv_in.weight)
        check_matches_weights(encoder_hidden_states, "encoder_hidden_states", self.conv_in.weight)
        return batch, num_frames


def load_svd_unet(folder: str | Path, dtype: torch.dtype | None = None, *,
                  device: str | torch.device | None = None) -> SVDUNet:
    """An SVD U-Net folder in diffusers' format (config.json + safetensors), or a pipeline folder holding one in
    ``unet/``: the architecture built from config.json (every key honoured or refused by name), then every weight
    checked by name and shape and loaded."""
    return SVDUNet.from_pretrained(folder, dtype=dtype, device=device)
