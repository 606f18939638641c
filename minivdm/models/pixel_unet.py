r"""A small pixel-space U-Net denoiser f_theta(z_t, t) for the toy world (chapter 1).

U-Net: Ronneberger et al., 2015; as a diffusion denoiser: Ho et al., DDPM, 2020 (arXiv:2006.11239).
Input z_t (B, C, H, W) and continuous t in [0, 1] (B,); output a prediction of the same shape (eps,
x0 or v, whichever the model was trained for). A video (B, C, T, H, W) is denoised frame by frame:
this model has no temporal layers (the 3D U-Net chapter adds them).

    encoder: ResBlock per level, Downsample between levels
    middle:  two ResBlocks at the lowest resolution
    decoder: Upsample, concatenate the encoder's skip, ResBlock
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from minivdm.nn import Downsample2D, ResnetBlock2D, TimestepEmbedding, Upsample2D, timestep_embedding
from minivdm.validation import check_image_or_video, check_matches_weights, check_tensor


@dataclass(frozen=True)
class PixelUNetConfig:
    name: str = "tiny"
    in_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 64)  # one entry per resolution level
    groups: int = 8
    time_scale: float = 1000.0  # t in [0, 1] is embedded as t * 1000, the range the sinusoids are built for
    prediction_type: str = "v"
    extra: dict = field(default_factory=dict)  # free-form notes saved with a checkpoint


class PixelUNet(nn.Module):
    def __init__(self, config: PixelUNetConfig = PixelUNetConfig()):
        super().__init__()
        self.config = config
        channels, groups = config.channels, config.groups
        temb_channels = 4 * channels[0]
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            self.down_blocks.append(ResnetBlock2D(previous, width, temb_channels, groups))
            is_last = level == len(channels) - 1
            self.downsamplers.append(nn.Identity() if is_last else Downsample2D(width))
            previous = width

        self.mid_blocks = nn.ModuleList([ResnetBlock2D(previous, previous, temb_channels, groups) for _ in range(2)])

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            self.up_blocks.append(ResnetBlock2D(previous + width, width, temb_channels, groups))
            self.upsamplers.append(nn.Identity() if level == 0 else Upsample2D(width))
            previous = width

        self.norm_out = nn.GroupNorm(groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], config.in_channels, 3, padding=1)
        # zero-init the output so the untrained model predicts 0, a neutral start for every parameterization
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_image_or_video(z_t, "z_t")
        check_tensor(t, "t", ndim=1, layout="(B,)", floating=True)
        if z_t.shape[1] != self.config.in_channels:
            raise ValueError(f"z_t must have {self.config.in_channels} channels (dim 1), got shape {tuple(z_t.shape)}")
        if t.shape[0] != z_t.shape[0]:
            raise ValueError(f"t must hold one time per batch item ({z_t.shape[0]}), got {t.shape[0]}")
        if not torch.isfinite(t).all():
            raise ValueError(f"t must be finite times in [0, 1], got {t.tolist()}")
        check_matches_weights(z_t, "z_t", self.conv_in.weight)
        levels = len(self.config.channels) - 1
        if z_t.shape[-1] % 2**levels or z_t.shape[-2] % 2**levels:
            raise ValueError(f"H and W must be divisible by {2**levels}, got {tuple(z_t.shape[-2:])}")
        if z_t.ndim == 5:  # a video: every frame is an independent image for this model
            frames = z_t.shape[2]
            images = rearrange(z_t, "b c t h w -> (b t) c h w")
            out = self.forward(images, t.repeat_interleave(frames))
            return rearrange(out, "(b t) c h w -> b c t h w", t=frames)

        temb = self.time_embedding(timestep_embedding(t * self.config.time_scale, self.config.channels[0]))
        h = self.conv_in(z_t)
        skips = []
        for block, down in zip(self.down_blocks, self.downsamplers):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        for block in self.mid_blocks:
            h = block(h, temb)
        for block, up in zip(self.up_blocks, self.upsamplers):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            h = up(h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
