r"""ModelScope's text-to-video 3D U-Net (Wang et al., 2023, arXiv:2308.06571), from scratch.

    eps_theta(z_t, t, c):  z_t (B, C, T, H, W) video latent,  t integer timestep (B,),  c text tokens (B, L, D)

Stable Diffusion's U-Net (``minivdm.models.unet_2d_condition``) made into a video model by
factorising space and time (Ho et al., VDM, 2022, arXiv:2204.03458): the T frames are folded into
the batch, ((B T), C, H, W), so every spatial layer works frame by frame, and after each spatial
layer a temporal layer from ``minivdm.nn.temporal`` mixes the frames at each pixel:

    conv_in -> temporal attention (transformer_in)
    down / mid / up layers:  ResNet -> temporal conv [-> spatial transformer (text) -> temporal attention]
    -> GroupNorm, SiLU, conv_out

The temporal layers are residual and start as the identity, so an initialised model is an image
U-Net applied to each frame; training on video teaches them motion.

Module names follow diffusers' ``UNet3DConditionModel`` exactly (down_blocks.0.temp_convs.0.conv1.0
...), so "ali-vilab/text-to-video-ms-1.7b" loads with an identity key map (config in
``minivdm/configs/modelscope.py``). Note the config key ``attention_head_dim`` here really is the
width of a head (64): a block with C channels has C // 64 heads, and ``transformer_in`` has 8 heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from minivdm.models.diffusers_format import config_from_diffusers, config_to_diffusers, from_pretrained
from minivdm.nn import Downsample2D, ResnetBlock2D, TimestepEmbedding, Upsample2D, timestep_embedding
from minivdm.nn.temporal import TemporalConvLayer, TransformerTemporalModel
from minivdm.nn.transformer_2d import Transformer2DModel
from minivdm.validation import VIDEO_LAYOUT, check_matches_weights, check_tensor, check_timesteps, check_video

ATTENTION_DOWN_3D, PLAIN_DOWN_3D = "CrossAttnDownBlock3D", "DownBlock3D"
ATTENTION_UP_3D, PLAIN_UP_3D = "CrossAttnUpBlock3D", "UpBlock3D"
TRANSFORMER_IN_HEADS = 8  # fixed in ModelScope / diffusers, not part of the config
# diffusers' other UNet3DConditionModel options, at the one value this implementation has (ModelScope's)
UNET_3D_FIXED_OPTIONS = {"act_fn": "silu", "downsample_padding": 1, "mid_block_scale_factor": 1,
                         "num_attention_heads": None, "time_cond_proj_dim": None}


@dataclass(frozen=True)
class UNet3DConditionConfig:
    """Field names are diffusers' config.json keys; the defaults are ModelScope's published U-Net."""

    name: str = "modelscope-t2v"
    sample_size: int = 32
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, ATTENTION_DOWN_3D, PLAIN_DOWN_3D)
    up_block_types: tuple[str, ...] = (PLAIN_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D, ATTENTION_UP_3D)
    layers_per_block: int = 2
    attention_head_dim: int = 64  # the width of each head (unlike the 2D U-Net's config, where it counts heads)
    cross_attention_dim: int = 1024
    norm_num_groups: int = 32
    norm_eps: float = 1e-5

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "UNet3DConditionConfig":
        """Read a diffusers unet/config.json dict; refuse options this implementation does not have."""
        if config.get("norm_num_groups", 32) is None:
            raise ValueError("unet config has norm_num_groups=None; minivdm's UNet3DConditionModel needs GroupNorm groups")
        if not isinstance(config.get("attention_head_dim", 64), int):
            raise ValueError(f"unet config has attention_head_dim={config['attention_head_dim']!r}; "
                             "minivdm's UNet3DConditionModel supports one head width (an int) for every block")
        return config_from_diffusers(cls, config, name=name, class_name="UNet3DConditionModel",
                                     fixed=UNET_3D_FIXED_OPTIONS, per_block_ints=("layers_per_block",))

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, "UNet3DConditionModel")


def _resnet(in_channels: int, out_channels: int, temb_channels: int, config: UNet3DConditionConfig) -> ResnetBlock2D:
    return ResnetBlock2D(in_channels, out_channels, temb_channels, config.norm_num_groups, eps=config.norm_eps)


def _spatial_transformer(channels: int, config: UNet3DConditionConfig) -> Transformer2DModel:
    heads = channels // config.attention_head_dim
    # diffusers' 3D blocks always project with linear layers (not in the config; the checkpoint has 2-D proj_in weights)
    return Transformer2DModel(heads, config.attention_head_dim, channels, 1, config.cross_attention_dim,
                              config.norm_num_groups, use_linear_projection=True)


def _temporal_transformer(channels: int, config: UNet3DConditionConfig) -> TransformerTemporalModel:
    heads = channels // config.attention_head_dim
    return TransformerTemporalModel(heads, config.attention_head_dim, channels, 1, config.norm_num_groups)


def _space_time_layer(block: nn.Module, index: int, h, temb, context, num_frames: int):
    """Layer ``index`` of a 3D block: ResNet, temporal conv [, spatial transformer (text), temporal attention]."""
    h = block.resnets[index](h, temb)
    h = block.temp_convs[index](h, num_frames)
    if block.attentions:
        h = block.attentions[index](h, context)
        h = block.temp_attentions[index](h, num_frames)
    return h


class UNetDownBlock3D(nn.Module):
    """CrossAttnDownBlock3D / DownBlock3D: layers x [space-time layer], then an optional stride-2 downsampler."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, with_attention: bool,
                 add_downsample: bool, config: UNet3DConditionConfig):
        super().__init__()
        layers = range(config.layers_per_block)
        self.resnets = nn.ModuleList([_resnet(in_channels if i == 0 else out_channels, out_channels, temb_channels, config)
                                      for i in layers])
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, config.norm_num_groups) for _ in layers])
        self.attentions = nn.ModuleList([_spatial_transformer(out_channels, config) for _ in layers] if with_attention else [])
        self.temp_attentions = nn.ModuleList([_temporal_transformer(out_channels, config) for _ in layers] if with_attention else [])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)] if add_downsample else [])

    def forward(self, h, temb, context, num_frames: int):
        skips = []
        for index in range(len(self.resnets)):
            h = _space_time_layer(self, index, h, temb, context, num_frames)
            skips.append(h)
        for downsampler in self.downsamplers:
            h = downsampler(h)
            skips.append(h)
        return h, skips


