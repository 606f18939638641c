r"""Tune-A-Video's inflated U-Net (Wu et al., 2023, arXiv:2212.11565, Sec. 4.1): a text-to-image U-Net
that takes a video, with every layer of the image model kept and two changes in each transformer block.

    z (B, C, T, H, W) -> frames ((B T), C, H, W): each 2D conv, ResNet and norm runs on each frame
    (the paper's 3x3 -> 1x3x3 inflation), then in every transformer block:

        h = h + ST-Attn(LN(h))            frame i attends to frames 1 and i-1  (was: to itself)
        h = h + CrossAttn(LN(h), text)    unchanged, per frame
        h = h + FF(LN(h))                 unchanged
        h = h + T-Attn(LN_temp(h))        new: each pixel's token attends over the T frames

ST-Attn is ``minivdm.nn.sparse_causal_attention``. T-Attn is plain self-attention over time (no
positional embedding, as in the paper's code); its output projection starts at zero, so a freshly
inflated model adds nothing through it. On a video whose frames are all the same, ST-Attn is
self-attention too (see its module), so the inflated model then equals the image model on that frame;
and frame 1 of any video only ever attends to itself, so its output is the image model's.

One-shot tuning (Sec. 4.2) trains only what the paper names: the whole T-Attn, and the query
projections W^Q of ST-Attn and of cross-attention (``TRAINABLE_MODULES``, the official code's
``trainable_modules``). The keys and values stay the image model's, so what a frame *reads* is still
the image model's features; the queries learn *where* to look in frames 1 and i-1 and in the text.
``LN_temp`` stays frozen at its identity init, as in the official code (its name does not end in
``attn_temp``).

Parameter names are the official repository's (showlab/Tune-A-Video): the image U-Net's diffusers
names, plus ``transformer_blocks.0.attn_temp.*`` and ``transformer_blocks.0.norm_temp.*``; a published
Tune-A-Video U-Net folder (``_class_name`` "UNet3DConditionModel" with "CrossAttnDownBlock3D" ...
block types) loads key for key through ``TuneAVideoUNet.from_pretrained``. Two differences from that
code, both deliberate: its GroupNorms (in the ResNets and before ``conv_out``) take statistics over all
frames of the video, ours over each frame as the image model did (so the inflated model *is* the image
model on a still video); and it zero-initialises only T-Attn's output weight, leaving a random bias,
where we zero both (so T-Attn starts as the identity, as the paper says).
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from minivdm.models.unet_2d_condition import (ATTENTION_DOWN, ATTENTION_UP, PLAIN_DOWN, PLAIN_UP,
                                              UNet2DConditionConfig, UNet2DConditionModel)
from minivdm.models.inflated_unet import InflatedVideoUNet
from minivdm.nn.attention import Attention
from minivdm.nn.frames import FrameAware
from minivdm.nn.sparse_causal_attention import SparseCausalAttention
from minivdm.nn.transformer_2d import BasicTransformerBlock, Transformer2DModel

TEMPORAL_PARAMETERS = ("attn_temp", "norm_temp")  # what inflation adds to the image model
TRAINABLE_MODULES = ("attn1.to_q", "attn2.to_q", "attn_temp")  # Sec. 4.2: T-Attn, W^Q of ST-Attn and Cross-Attn
# the official code's block names for the same layers (a Tune-A-Video config.json names these)
OFFICIAL_BLOCK_TYPES = {"CrossAttnDownBlock3D": ATTENTION_DOWN, "DownBlock3D": PLAIN_DOWN,
                        "CrossAttnUpBlock3D": ATTENTION_UP, "UpBlock3D": PLAIN_UP}
OFFICIAL_MID_BLOCK = ("UNetMidBlock3DCrossAttn", "UNetMidBlock2DCrossAttn")


class SpatioTemporalTransformerBlock(FrameAware, BasicTransformerBlock):
    """The image model's transformer block with ST-Attn in place of self-attention and T-Attn after the
    feed-forward. ``num_frames`` is set by ``TuneAVideoUNet.forward`` for each call."""

    def __init__(self, dim: int, heads: int, dim_head: int, cross_attention_dim: int | None,
                 upcast_attention: bool = False, sparse_causal: bool = True):
        super().__init__(dim, heads, dim_head, cross_attention_dim, upcast_attention)
        self.attn1 = SparseCausalAttention(dim, heads, dim_head, upcast=upcast_attention, sparse_causal=sparse_causal)
        self.norm_temp = nn.LayerNorm(dim)
        self.attn_temp = Attention(dim, heads, dim_head, upcast=upcast_attention)
        self.reset_temporal_to_identity()
        self.gradient_checkpointing = False

    def reset_temporal_to_identity(self) -> None:
        """T-Attn as a freshly inflated model has it: LN_temp the identity, the output projection zero."""
        self.norm_temp.reset_parameters()
        for linear in (self.attn_temp.to_q, self.attn_temp.to_k, self.attn_temp.to_v, self.attn_temp.to_out[0]):
            linear.reset_parameters()
        nn.init.zeros_(self.attn_temp.to_out[0].weight)
        nn.init.zeros_(self.attn_temp.to_out[0].bias)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        num_frames = self.frames(x.shape[0])
        if self.gradient_checkpointing and torch.is_grad_enabled():
            # num_frames is an argument, so the recomputation in the backward pass sees this call's value
            return checkpoint(self.space_time, x, context, num_frames, use_reentrant=False)
        return self.space_time(x, context, num_frames)

    def space_time(self, x: torch.Tensor, context: torch.Tensor | None, num_frames: int) -> torch.Tensor:
        x = self.attn1(self.norm1(x), num_frames=num_frames) + x  # ST-Attn: frames 1 and i-1
        x = self.attn2(self.norm2(x), context) + x  # cross-attention to the text, each frame
        x = self.ff(self.norm3(x)) + x
        pixels = x.shape[1]
        tokens = rearrange(x, "(b f) n d -> (b n) f d", f=num_frames)  # one sequence over time per pixel
        tokens = self.attn_temp(self.norm_temp(tokens)) + tokens  # T-Attn
        return rearrange(tokens, "(b n) f d -> (b f) n d", n=pixels)


def _inflate_transformer(transformer: Transformer2DModel, sparse_causal: bool) -> None:
    for index, block in enumerate(transformer.transformer_blocks):
        heads, inner = block.attn1.heads, block.attn1.to_q.out_features
        transformer.transformer_blocks[index] = SpatioTemporalTransformerBlock(
            inner, heads, inner // heads, block.attn2.to_k.in_features, block.attn1.upcast, sparse_causal)


class TuneAVideoUNet(InflatedVideoUNet):
    """``model(z, timestep, text)``: z (B, C, T, H, W), timestep a number or (B,), text (B, L, D), one
    caption per video -> the prediction (B, C, T, H, W). The 2D U-Net's forward runs on the frames."""

    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig(), *, sparse_causal: bool = True):
        super().__init__(config)
        self.sparse_causal = sparse_causal
        for module in list(self.modules()):
            if isinstance(module, Transformer2DModel):
                _inflate_transformer(module, sparse_causal)

    def is_new(self, name: str) -> bool:
        return any(f".{part}." in name for part in TEMPORAL_PARAMETERS)

    def spatio_temporal_blocks(self) -> list[SpatioTemporalTransformerBlock]:
        return [module for module in self.modules() if isinstance(module, SpatioTemporalTransformerBlock)]

    def enable_gradient_checkpointing(self, enabled: bool = True) -> "TuneAVideoUNet":
        """Recompute each transformer block in the backward pass instead of keeping its activations
        (attention over 2 n keys per frame dominates a tuning step's memory at full size)."""
        for block in self.spatio_temporal_blocks():
            block.gradient_checkpointing = enabled
        return self

    @classmethod
    def from_pretrained(cls, path, subfolder: str | None = "unet", *, sparse_causal: bool = True,
                        dtype: torch.dtype | None = None, device=None, allow_pickle: bool = False) -> "TuneAVideoUNet":
        """A Tune-A-Video U-Net folder in the official layout (config.json of "UNet3DConditionModel" with its
        3D block names; every weight, temporal ones included, checked by name and shape), or a plain image
        U-Net folder ("UNet2DConditionModel"), which is inflated (``inflate_for_tune_a_video``)."""
        from minivdm.io.checkpoints import load_into, read_component

        path = Path(path)
        if subfolder is not None and not (path / subfolder).is_dir():
            subfolder = None  # ``path`` is the U-Net folder itself
        config_dict, state_dict = read_component(path, subfolder, allow_pickle=allow_pickle)
        if config_dict.get("_class_name") == "UNet2DConditionModel":
            config = UNet2DConditionConfig.from_diffusers(config_dict, name=str(path))
            with torch.device("meta"):
                image_unet = UNet2DConditionModel(config)
            load_into(image_unet, state_dict, key_map=None, strict=True, dtype=dtype, device=device)
            return inflate_for_tune_a_video(image_unet.eval(), sparse_causal=sparse_causal)
        config = UNet2DConditionConfig.from_diffusers(official_config_as_2d(config_dict), name=str(path))
        with torch.device("meta"):
            model = cls(config, sparse_causal=sparse_causal)
        load_into(model, state_dict, key_map=None, strict=True, dtype=dtype, device=device)
        return model.eval()


