"""Stable Diffusion U-Net configurations: the published ones (exact architectures) and the toy world's.

Each full-scale entry reproduces the unet/config.json of the Hugging Face repository named in
``HF_IDS``; tests check the parameter count against diffusers' model built from the same config.
"""

from __future__ import annotations

from dataclasses import replace

from minivdm.models.unet_2d_condition import ATTENTION_DOWN, ATTENTION_UP, PLAIN_DOWN, PLAIN_UP, UNet2DConditionConfig

SD15 = UNet2DConditionConfig(name="sd15")  # the dataclass defaults are SD 1.x
SD14 = replace(SD15, name="sd14")          # same architecture, earlier weights
SD2_DEPTH = replace(
    SD15, name="sd2-depth", in_channels=5,  # 4 latent channels + 1 depth map channel
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
)
# The toy world's text-to-image model: pixel space 32x32, conditioned on the toy CLIP (hidden size 64).
# Attention only at 16x16 and 8x8: at 32x32 it would cost 4x the training time on a CPU.
TINY = UNet2DConditionConfig(
    name="tiny", sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
    down_block_types=(PLAIN_DOWN, ATTENTION_DOWN, ATTENTION_DOWN), up_block_types=(ATTENTION_UP, ATTENTION_UP, PLAIN_UP),
    layers_per_block=1, attention_head_dim=(2, 4, 4), cross_attention_dim=64, norm_num_groups=8,
)

CONFIGS = {config.name: config for config in (SD15, SD14, SD2_DEPTH, TINY)}
HF_IDS = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd14": "CompVis/stable-diffusion-v1-4",
    "sd2-depth": "stabilityai/stable-diffusion-2-depth",
}
