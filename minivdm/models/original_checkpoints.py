"""Stable Diffusion's original single-file checkpoints (CompVis / LDM layout), loaded into our U-Net.

The weights Stability AI and RunwayML published first (``v1-5-pruned-emaonly.safetensors``,
``v2-1_768-ema-pruned.safetensors``, ...) are one file holding the whole latent diffusion model,
in the module names of the ``ldm`` code base (Rombach et al., 2022, arXiv:2112.10752)::

    model.diffusion_model.*   the U-Net          <- the only part read here
    first_stage_model.*       the VAE            (ignored: minivdm takes it from diffusers)
    cond_stage_model.*        the text encoder   (ignored: minivdm takes it from transformers)
    model_ema.*, betas, ...   EMA copies, the noise schedule's buffers (ignored)

Inside ``model.diffusion_model.`` the U-Net is numbered as one flat sequence of blocks, where
diffusers (and minivdm, whose module names are diffusers') group them by resolution level::

    LDM (openaimodel.UNetModel)                  diffusers / minivdm (UNet2DConditionModel)
    time_embed.{0,2}                             time_embedding.linear_{1,2}
    input_blocks.0.0                             conv_in
    input_blocks.i.0  (ResBlock)                 down_blocks.l.resnets.j
    input_blocks.i.1  (SpatialTransformer)       down_blocks.l.attentions.j
    input_blocks.i.0.op  (after each level)      down_blocks.l.downsamplers.0.conv
    middle_block.{0,1,2}                         mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1
    output_blocks.i.0  (ResBlock)                up_blocks.l.resnets.j
    output_blocks.i.1  (SpatialTransformer)      up_blocks.l.attentions.j
    output_blocks.i.{1|2}.conv  (Upsample)       up_blocks.l.upsamplers.0.conv
    out.{0,2}                                    conv_norm_out, conv_out

With ``L = layers_per_block``, level ``l`` of the down path holds ``input_blocks`` ``1 + l (L + 1)``
to ``l (L + 1) + L``, followed by its downsampler (every level but the last); level ``l`` of the up
path holds ``output_blocks`` ``l (L + 1)`` to ``l (L + 1) + L``, and its last block ends with the
upsampler: at position 1 after a ResBlock alone, at position 2 after ResBlock + SpatialTransformer.

Inside a ResBlock the layers are numbered within ``nn.Sequential`` containers (``in_layers`` =
GroupNorm, SiLU, conv; ``out_layers`` = GroupNorm, SiLU, Dropout, conv), hence ``in_layers.2`` for
``conv1``. Inside a SpatialTransformer the names are already diffusers' (``proj_in``,
``transformer_blocks.0.attn1.to_q``, ...), and so are the shapes: SD 1.x projects with 1x1 convs
(4D weights) in both layouts, SD 2.x with ``nn.Linear`` (2D weights, ``use_linear_projection``) in
both, so no tensor is reshaped.

The file holds no config: the caller names the architecture (``minivdm.configs.stable_diffusion``),
the key map is derived from it, and ``load_into`` checks every name and shape before loading.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minivdm.io.checkpoints import MAX_LISTED_KEYS, CheckpointMismatchError, load_into, read_state_dict
from minivdm.models.unet_2d_condition import (
    ATTENTION_DOWN,
    ATTENTION_UP,
    PLAIN_DOWN,
    PLAIN_UP,
    UNet2DConditionConfig,
    UNet2DConditionModel,
)

LDM_UNET_PREFIX = "model.diffusion_model."

# LDM ResBlock: in_layers = [GroupNorm, SiLU, conv], emb_layers = [SiLU, Linear],
# out_layers = [GroupNorm, SiLU, Dropout, conv]; only the layers with weights are listed.
RESNET_LAYERS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
}
# A 1x1 conv on the residual path, present only where the block changes the number of channels.
RESNET_SHORTCUT = {"skip_connection": "conv_shortcut"}

# Parameters of one SpatialTransformer (depth 1), named alike in both layouts.
TRANSFORMER_PARAMETERS = (
    "norm.weight", "norm.bias",
    "proj_in.weight", "proj_in.bias",
    "transformer_blocks.0.norm1.weight", "transformer_blocks.0.norm1.bias",
    "transformer_blocks.0.attn1.to_q.weight", "transformer_blocks.0.attn1.to_k.weight",
    "transformer_blocks.0.attn1.to_v.weight",
    "transformer_blocks.0.attn1.to_out.0.weight", "transformer_blocks.0.attn1.to_out.0.bias",
    "transformer_blocks.0.norm2.weight", "transformer_blocks.0.norm2.bias",
    "transformer_blocks.0.attn2.to_q.weight", "transformer_blocks.0.attn2.to_k.weight",
    "transformer_blocks.0.attn2.to_v.weight",
    "transformer_blocks.0.attn2.to_out.0.weight", "transformer_blocks.0.attn2.to_out.0.bias",
    "transformer_blocks.0.norm3.weight", "transformer_blocks.0.norm3.bias",
    "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.0.proj.bias",
    "transformer_blocks.0.ff.net.2.weight", "transformer_blocks.0.ff.net.2.bias",
    "proj_out.weight", "proj_out.bias",
)


def _layer_keys(ldm: str, ours: str) -> dict[str, str]:
    """weight and bias of one conv, linear or norm layer."""
    return {f"{ldm}.weight": f"{ours}.weight", f"{ldm}.bias": f"{ours}.bias"}


def _resnet_keys(ldm: str, ours: str, with_shortcut: bool) -> dict[str, str]:
    layers = {**RESNET_LAYERS, **RESNET_SHORTCUT} if with_shortcut else RESNET_LAYERS
    keys = {}
    for ldm_layer, our_layer in layers.items():
        keys |= _layer_keys(f"{ldm}.{ldm_layer}", f"{ours}.{our_layer}")
    return keys


def _transformer_keys(ldm: str, ours: str) -> dict[str, str]:
    return {f"{ldm}.{name}": f"{ours}.{name}" for name in TRANSFORMER_PARAMETERS}


def _check_config(config) -> None:
    if not isinstance(config, UNet2DConditionConfig):
        raise TypeError(f"config must be a UNet2DConditionConfig (e.g. minivdm.configs.stable_diffusion.SD15): a "
                        f"single-file checkpoint holds no config, got {type(config).__name__}")
    levels = len(config.block_out_channels)
    if not len(config.down_block_types) == len(config.up_block_types) == levels:
        raise ValueError(f"config needs one down and one up block type per level ({levels} levels), got "
                         f"{config.down_block_types} and {config.up_block_types}")
    known = [ATTENTION_DOWN, PLAIN_DOWN, ATTENTION_UP, PLAIN_UP]
    unknown = set(config.down_block_types + config.up_block_types) - set(known)
    if unknown:
        raise ValueError(f"block types must be among {known}, got {sorted(unknown)}")


def ldm_unet_key_map(config: UNet2DConditionConfig) -> dict[str, str]:
    """Every U-Net key of an LDM-layout checkpoint (without ``model.diffusion_model.``) -> our key.

    Exhaustive for ``config``: its values are exactly the keys of ``UNet2DConditionModel(config).state_dict()``.
    """
    _check_config(config)
    layers, channels = config.layers_per_block, config.block_out_channels
    levels = len(channels)
    key_map = {}
    key_map |= _layer_keys("time_embed.0", "time_embedding.linear_1")
    key_map |= _layer_keys("time_embed.2", "time_embedding.linear_2")
    key_map |= _layer_keys("input_blocks.0.0", "conv_in")

    index = 1  # LDM numbers the down path's blocks consecutively, conv_in being block 0
    for level, block_type in enumerate(config.down_block_types):
        for layer in range(layers):
            # only a level's first ResBlock can change the width (channels[level - 1] -> channels[level])
            widens = layer == 0 and level > 0 and channels[level - 1] != channels[level]
            key_map |= _resnet_keys(f"input_blocks.{index}.0", f"down_blocks.{level}.resnets.{layer}", widens)
            if block_type == ATTENTION_DOWN:
                key_map |= _transformer_keys(f"input_blocks.{index}.1", f"down_blocks.{level}.attentions.{layer}")
            index += 1
        if level < levels - 1:
            key_map |= _layer_keys(f"input_blocks.{index}.0.op", f"down_blocks.{level}.downsamplers.0.conv")
            index += 1

    key_map |= _resnet_keys("middle_block.0", "mid_block.resnets.0", with_shortcut=False)
    key_map |= _transformer_keys("middle_block.1", "mid_block.attentions.0")
    key_map |= _resnet_keys("middle_block.2", "mid_block.resnets.1", with_shortcut=False)

    index = 0
    for level, block_type in enumerate(config.up_block_types):
        with_attention = block_type == ATTENTION_UP
        for layer in range(layers + 1):
            # every up-path ResBlock takes a concatenated skip, so its input is wider than its output
            key_map |= _resnet_keys(f"output_blocks.{index}.0", f"up_blocks.{level}.resnets.{layer}",
                                    with_shortcut=True)
            if with_attention:
                key_map |= _transformer_keys(f"output_blocks.{index}.1", f"up_blocks.{level}.attentions.{layer}")
            if layer == layers and level < levels - 1:
                position = 2 if with_attention else 1  # the upsampler comes after the block's other modules
                key_map |= _layer_keys(f"output_blocks.{index}.{position}.conv", f"up_blocks.{level}.upsamplers.0.conv")
            index += 1

    key_map |= _layer_keys("out.0", "conv_norm_out")
    key_map |= _layer_keys("out.2", "conv_out")
    return key_map


def load_original_unet(path, config: UNet2DConditionConfig, *, dtype: torch.dtype | None = None,
                       device: str | torch.device | None = None, allow_pickle: bool = False) -> UNet2DConditionModel:
    """Build ``UNet2DConditionModel(config)`` on the meta device and fill it from the ``model.diffusion_model.``
    keys of one original (LDM-layout) checkpoint file; every other key of the file is ignored.

    Every U-Net key the map expects must be in the file, and every U-Net key in the file must be
    expected, with the model's shape: otherwise ``CheckpointMismatchError`` names them and nothing
    is loaded. ``.ckpt`` pickles are refused unless ``allow_pickle=True`` (and original ``.ckpt``
    files nest their weights under ``'state_dict'``: convert them to .safetensors first).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; load_original_unet reads one original single-file checkpoint "
                         f"(e.g. v1-5-pruned-emaonly.safetensors). A diffusers folder loads with "
                         f"UNet2DConditionModel.from_pretrained")
    key_map = ldm_unet_key_map(config)
    state_dict = read_state_dict(path, allow_pickle=allow_pickle)
    unet_state = {key.removeprefix(LDM_UNET_PREFIX): tensor for key, tensor in state_dict.items()
                  if key.startswith(LDM_UNET_PREFIX)}
    if not unet_state:
        prefixes = sorted({key.split(".")[0] for key in state_dict})
        raise ValueError(f"{path} holds no U-Net in the original (CompVis/LDM) layout: no key starts with "
                         f"{LDM_UNET_PREFIX!r} (e.g. {LDM_UNET_PREFIX}input_blocks.0.0.weight); its keys start "
                         f"with {prefixes[:MAX_LISTED_KEYS]}. A checkpoint in diffusers' layout (conv_in.weight, "
                         f"down_blocks...) loads with UNet2DConditionModel.from_pretrained")

    with torch.device("meta"):
        model = UNet2DConditionModel(config)
    try:
        # keys the map does not know keep their LDM names, so the report lists them as unexpected
        load_into(model, unet_state, key_map=lambda key: key_map.get(key, key), strict=True, dtype=dtype, device=device)
    except CheckpointMismatchError as error:
        absent = [LDM_UNET_PREFIX + key for key in key_map if key not in unet_state]
        in_file_layout = f"\nmissing from {path.name} in its own layout: {absent[:MAX_LISTED_KEYS]}" if absent else ""
        raise CheckpointMismatchError(f"{error}{in_file_layout}\nThe file's {LDM_UNET_PREFIX}* keys are mapped with "
                                      f"ldm_unet_key_map(config) for config {config.name!r}: check that config "
                                      f"describes the file (SD 2.x: use_linear_projection=True, "
                                      f"cross_attention_dim=1024)") from None
    return model.eval()
