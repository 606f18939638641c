r"""ControlNet (Zhang, Rao and Agrawala, 2023, "Adding Conditional Control to Text-to-Image Diffusion Models",
arXiv:2302.05543), from scratch, for minivdm's Stable Diffusion U-Net.

A frozen block F(.; Theta) gets a trainable copy F(.; Theta_c) that reads the input plus the condition c, and
whose output comes back through a zero-initialised convolution Z:

    y_c = F(x; Theta) + Z(F(x + Z(c; Theta_z1); Theta_c); Theta_z2)

For the U-Net the copied block is its whole encoder (conv_in, the down blocks, the middle block). The control
image c_i (edges, depth ...) is embedded to c_f = E(c_i), four small convolutions that bring 512 pixels to the
64-pixel latent grid and end in a zero convolution. The copy runs on conv_in(z_t) + c_f, and every skip
activation it makes, and its middle output, leave through their own zero 1x1 convolution as residuals r_i,
r_mid, which the U-Net adds to its own (s = ``conditioning_scale``):

    skip_i <- skip_i + s r_i,        h_mid <- h_mid + s r_mid

At initialisation every Z is 0, so the controlled U-Net is exactly the image model, and training grows the
control from there (a zero convolution's weight still gets a gradient, dL/dW = dL/dy x^T, so it does not stay
zero). Module names follow diffusers' ``ControlNetModel``: published checkpoints load with an identity key map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minivdm.models.diffusers_format import config_from_diffusers, config_to_diffusers, from_pretrained
from minivdm.models.unet_2d_condition import (ATTENTION_DOWN, PLAIN_DOWN, UNET_2D_FIXED_OPTIONS, UNet2DConditionConfig,
                                              UNet2DConditionModel, UNetDownBlock, UNetMidBlock)
from minivdm.nn import TimestepEmbedding, timestep_embedding
from minivdm.validation import check_image, check_tensor, check_timesteps

# Every other option of diffusers' ControlNetModel, at the one value this implementation has.
CONTROLNET_FIXED_OPTIONS = {
    **{key: UNET_2D_FIXED_OPTIONS[key] for key in (
        "mid_block_type", "only_cross_attention", "downsample_padding", "mid_block_scale_factor", "act_fn",
        "transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "num_attention_heads",
        "class_embed_type", "addition_embed_type", "addition_time_embed_dim", "num_class_embeds",
        "resnet_time_scale_shift", "projection_class_embeddings_input_dim", "addition_embed_type_num_heads")},
    "controlnet_conditioning_channel_order": "rgb", "global_pool_conditions": False,
}


# The fields a ControlNet shares with the U-Net whose encoder it copies (the same diffusers keys in both configs).
ENCODER_FIELDS = ("in_channels", "block_out_channels", "down_block_types", "layers_per_block", "attention_head_dim",
                  "cross_attention_dim", "norm_num_groups", "norm_eps", "use_linear_projection", "upcast_attention",
                  "flip_sin_to_cos", "freq_shift")


@dataclass(frozen=True)
class ControlNetConfig:
    """Field names are diffusers' ControlNetModel config.json keys (defaults: SD 1.5's ControlNets)."""

    name: str = "controlnet-sd15"
    in_channels: int = 4
    conditioning_channels: int = 3
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (ATTENTION_DOWN, ATTENTION_DOWN, ATTENTION_DOWN, PLAIN_DOWN)
    layers_per_block: int = 2
    attention_head_dim: int | tuple[int, ...] = 8  # the number of heads per block (diffusers' legacy name)
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    use_linear_projection: bool = False
    upcast_attention: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "ControlNetConfig":
        return config_from_diffusers(cls, config, name=name, class_name="ControlNetModel",
                                     fixed=CONTROLNET_FIXED_OPTIONS, per_block_ints=("layers_per_block",))

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, "ControlNetModel")

    @classmethod
    def for_unet(cls, unet: UNet2DConditionConfig, **options) -> "ControlNetConfig":
        """The ControlNet of a U-Net: its encoder's architecture (options: the conditioning fields, name)."""
        shared = {key: getattr(unet, key) for key in ENCODER_FIELDS}
        return cls(**{"name": f"controlnet-{unet.name}", **shared, **options})

    def unet_config(self) -> UNet2DConditionConfig:
        """The U-Net whose encoder this copies (the decoder side is not built: only the shared fields matter)."""
        return UNet2DConditionConfig(name=self.name, **{key: getattr(self, key) for key in ENCODER_FIELDS})


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Conv2d:
    """Z: a convolution whose weight and bias start at 0, so it adds nothing until training moves it."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlNetConditioningEmbedding(nn.Module):
    """E: control image (B, C_c, H, W) -> c_f (B, C_0, H / 2^(n-1), W / 2^(n-1)). Per level a 3x3 conv and a
    stride-2 3x3 conv, SiLU after each; the last conv is a zero convolution."""

    def __init__(self, conditioning_channels: int, channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, channels[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for level in range(len(channels) - 1):
            self.blocks.append(nn.Conv2d(channels[level], channels[level], 3, padding=1))
            self.blocks.append(nn.Conv2d(channels[level], channels[level + 1], 3, padding=1, stride=2))
        self.conv_out = zero_conv(channels[-1], out_channels, kernel_size=3)

    def forward(self, control: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.conv_in(control))
        for conv in self.blocks:
            h = F.silu(conv(h))
        return self.conv_out(h)


class ControlNetModel(nn.Module):
    """The trainable copy of the U-Net's encoder. ``forward`` returns (down residuals r_i, one per skip of
    the U-Net, and the middle residual r_mid), already scaled by ``conditioning_scale``."""

    def __init__(self, config: ControlNetConfig = ControlNetConfig()):
        super().__init__()
        self.config = config
        unet = config.unet_config()
        channels, heads = unet.block_out_channels, unet.heads_per_block()
        if not len(channels) == len(config.down_block_types) == len(heads):
            raise ValueError(f"block_out_channels, down_block_types and attention_head_dim need one entry per level, "
                             f"got {config}")
        if not set(config.down_block_types) <= {ATTENTION_DOWN, PLAIN_DOWN}:
            raise ValueError(f"down_block_types must be among {[ATTENTION_DOWN, PLAIN_DOWN]}, got {config.down_block_types}")
        temb_channels = 4 * channels[0]
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            config.conditioning_channels, config.conditioning_embedding_out_channels, channels[0])

        self.down_blocks = nn.ModuleList()
        self.controlnet_down_blocks = nn.ModuleList([zero_conv(channels[0], channels[0])])  # for conv_in's skip
        for level, block_type in enumerate(config.down_block_types):
            is_last = level == len(channels) - 1
            self.down_blocks.append(UNetDownBlock(channels[max(level - 1, 0)], channels[level], temb_channels,
                                                  config.layers_per_block, block_type == ATTENTION_DOWN, not is_last,
                                                  heads[level], unet))
            skips = config.layers_per_block + (0 if is_last else 1)  # one per layer, one for the downsampler
            self.controlnet_down_blocks.extend(zero_conv(channels[level], channels[level]) for _ in range(skips))
        self.mid_block = UNetMidBlock(channels[-1], temb_channels, heads[-1], unet)
        self.controlnet_mid_block = zero_conv(channels[-1], channels[-1])

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, **options) -> "ControlNetModel":
        """ControlNet's initialisation: the copy starts as the U-Net's own encoder (conv_in, time embedding,
        down blocks, middle block, weights copied), the conditioning embedding is fresh and every Z is 0.
        Options: ControlNetConfig's conditioning fields (conditioning_channels, ...), name."""
        controlnet = cls(ControlNetConfig.for_unet(unet.config, **options))
        for part in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
            getattr(controlnet, part).load_state_dict(getattr(unet, part).state_dict())
        parameter = unet.conv_in.weight
        return controlnet.to(device=parameter.device, dtype=parameter.dtype)

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "controlnet", **options) -> "ControlNetModel":
        """Load a diffusers-format ControlNet folder (options: dtype, device, allow_pickle)."""
        return from_pretrained(cls, ControlNetConfig, path, subfolder, **options)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float, encoder_hidden_states: torch.Tensor,
                controlnet_cond: torch.Tensor, conditioning_scale: float = 1.0
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        check_image(sample, "sample")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)",
                     floating=True)
        check_image(controlnet_cond, "controlnet_cond")
        factor = 2 ** (len(self.config.conditioning_embedding_out_channels) - 1)
        expected = (sample.shape[0], self.config.conditioning_channels, sample.shape[2] * factor, sample.shape[3] * factor)
        if tuple(controlnet_cond.shape) != expected:
            raise ValueError(f"controlnet_cond must be (B, conditioning_channels, {factor} H, {factor} W) = {expected} for "
                             f"sample {tuple(sample.shape)}, got {tuple(controlnet_cond.shape)}")
        if not isinstance(conditioning_scale, (int, float)) or isinstance(conditioning_scale, bool) or conditioning_scale < 0:
            raise ValueError(f"conditioning_scale must be a number >= 0, got {conditioning_scale!r}")
        timesteps = check_timesteps(timestep, sample.shape[0], sample.device)

        features = timestep_embedding(timesteps, self.config.block_out_channels[0],
                                      flip_sin_to_cos=self.config.flip_sin_to_cos, downscale_freq_shift=self.config.freq_shift)
        temb = self.time_embedding(features.to(sample.dtype))
        h = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)  # x + Z(c)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, temb, encoder_hidden_states)
            skips.extend(block_skips)
        h = self.mid_block(h, temb, encoder_hidden_states)
        down_residuals = [conditioning_scale * zero(skip) for zero, skip in zip(self.controlnet_down_blocks, skips)]
        return down_residuals, conditioning_scale * self.controlnet_mid_block(h)
