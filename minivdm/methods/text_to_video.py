r"""Latent text-to-video sampling with ModelScope's 3D U-Net (Wang et al., 2023, "ModelScope Text-to-Video
Technical Report", arXiv:2308.06571).

It is Stable Diffusion's loop (``minivdm.methods.text_to_image``) with one more axis. The noise is a
whole clip of latents, denoised jointly, so the temporal layers of the U-Net can make the frames
agree; the VAE is the image VAE, applied to each frame on its own:

    c = CLIP(prompt),   z_T ~ N(0, I) of shape (B, 4, T, H/8, W/8)
    for t in T ... 1:   eps_hat = eps(z_t, t, empty) + w (eps(z_t, t, c) - eps(z_t, t, empty))
                        z_{t-1} = DDIM(z_t, eps_hat)
    video[:, :, f] = VAE.decode(z_0[:, :, f] / scaling_factor)      for every frame f

With the same components and seed this reproduces diffusers' ``TextToVideoSDPipeline`` (tested on tiny
random components in the published folder layout). AnimateDiff runs the same loop with its U-Net (Stable
Diffusion's, plus a motion adapter: ``minivdm.models.animatediff_unet``) and reproduces ``AnimateDiffPipeline``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange

from minivdm.methods.text_to_image import SamplerSettings, encode_prompts, latent_size, load_components, sample_latents
from minivdm.models.animatediff_unet import AnimateDiffUNet
from minivdm.models.unet_3d_condition import UNet3DConditionModel
from minivdm.validation import check_positive_int


@torch.no_grad()
def decode_frames(vae, latents: torch.Tensor, frames_per_batch: int = 16) -> torch.Tensor:
    """(B, 4, T, h, w) latents -> (B, 3, T, H, W) video in [-1, 1], decoding a few frames at a time."""
    batch = latents.shape[0]
    frames = rearrange(latents / vae.config.scaling_factor, "b c t h w -> (b t) c h w")
    # the image VAE sees frames as a batch; chunks bound its memory on long clips
    decoded = torch.cat([vae.decode(chunk).sample for chunk in frames.split(frames_per_batch)])
    return rearrange(decoded.float(), "(b t) c h w -> b c t h w", b=batch)


@torch.no_grad()
def text_to_video(unet: UNet3DConditionModel, vae, text_encoder, tokenizer, settings: SamplerSettings,
                  prompts: list[str], *, num_frames: int = 16, negative_prompt: str = "", num_steps: int = 50,
                  guidance_scale: float = 9.0, height: int | None = None, width: int | None = None,
                  generator: torch.Generator | None = None, progress: bool = True) -> torch.Tensor:
    """Videos (B, 3, T, H, W) in [-1, 1] for a list of prompts (ModelScope's defaults: 16 frames, 256x256)."""
    if not isinstance(unet, (UNet3DConditionModel, AnimateDiffUNet)):
        raise TypeError(f"unet must be a video U-Net (minivdm's UNet3DConditionModel or AnimateDiffUNet), got "
                        f"{type(unet).__name__}")
    check_positive_int(num_frames, "num_frames")
    if isinstance(unet, AnimateDiffUNet) and num_frames > unet.adapter_config.motion_max_seq_length:
        raise ValueError(f"num_frames={num_frames}: this motion adapter encodes at most "
                         f"{unet.adapter_config.motion_max_seq_length} frames (motion_max_seq_length)")
    h, w = latent_size(unet, vae, height, width)
    dtype = unet.conv_in.weight.dtype
    condition = encode_prompts(tokenizer, text_encoder, prompts).to(dtype)
    null_condition = encode_prompts(tokenizer, text_encoder, [negative_prompt] * len(prompts)).to(dtype)
    shape = (len(prompts), unet.config.in_channels, num_frames, h, w)
    latents = sample_latents(unet, settings, condition, null_condition, shape, num_steps=num_steps,
                             guidance_scale=guidance_scale, generator=generator, progress=progress)
    return decode_frames(vae, latents).clamp(-1, 1)


def load_video_components(folder: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"):
    """(unet, vae, text_encoder, tokenizer, settings) of a ModelScope-layout pipeline folder; our 3D U-Net."""
    return load_components(folder, dtype=dtype, device=device, unet_class=UNet3DConditionModel)


def load_animatediff_components(folder: str | Path, motion_adapter: str | Path, *, dtype: torch.dtype | None = None,
                                device: str | torch.device = "cpu"):
    """(unet, vae, text_encoder, tokenizer, settings): a Stable Diffusion pipeline folder whose U-Net gets the motion
    modules of ``motion_adapter`` (a diffusers ``MotionAdapter`` folder), every key of both checked."""
    def load_unet(root, unet_dtype, unet_device):
        return AnimateDiffUNet.from_pretrained(root, motion_adapter, dtype=unet_dtype, device=unet_device)

    return load_components(folder, dtype=dtype, device=device, load_unet=load_unet)
