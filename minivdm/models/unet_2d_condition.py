r"""The text-conditional 2D U-Net of Stable Diffusion (Rombach et al., 2022, arXiv:2112.10752), from scratch.

    eps_theta(z_t, t, c):  z_t (B, C, H, W) latent,  t integer timestep (B,),  c text tokens (B, L, D)

    conv_in -> down blocks -> mid block -> up blocks (with skips) -> GroupNorm, SiLU, conv_out

Each down block is ``layers_per_block`` x [ResNet block (+ time embedding), spatial transformer
(self-attention, cross-attention to c, GEGLU)] then a stride-2 conv; the up blocks mirror them with
one more layer, each concatenating the matching skip activation. The lowest-resolution block of SD
has no attention ("DownBlock2D" / "UpBlock2D").

Module names follow diffusers' ``UNet2DConditionModel`` exactly (down_blocks.0.resnets.0.conv1 ...):
loading a published checkpoint is an identity key map, verified name by name and shape by shape in
``minivdm.io.checkpoints``. One configuration dataclass expresses SD 1.x, SD 2.x (incl. the
depth-conditioned model with 5 input channels) and the toy world's tiny model (see
``minivdm/configs/stable_diffusion.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from minivdm.models.diffusers_format import config_from_diffusers, config_to_diffusers, from_pretrained
from minivdm.nn import Downsample2D, ResnetBlock2D, TimestepEmbedding, Upsample2D, timestep_embedding
from minivdm.nn.transformer_2d import Transformer2DModel
from minivdm.validation import check_image, check_matches_weights, check_tensor, check_timesteps

ATTENTION_DOWN, PLAIN_DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
ATTENTION_UP, PLAIN_UP = "CrossAttnUpBlock2D", "UpBlock2D"


# Every other option of diffusers' UNet2DConditionModel, at the one value this implementation has
# (SD 1.x / 2.x use these values; a config that sets another is refused by name).
UNET_2D_FIXED_OPTIONS = {
    "center_input_sample": False, "mid_block_type": "UNetMidBlock2DCrossAttn", "only_cross_attention": False,
    "downsample_padding": 1, "mid_block_scale_factor": 1, "dropout": 0.0, "act_fn": "silu",
    "transformer_layers_per_block": 1, "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "num_attention_heads": None, "dual_cross_attention": False,
    "class_embed_type": None, "addition_embed_type": None, "addition_time_embed_dim": None, "num_class_embeds": None,
    "resnet_time_scale_shift": "default", "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional", "time_embedding_dim": None, "time_embedding_act_fn": None,
    "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "projection_class_embeddings_input_dim": None, "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "addition_embed_type_num_heads": 64,
}


@dataclass(frozen=True)
class UNet2DConditionConfig:
    """Field names are diffusers' config.json keys, so a published config reads straight in."""

    name: str = "sd15"
    sample_size: int = 64
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (ATTENTION_DOWN, ATTENTION_DOWN, ATTENTION_DOWN, PLAIN_DOWN)
    up_block_types: tuple[str, ...] = (PLAIN_UP, ATTENTION_UP, ATTENTION_UP, ATTENTION_UP)
    layers_per_block: int = 2
    # diffusers' legacy name: this is the NUMBER of heads per block (SD 1.x: 8), not their width
    attention_head_dim: int | tuple[int, ...] = 8
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    use_linear_projection: bool = False
    upcast_attention: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    def heads_per_block(self) -> tuple[int, ...]:
        heads = self.attention_head_dim
        return tuple(heads) if isinstance(heads, (tuple, list)) else (heads,) * len(self.block_out_channels)

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "UNet2DConditionConfig":
        """Read a diffusers unet/config.json dict; refuse options this implementation does not have."""
        return config_from_diffusers(cls, config, name=name, class_name="UNet2DConditionModel",
                                     fixed=UNET_2D_FIXED_OPTIONS, per_block_ints=("layers_per_block",))

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, "UNet2DConditionModel")


class UNetBlock(nn.Module):
    """What the three block types share: ``attend``, the place where a video U-Net built on these blocks
    (``minivdm.models.vdm_unet``) adds temporal attention after each spatial transformer, and
    ``motion_modules``, AnimateDiff's layers after each (ResNet, transformer) pair (``minivdm.models.animatediff_unet``;
    an image U-Net has none)."""

    def attend(self, index: int, h, context, **frames):
        """Spatial transformer ``index``: self-attention over the pixels of each image, cross-attention to text."""
        return self.attentions[index](h, context)

    def after_layer(self, index: int, h):
        """What follows layer ``index`` (its ResNet and, where there is one, its transformer): nothing in an image
        U-Net; motion module ``index`` in AnimateDiff's."""
        motion_modules = getattr(self, "motion_modules", None)  # a registered child, when there is one
        return h if motion_modules is None else motion_modules[index](h)