def official_config_as_2d(config: dict) -> dict:
    """The official Tune-A-Video config.json with its 3D block names read as the 2D blocks they inflate
    (the layers and their weights are the same); anything else is left for the 2D config to check."""
    if not isinstance(config, dict):
        raise TypeError(f"a U-Net config must be a dict (config.json), got {type(config).__name__}")
    if config.get("_class_name") != "UNet3DConditionModel":
        raise ValueError(f"expected a Tune-A-Video U-Net config (_class_name 'UNet3DConditionModel'), got "
                         f"_class_name={config.get('_class_name')!r}")
    translated = {**config, "_class_name": "UNet2DConditionModel"}
    for key in ("down_block_types", "up_block_types"):
        unknown = [name for name in config.get(key, ()) if name not in OFFICIAL_BLOCK_TYPES]
        if unknown:
            raise ValueError(f"config has {key} with {unknown}: not a Tune-A-Video block (expected among "
                             f"{sorted(OFFICIAL_BLOCK_TYPES)})")
        if key in config:
            translated[key] = [OFFICIAL_BLOCK_TYPES[name] for name in config[key]]
    if "mid_block_type" in config:
        if config["mid_block_type"] not in OFFICIAL_MID_BLOCK:
            raise ValueError(f"config has mid_block_type={config['mid_block_type']!r}; expected one of {OFFICIAL_MID_BLOCK}")
        translated["mid_block_type"] = "UNetMidBlock2DCrossAttn"
    return translated


