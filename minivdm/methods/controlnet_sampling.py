"""Sampling Stable Diffusion under a ControlNet (Zhang et al., 2023, arXiv:2302.05543): at every step the
ControlNet reads z_t, t, the prompt and the control image, and its residuals go into the U-Net's skips and
middle (``minivdm.models.controlnet``). Classifier-free guidance runs both branches with the control: guidance
removes the prompt, not the structure. Reproduces diffusers' ``StableDiffusionControlNetPipeline`` (tests).
"""

from __future__ import annotations

import torch
from torch import nn

from minivdm.methods.text_to_image import SamplerSettings, encode_prompts, latent_size, sample_latents
from minivdm.models.controlnet import ControlNetModel
from minivdm.models.unet_2d_condition import UNet2DConditionModel


class ControlledUNet(nn.Module):
    """``unet(z, timestep, context)`` with the ControlNet's residuals of a fixed control image (B, C_c, H, W)
    added; a batch of 2B (classifier-free guidance's [unconditional; conditional]) uses the control twice."""

    def __init__(self, unet: UNet2DConditionModel, controlnet: ControlNetModel, control: torch.Tensor,
                 conditioning_scale: float = 1.0):
        super().__init__()
        if controlnet.config.in_channels != unet.config.in_channels or \
                controlnet.config.block_out_channels != unet.config.block_out_channels:
            raise ValueError(f"this ControlNet was made for another U-Net: its in_channels / block_out_channels are "
                             f"{controlnet.config.in_channels} / {controlnet.config.block_out_channels}, the U-Net's "
                             f"{unet.config.in_channels} / {unet.config.block_out_channels}")
        self.unet, self.controlnet, self.control, self.conditioning_scale = unet, controlnet, control, conditioning_scale
        self.config, self.conv_in = unet.config, unet.conv_in  # what the samplers read off a U-Net

    def forward(self, z: torch.Tensor, timestep, context: torch.Tensor) -> torch.Tensor:
        control = self.control
        if z.shape[0] == 2 * control.shape[0]:
            control = torch.cat([control, control])
        down, mid = self.controlnet(z, timestep, context, control.to(z), conditioning_scale=self.conditioning_scale)
        return self.unet(z, timestep, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)


@torch.no_grad()
def controlnet_latents(unet: UNet2DConditionModel, controlnet: ControlNetModel, vae, text_encoder, tokenizer,
                       settings: SamplerSettings, prompts: list[str], control: torch.Tensor, *,
                       conditioning_scale: float = 1.0, negative_prompt: str = "", num_steps: int = 50,
                       guidance_scale: float = 7.5, generator: torch.Generator | None = None,
                       progress: bool = False) -> torch.Tensor:
    """Latents (B, C, h, w) of images that follow ``control`` (B, C_c, H, W) in [0, 1] (edges, depth ...) at
    the output size H x W, one per prompt."""
    if control.ndim != 4 or control.shape[0] != len(prompts):
        raise ValueError(f"control must be (B, C, H, W) with one image per prompt (B = {len(prompts)}), "
                         f"got {tuple(control.shape)}")
    if control.min() < 0 or control.max() > 1:
        raise ValueError("control images must lie in [0, 1] (as diffusers' ControlNet pipelines feed them)")
    h, w = latent_size(unet, vae, control.shape[-2], control.shape[-1])
    dtype = unet.conv_in.weight.dtype
    condition = encode_prompts(tokenizer, text_encoder, prompts).to(dtype)
    null_condition = encode_prompts(tokenizer, text_encoder, [negative_prompt] * len(prompts)).to(dtype)
    controlled = ControlledUNet(unet, controlnet, control.to(device=unet.conv_in.weight.device, dtype=dtype),
                                conditioning_scale)
    return sample_latents(controlled, settings, condition, null_condition, (len(prompts), unet.config.in_channels, h, w),
                          num_steps=num_steps, guidance_scale=guidance_scale, generator=generator, progress=progress)
