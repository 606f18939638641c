r"""AnimateDiff (Guo et al., 2023, arXiv:2307.04725): Stable Diffusion's U-Net, frozen, with a motion module
(``minivdm.nn.motion_module``) after each of its layers; the motion modules are trained once on video and
shipped on their own as a "motion adapter" that plugs into any image model of the same base.

    down and up blocks:  ResNet -> spatial transformer -> motion module      (per layer)
    middle block:        ResNet -> spatial transformer -> motion module -> ResNet

It is Video LDM's idea (temporal layers on a frozen image model, ``minivdm.models.video_ldm_unet``) at full
scale, without the learned merge: each motion module is residual, and starts as the identity.

A motion adapter folder is diffusers' ``MotionAdapter`` layout (config.json + weights); its keys
(``down_blocks.0.motion_modules.0.*``, ``mid_block.motion_modules.0.*``, ``up_blocks.3.motion_modules.2.*``)
are the ones the assembled model uses, which is also diffusers' ``UNetMotionModel`` layout: an image U-Net
folder plus an adapter folder load into ``AnimateDiffUNet`` with every key checked.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from minivdm.models.diffusers_format import config_from_diffusers, config_to_diffusers
from minivdm.models.inflated_unet import InflatedVideoUNet
from minivdm.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel
from minivdm.nn.motion_module import MotionModule

MOTION_MODULES = ".motion_modules."
# MotionAdapter options at the one value implemented here (the published SD 1.5 adapters use these)
ADAPTER_FIXED_OPTIONS = {"conv_in_channels": None, "motion_mid_block_layers_per_block": 1}


@dataclass(frozen=True)
class MotionAdapterConfig:
    """Field names are diffusers' ``MotionAdapter`` config.json keys. Defaults: the published SD 1.5 v2 adapter."""

    name: str = "animatediff"
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    motion_layers_per_block: int = 2
    motion_transformer_layers_per_block: int = 1
    motion_transformer_layers_per_mid_block: int = 1
    motion_num_attention_heads: int = 8
    motion_norm_num_groups: int = 32
    motion_max_seq_length: int = 32
    use_motion_mid_block: bool = True

    @classmethod
    def from_diffusers(cls, config: dict, name: str = "loaded") -> "MotionAdapterConfig":
        return config_from_diffusers(cls, config, name=name, class_name="MotionAdapter", fixed=ADAPTER_FIXED_OPTIONS,
                                     per_block_ints=("motion_layers_per_block", "motion_transformer_layers_per_block",
                                                     "motion_transformer_layers_per_mid_block",
                                                     "motion_num_attention_heads"))

    def to_diffusers(self) -> dict:
        return config_to_diffusers(self, "MotionAdapter")


def _motion_modules(channels: int, layers: int, transformer_layers: int, adapter: MotionAdapterConfig) -> nn.ModuleList:
    return nn.ModuleList([MotionModule(channels, adapter.motion_num_attention_heads, transformer_layers,
                                       adapter.motion_norm_num_groups, adapter.motion_max_seq_length)
                          for _ in range(layers)])


class AnimateDiffUNet(InflatedVideoUNet):
    """``model(z, timestep, text)``: z (B, C, T, H, W), T <= motion_max_seq_length -> (B, C, T, H, W)."""

    def __init__(self, config: UNet2DConditionConfig = UNet2DConditionConfig(),
                 adapter: MotionAdapterConfig = MotionAdapterConfig()):
        super().__init__(config)
        if tuple(adapter.block_out_channels) != tuple(config.block_out_channels):
            raise ValueError(f"the motion adapter was made for a U-Net with block_out_channels "
                             f"{adapter.block_out_channels}, this one has {config.block_out_channels}")
        if adapter.motion_layers_per_block != config.layers_per_block:
            raise ValueError(f"the motion adapter has {adapter.motion_layers_per_block} motion modules per block, the "
                             f"U-Net {config.layers_per_block} layers per block: they must match")
        self.adapter_config = adapter
        channels = config.block_out_channels
        for level, block in enumerate(self.down_blocks):
            block.motion_modules = _motion_modules(channels[level], len(block.resnets),
                                                   adapter.motion_transformer_layers_per_block, adapter)
        if adapter.use_motion_mid_block:
            self.mid_block.motion_modules = _motion_modules(channels[-1], 1, adapter.motion_transformer_layers_per_mid_block,
                                                            adapter)
        for level, block in enumerate(self.up_blocks):
            block.motion_modules = _motion_modules(channels[::-1][level], len(block.resnets),
                                                   adapter.motion_transformer_layers_per_block, adapter)
        self.reset_temporal_to_identity()

    def is_new(self, name: str) -> bool:
        return MOTION_MODULES in name

    @classmethod
    def inflate(cls, unet: UNet2DConditionModel, adapter: MotionAdapterConfig | None = None) -> "AnimateDiffUNet":
        """``unet`` with fresh motion modules (the identity): what AnimateDiff trains."""
        adapter = adapter or replace(MotionAdapterConfig(), block_out_channels=unet.config.block_out_channels,
                                     motion_layers_per_block=unet.config.layers_per_block)
        return super().inflate(unet, adapter=adapter)

    def motion_adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """The motion modules' weights under the adapter's own names (what an adapter file holds)."""
        return {name: tensor for name, tensor in self.state_dict().items() if self.is_new(name)}

    @classmethod
    def from_pretrained(cls, unet_path, adapter_path, *, unet_subfolder: str | None = "unet",
                        dtype: torch.dtype | None = None, device=None, allow_pickle: bool = False) -> "AnimateDiffUNet":
        """An image U-Net folder (diffusers layout; a pipeline folder with ``unet/`` works too) and a motion adapter
        folder (diffusers' ``MotionAdapter``), every key of both checked by name and shape."""
        from minivdm.io.checkpoints import load_into, read_component

        unet_path, adapter_path = Path(unet_path), Path(adapter_path)
        if unet_subfolder is not None and not (unet_path / unet_subfolder).is_dir():
            unet_subfolder = None
        unet_config, unet_state = read_component(unet_path, unet_subfolder, allow_pickle=allow_pickle)
        adapter_config, adapter_state = read_component(adapter_path, None, allow_pickle=allow_pickle)
        config = UNet2DConditionConfig.from_diffusers(unet_config, name=str(unet_path))
        adapter = MotionAdapterConfig.from_diffusers(adapter_config, name=str(adapter_path))
        not_motion = sorted(key for key in adapter_state if MOTION_MODULES not in key)
        if not_motion:
            raise ValueError(f"{adapter_path} holds weights that are not motion modules: {not_motion[:5]}")
        with torch.device("meta"):
            model = cls(config, adapter)
        load_into(model, {**unet_state, **adapter_state}, strict=True, dtype=dtype, device=device)
        return model.eval()