class UNetDownBlock(UNetBlock):
    """layers x [ResNet, (spatial transformer)], then an optional stride-2 downsampler."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, num_layers: int, with_attention: bool,
                 add_downsample: bool, heads: int, config: UNet2DConditionConfig):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, temb_channels, config.norm_num_groups, eps=config.norm_eps)
            for i in range(num_layers)
        ])
        self.attentions = nn.ModuleList([_transformer(out_channels, heads, config) for _ in range(num_layers)] if with_attention else [])
        self.downsamplers = nn.ModuleList([Downsample2D(out_channels)] if add_downsample else [])

    def forward(self, h, temb, context, **frames):
        skips = []
        for index, resnet in enumerate(self.resnets):
            h = resnet(h, temb)
            if self.attentions:
                h = self.attend(index, h, context, **frames)
            h = self.after_layer(index, h)
            skips.append(h)
        for downsampler in self.downsamplers:
            h = downsampler(h)
            skips.append(h)
        return h, skips


class UNetMidBlock(UNetBlock):
    """ResNet, spatial transformer, ResNet at the lowest resolution."""

    def __init__(self, channels: int, temb_channels: int, heads: int, config: UNet2DConditionConfig):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, temb_channels, config.norm_num_groups, eps=config.norm_eps)
                                      for _ in range(2)])
        self.attentions = nn.ModuleList([_transformer(channels, heads, config)])

    def forward(self, h, temb, context, **frames):
        h = self.resnets[0](h, temb)
        h = self.after_layer(0, self.attend(0, h, context, **frames))
        return self.resnets[1](h, temb)


class UNetUpBlock(UNetBlock):
    """layers x [concatenate a skip, ResNet, (spatial transformer)], then an optional upsampler."""

    def __init__(self, in_channels: int, out_channels: int, prev_output_channels: int, temb_channels: int, num_layers: int,
                 with_attention: bool, add_upsample: bool, heads: int, config: UNet2DConditionConfig):
        super().__init__()
        resnets = []
        for i in range(num_layers):
            skip_channels = in_channels if i == num_layers - 1 else out_channels
            resnet_in = prev_output_channels if i == 0 else out_channels
            resnets.append(ResnetBlock2D(resnet_in + skip_channels, out_channels, temb_channels, config.norm_num_groups, eps=config.norm_eps))
        self.resnets = nn.ModuleList(resnets)
        self.attentions = nn.ModuleList([_transformer(out_channels, heads, config) for _ in range(num_layers)] if with_attention else [])
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels)] if add_upsample else [])

    def forward(self, h, skips: list, temb, context, **frames):
        for index, resnet in enumerate(self.resnets):
            h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
            if self.attentions:
                h = self.attend(index, h, context, **frames)
            h = self.after_layer(index, h)
        for upsampler in self.upsamplers:
            h = upsampler(h)
        return h


def _transformer(channels: int, heads: int, config: UNet2DConditionConfig) -> Transformer2DModel:
    return Transformer2DModel(heads, channels // heads, channels, 1, config.cross_attention_dim, config.norm_num_groups,
                              config.use_linear_projection, config.upcast_attention)


class UNet2DConditionModel(nn.Module):
    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig()):
        super().__init__()
        self.config = config
        channels, heads = config.block_out_channels, config.heads_per_block()
        if not len(channels) == len(config.down_block_types) == len(config.up_block_types) == len(heads):
            raise ValueError(f"block_out_channels, down/up_block_types and attention_head_dim need one entry per level, got {config}")
        known = {ATTENTION_DOWN, PLAIN_DOWN, ATTENTION_UP, PLAIN_UP}
        if not set(config.down_block_types + config.up_block_types) <= known:
            raise ValueError(f"block types must be among {sorted(known)}, got {config.down_block_types + config.up_block_types}")
        temb_channels = 4 * channels[0]
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)

        self.down_blocks = nn.ModuleList()
        for level, block_type in enumerate(config.down_block_types):
            is_last = level == len(channels) - 1
            self.down_blocks.append(UNetDownBlock(channels[max(level - 1, 0)], channels[level], temb_channels, config.layers_per_block,
                                                  block_type == ATTENTION_DOWN, not is_last, heads[level], config))
        self.mid_block = UNetMidBlock(channels[-1], temb_channels, heads[-1], config)

        self.up_blocks = nn.ModuleList()
        reversed_channels, reversed_heads = channels[::-1], heads[::-1]
        for level, block_type in enumerate(config.up_block_types):
            is_last = level == len(channels) - 1
            self.up_blocks.append(UNetUpBlock(
                in_channels=reversed_channels[min(level + 1, len(channels) - 1)], out_channels=reversed_channels[level],
                prev_output_channels=reversed_channels[max(level - 1, 0)], temb_channels=temb_channels,
                num_layers=config.layers_per_block + 1, with_attention=block_type == ATTENTION_UP,
                add_upsample=not is_last, heads=reversed_heads[level], config=config))

        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, channels[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "unet", **options) -> "UNet2DConditionModel":
        """Load a diffusers-format unet folder (options: dtype, device, allow_pickle)."""
        return from_pretrained(cls, UNet2DConditionConfig, path, subfolder, **options)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int | float,
                encoder_hidden_states: torch.Tensor, down_block_additional_residuals: list[torch.Tensor] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None,
                added_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """The additional residuals (a ControlNet's, ``minivdm.models.controlnet``) are added to the skip
        activations, one per skip in order, and to the middle block's output. ``added_embedding`` (B, 4 * C0), when
        given, is added to the time embedding: how SVD's micro-conditions (fps, motion bucket) reach every ResNet
        block (the toy image-to-video model, ``minivdm.toy.image_to_video``)."""
        check_image(sample, "sample")
        check_tensor(encoder_hidden_states, "encoder_hidden_states", ndim=3, layout="(B, L, cross_attention_dim)", floating=True)
        if sample.shape[1] != self.config.in_channels:
            raise ValueError(f"sample must have {self.config.in_channels} channels (dim 1), got shape {tuple(sample.shape)}")
        if encoder_hidden_states.shape[-1] != self.config.cross_attention_dim or encoder_hidden_states.shape[0] != sample.shape[0]:
            raise ValueError(f"encoder_hidden_states must be (B, L, {self.config.cross_attention_dim}) with the B of sample "
                             f"{tuple(sample.shape)}, got {tuple(encoder_hidden_states.shape)}")
        check_matches_weights(sample, "sample", self.conv_in.weight)
        check_matches_weights(encoder_hidden_states, "encoder_hidden_states", self.conv_in.weight)
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        if sample.shape[-1] % factor or sample.shape[-2] % factor:
            raise ValueError(f"H and W of sample must be divisible by {factor}, got {tuple(sample.shape[-2:])}")
        timesteps = check_timesteps(timestep, sample.shape[0], sample.device)

        features = timestep_embedding(timesteps, self.config.block_out_channels[0], flip_sin_to_cos=self.config.flip_sin_to_cos,
                                      downscale_freq_shift=self.config.freq_shift)
        temb = self.time_embedding(features.to(sample.dtype))
        if added_embedding is not None:
            if tuple(added_embedding.shape) != tuple(temb.shape):
                raise ValueError(f"added_embedding must be (B, {temb.shape[1]}), one vector per sample, got "
                                 f"{tuple(added_embedding.shape)}")
            temb = temb + added_embedding
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = block(h, temb, encoder_hidden_states)
            skips.extend(block_skips)
        h = self.mid_block(h, temb, encoder_hidden_states)
        if down_block_additional_residuals is not None or mid_block_additional_residual is not None:
            skips, h = self._add_control(skips, h, down_block_additional_residuals, mid_block_additional_residual)
        for block in self.up_blocks:
            h = block(h, skips, temb, encoder_hidden_states)
        return self.conv_out(F.silu(self.conv_norm_out(h)))

    def _add_control(self, skips: list, h: torch.Tensor, down_residuals, mid_residual):
        if down_residuals is None or mid_residual is None:
            raise ValueError("a ControlNet gives both down_block_additional_residuals and mid_block_additional_residual")
        expected = [tuple(skip.shape) for skip in skips] + [tuple(h.shape)]
        given = [tuple(r.shape) for r in down_residuals] + [tuple(mid_residual.shape)]
        if given != expected:
            raise ValueError(f"the ControlNet's residuals do not fit this U-Net (a ControlNet made for another one?): "
                             f"expected {len(skips)} skip residuals and a middle one of shapes {expected}, got {given}")
        return [skip + residual for skip, residual in zip(skips, down_residuals)], h + mid_residual


def widen_conv_in(unet: nn.Module, extra_channels: int, **options) -> nn.Module:
    """A copy of ``unet`` (this U-Net or one of its video forms; ``options`` rebuild its extra arguments) whose
    conv_in takes ``extra_channels`` more input channels, appended after the existing ones with zero weights:
    the copy computes what ``unet`` does whatever the new channels hold, until it is trained. This is how an
    image model learns a new input (SD 2 depth's depth channel, an interpolation network's known frames)."""
    from dataclasses import replace

    if not isinstance(extra_channels, int) or isinstance(extra_channels, bool) or extra_channels < 1:
        raise ValueError(f"extra_channels must be a positive int, got {extra_channels!r}")
    weight = unet.conv_in.weight
    with torch.device("meta"):
        widened = type(unet)(replace(unet.config, in_channels=unet.config.in_channels + extra_channels), **options)
    widened.to_empty(device=weight.device).to(weight.dtype)
    state = dict(unet.state_dict())
    state["conv_in.weight"] = torch.cat([weight.detach(), weight.new_zeros(weight.shape[0], extra_channels,
                                                                           *weight.shape[2:])], dim=1)
    widened.load_state_dict(state, strict=True)
    return widened.train(unet.training)
