r"""Gen-1's video U-Net (Esser et al., 2023, arXiv:2302.03011, Sec. 3): a latent diffusion model of
p(x | s, c), a video x given its structure s (depth maps) and its content c (a CLIP image embedding).

    eps_theta(z_t, t, s, c) = U-Net( [z_t ; s],  t,  cross-attention to c )

* **structure** s (B, S, T, H, W) is concatenated to the noisy latent z_t (B, C, T, H, W) on the channel axis:
  the first convolution reads C + S channels, so every pixel of every frame sees the depth at that place.
* **content** c (B, N, D) enters where a text model's caption would: the keys and values of every
  cross-attention layer. Gen-1 gives one token, the CLIP image embedding of a frame.
* **time**: a 1D temporal convolution after every 2D convolution of a residual block and a 1D temporal
  attention after every 2D spatial attention, the pseudo-3D layers of ``minivdm.models.make_a_video_unet``
  (which this class extends), each starting as the identity.

An image U-Net with C + S input channels (Stable Diffusion 2 depth: 4 latent + 1 depth) inflates into this
class with every weight kept (``Gen1UNet.inflate``), so SD 2 depth's weights fill the spatial layers; an
image U-Net of C channels first gains S zero-weight input channels (``with_structure_channels``).
"""

from __future__ import annotations

import torch

from minivdm.models.make_a_video_unet import MakeAVideoUNet
from minivdm.models.unet_2d_condition import UNet2DConditionModel, widen_conv_in
from minivdm.validation import check_tensor, check_video


class Gen1UNet(MakeAVideoUNet):
    """``model(z_t, timestep, content, structure)`` -> the prediction (B, C, T, H, W). C = ``out_channels``,
    S = ``in_channels - out_channels`` structure channels, D = ``cross_attention_dim``."""

    @property
    def structure_channels(self) -> int:
        return self.config.in_channels - self.config.out_channels

    def forward(self, z_t: torch.Tensor, timestep, content: torch.Tensor, structure: torch.Tensor) -> torch.Tensor:
        check_video(z_t, "z_t")
        check_video(structure, "structure")
        check_tensor(content, "content", ndim=3, layout="(B, N, D), N content tokens", floating=True)
        batch, channels, frames, height, width = z_t.shape
        if channels != self.config.out_channels:
            raise ValueError(f"z_t must be (B, C, T, H, W) with C = {self.config.out_channels}, got {tuple(z_t.shape)}")
        expected = (batch, self.structure_channels, frames, height, width)
        if tuple(structure.shape) != expected:
            raise ValueError(f"structure must be (B, S, T, H, W) = {expected}, one depth map per frame of z_t at its "
                             f"size, got {tuple(structure.shape)}")
        if content.shape[0] != batch or content.shape[2] != self.config.cross_attention_dim:
            raise ValueError(f"content must be (B, N, D) with B = {batch} and D = {self.config.cross_attention_dim} "
                             f"(the CLIP image embedding's width), got {tuple(content.shape)}")
        return super().forward(torch.cat([z_t, structure.to(z_t.dtype)], dim=1), timestep, content)


def with_structure_channels(image_unet: UNet2DConditionModel, structure_channels: int = 1) -> UNet2DConditionModel:
    """An image U-Net that also reads ``structure_channels`` channels after its C latent ones, their weights zero:
    the same model until trained (the way SD 2 depth grew its depth channel from SD 2)."""
    if type(image_unet) is not UNet2DConditionModel:
        raise TypeError(f"with_structure_channels takes an image U-Net (UNet2DConditionModel), got "
                        f"{type(image_unet).__name__}")
    return widen_conv_in(image_unet, structure_channels)
