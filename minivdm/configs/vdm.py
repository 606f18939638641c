"""Video Diffusion Models' factorised 3D U-Net (Ho, Salimans et al., 2022, arXiv:2204.03458): the toy world's config.

There is no published VDM checkpoint to reproduce, so only the tiny config exists: RGB clips of
8-16 frames at 32x32, three levels (32, 16, 8 pixels), space-time attention at 16x16 and 8x8, text
from the toy CLIP encoder (hidden size 64). Small enough to train on a CPU.
"""

from __future__ import annotations

from minivdm.models.vdm_unet import VDMUNetConfig

TINY_VDM = VDMUNetConfig(
    name="tiny-vdm", in_channels=3, channels=(32, 64, 64), attention_levels=(False, True, True),
    layers_per_block=1, heads=4, groups=8, cross_attention_dim=64, max_relative_distance=15,
)

CONFIGS = {config.name: config for config in (TINY_VDM,)}
