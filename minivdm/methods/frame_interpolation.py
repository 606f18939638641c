r"""Masked frame interpolation (Make-A-Video, Singer et al., 2022, arXiv:2209.14792, Sec. 3.2, "Frame
interpolation network"): the video model, given a few known frames, generates the frames between them.

The video U-Net's input is widened from the noisy clip z_t (C channels) to three parts:

    input = [ z_t ;  x * m ;  m ]       x * m: the known frames in place, zeros elsewhere;  m: 1 on known frames

(C + C + 1 channels), and the model is trained as usual to denoise the whole clip with that input. The new
input channels of the first convolution start at zero, so the model starts as the video model it was
fine-tuned from; the mask tells it which frames are given. One network then does interpolation (known frames
spread out: 4 key frames -> 16), extrapolation (known frames at the start) and, with no frame known, plain
generation. At sampling, the known frames are given at every step; the output keeps the model's own
rendering of them (the known frames are not pasted back, so an error there shows).
"""

from __future__ import annotations

import torch
from torch import nn

from minivdm.models.inflated_unet import InflatedVideoUNet
from minivdm.models.unet_2d_condition import widen_conv_in
from minivdm.validation import check_video


def key_frame_mask(num_frames: int, known: list[int] | tuple[int, ...], *, device=None) -> torch.Tensor:
    """m (1, 1, T, 1, 1): 1 on the known frames."""
    if not known or any(not 0 <= index < num_frames for index in known) or len(set(known)) != len(known):
        raise ValueError(f"known frames must be distinct indices in [0, {num_frames}), got {list(known)}")
    mask = torch.zeros(1, 1, num_frames, 1, 1, device=device)
    mask[:, :, list(known)] = 1.0
    return mask


def spread_key_frames(num_key_frames: int, num_frames: int) -> list[int]:
    """Key frame positions evenly spread over the clip, first and last included: 4 of 16 -> [0, 5, 10, 15]."""
    if num_key_frames < 2 or (num_frames - 1) % (num_key_frames - 1):
        raise ValueError(f"{num_key_frames} key frames cannot be spread evenly over {num_frames} frames "
                         f"(need (frames - 1) divisible by (key frames - 1))")
    step = (num_frames - 1) // (num_key_frames - 1)
    return list(range(0, num_frames, step))


def condition_input(z_t: torch.Tensor, known_video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[z_t ; x * m ; m]: (B, 2C + 1, T, H, W)."""
    check_video(z_t, "z_t")
    check_video(known_video, "known_video")
    if known_video.shape != z_t.shape:
        raise ValueError(f"known_video must have z_t's shape {tuple(z_t.shape)}, got {tuple(known_video.shape)}")
    mask = mask.to(z_t.dtype).expand(z_t.shape[0], 1, *z_t.shape[2:])
    return torch.cat([z_t, known_video * mask, mask], dim=1)


def widen_for_interpolation(unet: InflatedVideoUNet) -> InflatedVideoUNet:
    """A copy of ``unet`` whose conv_in takes [z_t ; x * m ; m] (2C + 1 channels): the new input channels'
    weights zero, so the copy computes what ``unet`` does until it is trained."""
    if not isinstance(unet, InflatedVideoUNet):
        raise TypeError(f"widen_for_interpolation takes an inflated video U-Net, got {type(unet).__name__}")
    options = {"merge_factor": unet.merge_factor} if hasattr(unet, "merge_factor") else {}
    return widen_conv_in(unet, unet.config.in_channels + 1, **options)


class FrameInterpolator(nn.Module):
    """``model(z_t, t, text, known_video, mask)``: the widened video U-Net's prediction for the whole clip.
    ``t`` continuous in [0, 1] (fed as t * 1000, the toy models' convention)."""

    def __init__(self, unet: InflatedVideoUNet, text_encoder: nn.Module | None = None):
        super().__init__()
        if unet.config.in_channels != 2 * unet.config.out_channels + 1:
            raise ValueError(f"the interpolation U-Net takes [z_t ; x * m ; m]: in_channels must be 2 * out_channels "
                             f"+ 1 = {2 * unet.config.out_channels + 1}, got {unet.config.in_channels} "
                             f"(widen it with widen_for_interpolation)")
        self.unet, self.text_encoder = unet, text_encoder

    def forward(self, z_t, t, input_ids_or_text, known_video, mask):
        text = input_ids_or_text if self.text_encoder is None else self.text_encoder(input_ids_or_text)[0]
        return self.unet(condition_input(z_t, known_video, mask), t * 1000, text)


@torch.no_grad()
def interpolate(model: FrameInterpolator, key_frames: torch.Tensor, known: list[int], num_frames: int, text, null_text,
                schedule, *, num_steps: int = 30, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                prediction_type: str = "v") -> torch.Tensor:
    """The clip (B, C, num_frames, H, W) whose frames ``known`` are ``key_frames`` (B, C, K, H, W), the rest
    generated; classifier-free guidance on the text when ``guidance_scale`` != 1."""
    from minivdm.diffusion import guided_model, sample

    check_video(key_frames, "key_frames")
    if key_frames.shape[2] != len(known):
        raise ValueError(f"key_frames has {key_frames.shape[2]} frames for {len(known)} known positions {list(known)}")
    mask = key_frame_mask(num_frames, known, device=key_frames.device)
    batch, channels, _, height, width = key_frames.shape
    known_video = key_frames.new_zeros(batch, channels, num_frames, height, width)
    known_video[:, :, list(known)] = key_frames

    def conditioned(z_t, t, text_condition):  # guidance runs both branches in one batch of 2B
        repeats = z_t.shape[0] // batch
        return model(z_t, t, text_condition, known_video.repeat(repeats, 1, 1, 1, 1), mask)

    if guidance_scale == 1.0:
        model_fn = lambda z_t, t: conditioned(z_t, t, text)  # noqa: E731
    else:
        model_fn = guided_model(conditioned, text, null_text, guidance_scale)
    z_1 = torch.randn(known_video.shape, generator=generator, dtype=key_frames.dtype).to(key_frames.device)
    return sample(model_fn, z_1, schedule, schedule.uniform_times(num_steps), prediction_type=prediction_type,
                  progress=False)


def blend_key_frames(key_frames: torch.Tensor, known: list[int], num_frames: int) -> torch.Tensor:
    """The baseline: each missing frame a linear blend of the two key frames around it, by distance in time."""
    check_video(key_frames, "key_frames")
    known = list(known)
    if sorted(known) != known or known[0] != 0 or known[-1] != num_frames - 1:
        raise ValueError(f"blending needs increasing key frames from 0 to {num_frames - 1}, got {known}")
    frames = []
    for index in range(num_frames):
        right = next(k for k, position in enumerate(known) if position >= index)
        if known[right] == index:
            frames.append(key_frames[:, :, right])
            continue
        left = right - 1
        weight = (index - known[left]) / (known[right] - known[left])
        frames.append((1 - weight) * key_frames[:, :, left] + weight * key_frames[:, :, right])
    return torch.stack(frames, dim=2)