class UNetMidBlock3D(nn.Module):
    """UNetMidBlock3DCrossAttn: ResNet, temporal conv, then [spatial transformer, temporal attention, ResNet, temporal conv]."""

    def __init__(self, channels: int, temb_channels: int, config: UNet3DConditionConfig):
        super().__init__()
        self.resnets = nn.ModuleList([_resnet(channels, channels, temb_channels, config) for _ in range(2)])
        self.temp_convs = nn.ModuleList([TemporalConvLayer(channels, config.norm_num_groups) for _ in range(2)])
        self.attentions = nn.ModuleList([_spatial_transformer(channels, config)])
        self.temp_attentions = nn.ModuleList([_temporal_transformer(channels, config)])

    def forward(self, h, temb, context, num_frames: int):
        h = self.temp_convs[0](self.resnets[0](h, temb), num_frames)
        h = self.attentions[0](h, context)
        h = self.temp_attentions[0](h, num_frames)
        return self.temp_convs[1](self.resnets[1](h, temb), num_frames)


class UNetUpBlock3D(nn.Module):
    """CrossAttnUpBlock3D / UpBlock3D: (layers + 1) x [concatenate a skip, space-time layer], then an optional upsampler."""

    def __init__(self, in_channels: int, out_channels: int, prev_output_channels: int, temb_channels: int,
                 with_attention: bool, add_upsample: bool, config: UNet3DConditionConfig):
        super().__init__()
        num_layers = config.layers_per_block + 1
        layers = range(num_layers)
        resnets = []
        for i in layers:
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(_resnet(resnet_in + skip_channels, out_channels, temb_channels, config))
        self.resnets = nn.ModuleList(resnets)
        self.temp_convs = nn.ModuleList([TemporalConvLayer(out_channels, config.norm_num_groups) for _ in layers])
        self.attentions = nn.ModuleList([_spatial_transformer(out_channels, config) for _ in layers] if with_attention else [])
        self.temp_attentions = nn.ModuleList([_temporal_transformer(out_channels, config) for _ in layers] if with_attention else [])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)] if add_upsample else [])

    def forward(self, h, skips: list, temb, context, num_frames: int):
        for index in range(len(self.resnets)):
            h = _space_time_layer(self, index, torch.cat([h, skips.pop()], dim=1), temb, context, num_frames)
        for upsampler in self.upsamplers:
            h = upsampler(h)
        return h