def official_config(config: UNet2DConditionConfig) -> dict:
    """Our config as the official code's config.json (3D block names), e.g. for a saved tuned U-Net."""
    to_3d = {two: three for three, two in OFFICIAL_BLOCK_TYPES.items()}
    values = config.to_diffusers()
    return {**values, "_class_name": "UNet3DConditionModel", "mid_block_type": OFFICIAL_MID_BLOCK[0],
            "down_block_types": [to_3d[name] for name in values["down_block_types"]],
            "up_block_types": [to_3d[name] for name in values["up_block_types"]]}


def inflate_for_tune_a_video(unet: UNet2DConditionModel, *, sparse_causal: bool = True) -> TuneAVideoUNet:
    """A video U-Net holding a copy of ``unet``'s weights, ST-Attn in every transformer block (or plain
    per-frame attention, ``sparse_causal=False``) and a zero-output T-Attn after each; same device and dtype."""
    return TuneAVideoUNet.inflate(unet, sparse_causal=sparse_causal)


def tuned_parameter_names(model: nn.Module, modules: tuple[str, ...] = TRAINABLE_MODULES) -> list[str]:
    """Names of the parameters inside the modules whose name ends with one of ``modules``."""
    if not any(isinstance(module, SpatioTemporalTransformerBlock) for module in model.modules()):
        raise TypeError(f"{type(model).__name__} has no Tune-A-Video blocks: inflate the image U-Net first "
                        f"(inflate_for_tune_a_video)")
    return [f"{name}.{parameter_name}" for name, module in model.named_modules() if name.endswith(tuple(modules))
            for parameter_name, _ in module.named_parameters()]


def select_trainable(model: nn.Module, modules: tuple[str, ...] = TRAINABLE_MODULES) -> list[str]:
    """Freeze ``model`` except the modules whose name ends with one of ``modules`` (the paper's set by
    default); return the names of the parameters left trainable."""
    names = set(tuned_parameter_names(model, modules))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]
