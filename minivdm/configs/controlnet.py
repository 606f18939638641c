"""ControlNet configurations: SD 1.5's published ControlNets and the toy world's.

The canny and depth ControlNets of SD 1.5 share one architecture (the SD 1.5 U-Net's encoder, a 3-channel control
image: edges, or depth repeated to RGB); each reproduces the controlnet config.json of the repository named in
``HF_IDS``, and tests check it against diffusers' ControlNetModel built from the same config on the meta device.
"""

from __future__ import annotations

from dataclasses import replace

from minivdm.configs.stable_diffusion import SD15, TINY
from minivdm.models.controlnet import ControlNetConfig

CONTROLNET_SD15_CANNY = ControlNetConfig.for_unet(SD15, name="controlnet-sd15-canny")
CONTROLNET_SD15_DEPTH = replace(CONTROLNET_SD15_CANNY, name="controlnet-sd15-depth")
# The toy world: the toy U-Net's encoder; the control is a one-channel edge map at the pixel grid itself
# (32x32), so the conditioning embedding has no stride-2 step (one level).
CONTROLNET_TINY = ControlNetConfig.for_unet(TINY, name="controlnet-tiny", conditioning_channels=1,
                                          conditioning_embedding_out_channels=(16,))

CONFIGS = {config.name: config for config in (CONTROLNET_SD15_CANNY, CONTROLNET_SD15_DEPTH, CONTROLNET_TINY)}
HF_IDS = {
    "controlnet-sd15-canny": "lllyasviel/sd-controlnet-canny",
    "controlnet-sd15-depth": "lllyasviel/sd-controlnet-depth",
}