class UNet3DConditionModel(nn.Module):
    def __init__(self, config: UNet3DConditionConfig = UNet3DConditionConfig()):
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        if not len(channels) == len(config.down_block_types) == len(config.up_block_types):
            raise ValueError(f"block_out_channels and down/up_block_types need one entry per level, got {config}")
        if not set(config.down_block_types) <= {ATTENTION_DOWN_3D, PLAIN_DOWN_3D}:
            raise ValueError(f"down_block_types must be {ATTENTION_DOWN_3D!r} or {PLAIN_DOWN_3D!r}, got {config.down_block_types}")
        if not set(config.up_block_types) <= {ATTENTION_UP_3D, PLAIN_UP_3D}:
            raise ValueError(f"up_block_types must be {ATTENTION_UP_3D!r} or {PLAIN_UP_3D!r}, got {config.up_block_types}")
        if any(c % config.attention_head_dim for c in channels):
            raise ValueError(f"every block_out_channels entry must be a multiple of "
                             f"attention_head_dim={config.attention_head_dim}, got {channels}")
        temb_channels = 4 * channels[0]
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.transformer_in = TransformerTemporalModel(TRANSFORMER_IN_HEADS, config.attention_head_dim, channels[0], 1,
                                                       config.norm_num_groups)

        self.down_blocks = nn.ModuleList()
        for level, block_type in enumerate(config.down_block_types):
            is_last = level == len(channels) - 1
            self.down_blocks.append(UNetDownBlock3D(channels[max(level - 1, 0)], channels[level], temb_channels,
                                                    block_type == ATTENTION_DOWN_3D, not is_last, config))
        self.mid_block = UNetMidBlock3D(channels[-1], temb_channels, config)

        self.up_blocks = nn.ModuleList()
        reversed_channels = channels[::-1]
        for level, block_type in enumerate(config.up_block_types):
            is_last = level == len(channels) - 1
            self.up_blocks.append(UNetUpBlock3D(
                in_channels=reversed_channels[min(level + 1, len(channels) - 1)], out_channels=reversed_channels[level],
                prev_output_channels=reversed_channels[max(level - 1, 0)], temb_channels=temb_channels,
                with_attention=block_type == ATTENTION_UP_3D, add_upsample=not is_last, config=config))

        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, channels[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    def _check_inputs(self, sample: torch.Tensor, encoder_hidden_states: torch.Tensor) -> None:
        check_video(sample, "sample")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)", floating=True)
        if sample.shape[1] != self.config.in_channels:
            raise ValueError(f"sample must be {VIDEO_LAYOUT} with C={self.config.in_channels}, got shape {tuple(sample.shape)}")
        if encoder_hidden_states.shape[0] != sample.shape[0] or encoder_hidden_states.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(f"encoder_hidden_states must be (B, L, {self.config.cross_attention_dim}) with the B of sample "
                             f"{tuple(sample.shape)}, got {tuple(encoder_hidden_states.shape)}")
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if sample.shape[-1] % factor or sample.shape[-2] % factor:
            raise ValueError(f"H and W of sample {VIDEO_LAYOUT} must be divisible by {factor}, got shape {tuple(sample.shape)}")
        check_matches_weights(sample, "sample", self.conv_in.weight)
        check_matches_weights(encoder_hidden_states, "encoder_hidden_states", self.conv_in.weight)

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "unet", **options) -> "UNet3DConditionModel":
        """Load a diffusers-format unet folder (options: dtype, device, allow_pickle)."""
        return from_pretrained(cls, UNet3DConditionConfig, path, subfolder, **options)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """sample (B, C, T, H, W), timestep scalar or (B,), encoder_hidden_states (B, L, D) -> (B, C, T, H, W)."""
        self._check_inputs(sample, encoder_hidden_states)
        batch, num_frames = sample.shape[0], sample.shape[2]
        timesteps = check_timesteps(timestep, batch, sample.device)

        features = timestep_embedding(timesteps, self.config.block_out_channels[0], flip_sin_to_cos=True, downscale_freq_shift=0)
        temb = self.time_embedding(features.to(sample.dtype))
        # every frame of a clip shares the clip's timestep and caption
        temb = repeat(temb, "b d -> (b t) d", t=num_frames)
        context = repeat(encoder_hidden_states, "b l d -> (b t) l d", t=num_frames)

        h = self.conv_in(rearrange(sample, "b c t h w -> (b t) c h w"))
        h = self.transformer_in(h, num_frames)
        return frames_down_mid_up(self, h, temb, context, num_frames)


def frames_down_mid_up(unet: nn.Module, h: torch.Tensor, temb: torch.Tensor, context: torch.Tensor,
                       num_frames: int) -> torch.Tensor:
    """The pass every video U-Net here shares after its input layers: down blocks (keeping each skip), middle
    block, up blocks (taking the skips back, last first), GroupNorm-SiLU-conv_out; h ((B T), C, H, W) ->
    (B, C, T, H, W). ModelScope's, SVD's and I2VGen-XL's U-Nets differ before it (inputs, embeddings), not in it."""
    skips = [h]
    for block in unet.down_blocks:
        h, block_skips = block(h, temb, context, num_frames)
        skips.extend(block_skips)
    h = unet.mid_block(h, temb, context, num_frames)
    for block in unet.up_blocks:
        h = block(h, skips, temb, context, num_frames)
    h = unet.conv_out(F.silu(unet.conv_norm_out(h)))
    return rearrange(h, "(b t) c h w -> b c t h w", t=num_frames)
