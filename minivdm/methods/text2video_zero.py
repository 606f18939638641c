r"""Text2Video-Zero (Khachatryan, Movsisyan, Tadevosyan, Henschel, Wang, Navasardyan, Shi, 2023,
"Text2Video-Zero: Text-to-Image Diffusion Models are Zero-Shot Video Generators", arXiv:2303.13439).

A text-to-image diffusion model makes a temporally consistent video of m frames with no training, by
two changes to how it samples (survey 002, the Text2Video-Zero section):

**Motion dynamics in the latent codes.** Frame 1's code x_T^1 ~ N(0, I) is denoised by DDIM for
Delta t steps to x_{T'}^1 (T' = T - Delta t). Frame k's code is frame 1's, translated by a global
motion that grows with k, and noised back from T' to T with the DDPM forward process:

    delta^k = lambda (k - 1) delta                       (direction delta, amount lambda, k = 1..m)
    x~_{T'}^k = W_k(x_{T'}^1)                             (W_k: translate by delta^k)
    x_T^k = sqrt(abar_T / abar_{T'}) x~_{T'}^k + sqrt(1 - abar_T / abar_{T'}) eps,   eps ~ N(0, I)

(x_T^1 itself is kept). All m codes are then denoised jointly from T, so the scene starts out moved,
and the model fills in the details.

**Cross-frame attention** (``minivdm.nn.cross_frame_attention``): in the joint denoising every frame's
self-attention takes its keys and values from frame 1, which carries frame 1's appearance to all frames.

**Background smoothing** (optional). With foreground masks M^k (1 on the object), at every step t of the
joint denoising the background of frame k is pulled toward frame 1's background, warped:

    x_t^k <- M^k x_t^k + (1 - M^k) (alpha x^_t^k + (1 - alpha) x_t^k),   x^_t^k = W_k(x_t^1),   alpha = 0.6

The same code runs in pixel space (the toy text-to-image model) and in a VAE's latent space (SD 1.5).

Differences from diffusers' ``TextToVideoZeroPipeline``, each reproducible here for the parity test:
(1) diffusers measures the motion in pixels of a 512 x 512 image and samples half a 512-pixel off, so
its frame k moves by -(s k - 1/2) w / 512 latent pixels for a motion field strength s (positive s moves
content left / up; ``diffusers_frame_shifts``); (2) it re-noises with the product of alpha_t for
t = t0 .. t1 - 1 (one index below q(x_{t1} | x_{t0}), whose ratio abar_{t1} / abar_{t0} we use by default;
``renoise="diffusers"``); (3) its t0 and t1 count steps from the end of the timestep list: our
``start_index`` = n - t1 - 1 and ``delta_t`` = t1 - t0.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.diffusion import sample
from minivdm.diffusion.schedules import DiscreteSchedule, NoiseSchedule
from minivdm.nn.cross_frame_attention import cross_frame_attention

# delta for the named directions, (dx, dy) in pixels: x to the right, y down (image rows)
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
RENOISE = ("exact", "diffusers")


def motion_direction(direction) -> tuple[float, float]:
    """A named direction or two numbers (dx, dy) -> (dx, dy)."""
    if isinstance(direction, str):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)} or two numbers (dx, dy), got {direction!r}")
        return DIRECTIONS[direction]
    try:
        values = [float(value) for value in direction]
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(torch.isfinite(torch.tensor(values))):
        raise ValueError(f"direction must be two finite numbers (dx, dy) or a name {sorted(DIRECTIONS)}, got {direction!r}")
    return values[0], values[1]


def frame_shifts(num_frames: int, direction, strength: float) -> torch.Tensor:
    """delta^k = lambda (k - 1) delta for k = 1..m: (m, 2) shifts (dx, dy) in pixels of the code."""
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"a video needs num_frames >= 2, got {num_frames!r}")
    if not (isinstance(strength, (int, float)) and strength >= 0 and strength < float("inf")):
        raise ValueError(f"the motion amount lambda must be a finite number >= 0, got {strength!r}")
    dx, dy = motion_direction(direction)
    k = torch.arange(1, num_frames + 1, dtype=torch.float64)
    return torch.stack([strength * (k - 1) * dx, strength * (k - 1) * dy], dim=1)


def diffusers_frame_shifts(num_frames: int, strength_x: float, strength_y: float, height: int, width: int,
                           frame_ids: list[int] | None = None) -> torch.Tensor:
    """The shifts diffusers' pipeline applies (its motion_field_strength_x / _y, in 512-pixel units with a
    half-pixel offset) on an h x w code, as (dx, dy) for ``translate``; frame 1's row is unused."""
    ids = torch.tensor(frame_ids if frame_ids is not None else list(range(num_frames)), dtype=torch.float64)
    return torch.stack([-(strength_x * ids - 0.5) * width / 512, -(strength_y * ids - 0.5) * height / 512], dim=1)


def translate(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """W_k: each code x[i] (C, H, W) moved by shifts[i] = (dx, dy) pixels, out[y, x] = in[y - dy, x - dx],
    read at the nearest pixel; past an edge the code is mirrored (reflection), so nothing is blank."""
    if x.ndim != 4:
        raise ValueError(f"codes must be (B, C, H, W), got {tuple(x.shape)}")
    if shifts.shape != (x.shape[0], 2):
        raise ValueError(f"shifts must be (B, 2) = ({x.shape[0]}, 2), one (dx, dy) per code, got {tuple(shifts.shape)}")
    height, width = x.shape[-2:]
    rows = torch.arange(height, dtype=torch.float64).view(1, height, 1)
    cols = torch.arange(width, dtype=torch.float64).view(1, 1, width)
    source_x = (cols - shifts[:, 0].double().view(-1, 1, 1)).expand(-1, height, width)
    source_y = (rows - shifts[:, 1].double().view(-1, 1, 1)).expand(-1, height, width)
    # grid_sample's coordinates (align_corners=False): -1 is the left edge of pixel 0, +1 the right edge of the last
    grid = torch.stack([(2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1], dim=-1)
    grid = grid.expand(x.shape[0], height, width, 2).to(x.dtype).to(x.device)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def renoise(x_t_prime: torch.Tensor, abar_ratio: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
    """The DDPM forward process from T' to T: sqrt(r) x + sqrt(1 - r) eps, with r = abar_T / abar_T'."""
    abar_ratio = torch.as_tensor(abar_ratio, dtype=torch.float64)
    return (abar_ratio.sqrt().to(x_t_prime) * x_t_prime + (1 - abar_ratio).sqrt().to(x_t_prime) * noise)


def smooth_background(z: torch.Tensor, shifts: torch.Tensor, masks: torch.Tensor, alpha: float) -> torch.Tensor:
    """x_t^k <- M^k x_t^k + (1 - M^k)(alpha W_k(x_t^1) + (1 - alpha) x_t^k) for each video's frames.

    z: ((B m), C, H, W) frames of B videos; shifts: (B, m, 2); masks: (B, m, 1, H, W), 1 on the foreground."""
    videos, frames = shifts.shape[:2]
    first = z[::frames].repeat_interleave(frames, dim=0)
    warped_first = translate(first, shifts.reshape(videos * frames, 2))
    masks = masks.reshape(videos * frames, 1, *z.shape[-2:]).to(z)
    return masks * z + (1 - masks) * (alpha * warped_first + (1 - alpha) * z)


def warp_masks(first_masks: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """M^k = W_k(M^1): frame 1's foreground masks (B, 1, H, W), 1 on the objects, moved with the frames by their
    shifts (B, m, 2) -> (B, m, 1, H, W)."""
    if first_masks.ndim != 4 or first_masks.shape[1] != 1:
        raise ValueError(f"first-frame masks must be (B, 1, H, W), got {tuple(first_masks.shape)}")
    if shifts.ndim != 3 or shifts.shape[0] != first_masks.shape[0] or shifts.shape[2] != 2:
        raise ValueError(f"shifts must be (B, m, 2) with B = {first_masks.shape[0]}, got {tuple(shifts.shape)}")
    videos, frames = shifts.shape[:2]
    warped = translate(first_masks.repeat_interleave(frames, dim=0), shifts.reshape(videos * frames, 2))
    return warped.view(videos, frames, 1, *first_masks.shape[-2:])


def _segment(times: torch.Tensor, step_ends: torch.Tensor | None, begin: int, end: int):
    """The times and step ends of steps begin .. end - 1 (a step lands where step_ends says)."""
    if step_ends is None:
        return times[begin:end + 1], None
    return torch.cat([times[begin:end], step_ends[end - 1:end].to(times)]), step_ends[begin:end]


def _per_video(value: torch.Tensor, videos: int, frames: int, name: str, layout: str) -> torch.Tensor:
    """(m, ...) shared by every video, or (B, m, ...) -> (B, m, ...)."""
    if value.ndim >= 1 and value.shape[0] == frames and (value.ndim == len(layout.split(",")) - 1):
        value = value.unsqueeze(0).expand(videos, *value.shape)
    if value.shape[:2] != (videos, frames):
        raise ValueError(f"{name} must be ({layout}) for B = {videos} videos of m = {frames} frames (or without B, "
                         f"shared), got {tuple(value.shape)}")
    return value


def _check_masks(masks: torch.Tensor, videos: int, frames: int, like: torch.Tensor) -> torch.Tensor:
    height, width = like.shape[-2:]
    masks = _per_video(masks, videos, frames, "background masks", "B, m, 1, H, W")
    if masks.shape[2:] != (1, height, width):
        raise ValueError(f"background masks must be (B, m, 1, H, W) with H, W = {height}, {width} (the codes' size), "
                         f"1 on the foreground, got {tuple(masks.shape)}")
    if masks.min() < 0 or masks.max() > 1:
        raise ValueError("background masks must lie in [0, 1] (1 on the foreground)")
    return masks


@torch.no_grad()
def text2video_zero(model_fn: Callable, z_T: torch.Tensor, schedule: NoiseSchedule, times: torch.Tensor, *,
                    num_frames: int, shifts: torch.Tensor | None, delta_t: int, start_index: int = 0,
                    step_ends: torch.Tensor | None = None, attention_model: torch.nn.Module | None = None,
                    prediction_type: str = "eps", renoise_with: str = "exact", background_masks: torch.Tensor | None = None,
                    smoothing_alpha: float = 0.6, generator: torch.Generator | None = None,
                    first_frames: list | None = None, progress: bool = False) -> torch.Tensor:
    """B videos (B, C, m, H, W) of m = ``num_frames`` frames, each from one code of z_T (B, C, H, W).

    ``model_fn(z, t)`` is the image model on a batch of frames ((B m), C, H, W) or of first frames (B, ...),
    with classifier-free guidance inside (``guided_any_batch``). ``times`` (and ``step_ends``) are the
    sampler's grid. Frame 1 is denoised alone for ``start_index`` steps (to x_T^1; 0 starts at times[0],
    as in the paper) and ``delta_t`` more (to x_{T'}^1). ``shifts`` (m, 2) or (B, m, 2) are delta^k
    (``frame_shifts``); None turns the motion dynamics off: frames 2..m then start from their own noise.
    ``attention_model``: the U-Net whose self-attention becomes cross-frame attention in the joint
    denoising (None: off). ``first_frames``, if a list, receives (x_T^1, x_{T'}^1, the codes x_T^{1..m}).
    """
    if z_T.ndim != 4:
        raise ValueError(f"z_T must be (B, C, H, W), one code per video, got {tuple(z_T.shape)}")
    if not isinstance(num_frames, int) or num_frames < 2:
        raise ValueError(f"a video needs num_frames >= 2, got {num_frames!r}")
    videos, frames = z_T.shape[0], num_frames
    steps = times.numel() - 1
    if not isinstance(start_index, int) or not isinstance(delta_t, int) or start_index < 0 or delta_t < 0 \
            or start_index + delta_t > steps - 1:
        raise ValueError(f"need 0 <= start_index and 0 <= delta_t with start_index + delta_t <= {steps - 1} (the "
                         f"sampler has {steps} steps, and T' must come before the last), got start_index={start_index}, "
                         f"delta_t={delta_t}")
    if renoise_with not in RENOISE:
        raise ValueError(f"renoise_with must be one of {RENOISE}, got {renoise_with!r}")
    if shifts is None and start_index > 0:
        raise ValueError(f"without the motion dynamics (shifts=None) frames 2..m start from fresh noise, which is a "
                         f"sample of x_T only at the sampler's first time: give start_index=0, got {start_index}")
    if shifts is not None:
        shifts = _per_video(shifts, videos, frames, "shifts", "B, m, 2")
        if shifts.shape[2:] != (2,):
            raise ValueError(f"shifts must be (B, m, 2): delta^k = (dx, dy) for each frame, got {tuple(shifts.shape)}")
    if background_masks is not None:
        if shifts is None:
            raise ValueError("background smoothing warps frame 1's background: it needs the motion dynamics (shifts)")
        background_masks = _check_masks(background_masks, videos, frames, z_T)
    if not 0 <= smoothing_alpha <= 1:
        raise ValueError(f"smoothing_alpha must lie in [0, 1], got {smoothing_alpha}")

    def run(z, begin, end, callback=None):
        if end == begin:
            return z
        segment_times, segment_ends = _segment(times, step_ends, begin, end)
        return sample(model_fn, z, schedule, segment_times, step_ends=segment_ends, prediction_type=prediction_type,
                      progress=progress, step_callback=callback)

    warp_index = start_index + delta_t
    x_T1 = run(z_T, 0, start_index)                         # frame 1 at T (the joint denoising's start)
    x_Tprime1 = run(x_T1, start_index, warp_index) if shifts is not None else None  # ... and at T' = T - delta_t
    if shifts is not None:
        warped = translate(x_Tprime1.repeat_interleave(frames - 1, dim=0), shifts[:, 1:].reshape(-1, 2))
        noise = torch.randn(warped.shape, generator=generator, dtype=warped.dtype).to(warped.device)
        t_start = times[start_index]
        t_prime = (times[warp_index] if step_ends is None or warp_index == 0 else step_ends[warp_index - 1]).to(times)
        if renoise_with == "exact":
            ratio = schedule.alpha_bar(t_start.double()) / schedule.alpha_bar(t_prime.double())
        else:
            if not isinstance(schedule, DiscreteSchedule):
                raise ValueError("renoise_with='diffusers' multiplies a discrete schedule's alphas: it needs a DiscreteSchedule")
            k_prime, k_start = (int(schedule.timestep_from_t(t.double()).round()) for t in (t_prime, t_start))
            ratio = torch.prod((1.0 - schedule.betas)[k_prime:k_start]).double()
        others = renoise(warped, ratio, noise)
    else:
        others = torch.randn((videos * (frames - 1), *z_T.shape[1:]), generator=generator, dtype=z_T.dtype).to(z_T.device)
    codes = rearrange(torch.cat([x_T1[:, None], others.view(videos, frames - 1, *z_T.shape[1:])], dim=1),
                      "b f c h w -> (b f) c h w")
    if first_frames is not None:
        first_frames.extend([x_T1, x_Tprime1, codes])

    callback = None
    if background_masks is not None:
        def callback(index, z):
            return smooth_background(z, shifts, background_masks, smoothing_alpha)
    attention = cross_frame_attention(attention_model, frames) if attention_model is not None \
        else contextlib.nullcontext()
    with attention:
        frames_out = run(codes, start_index, steps, callback)
    return rearrange(frames_out, "(b f) c h w -> b c f h w", f=frames)


def guided_any_batch(model: Callable, condition: torch.Tensor, null_condition: torch.Tensor,
                     guidance_scale: float) -> Callable:
    """``model(z, t, context)`` -> ``model_fn(z, t)`` with classifier-free guidance for B prompts on a batch
    of their frames ((B m), ...) or first frames (B, ...): a batch [unconditional; conditional], each
    prompt's context repeated for its frames."""
    if condition.shape != null_condition.shape:
        raise ValueError(f"condition and null_condition must have one shape, got {tuple(condition.shape)} and "
                         f"{tuple(null_condition.shape)}")

    def model_fn(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        per_prompt = z.shape[0] // condition.shape[0]
        context = torch.cat([null_condition.repeat_interleave(per_prompt, dim=0),
                             condition.repeat_interleave(per_prompt, dim=0)])
        prediction = model(torch.cat([z, z]), torch.cat([t, t]), context)
        unconditional, conditional = prediction.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    return model_fn


@torch.no_grad()
def text2video_zero_latents(unet, text_encoder, tokenizer, settings, prompt: str, *, num_frames: int = 8,
                            shifts: torch.Tensor | None, delta_t: int, start_index: int, cross_frame: bool = True,
                            num_steps: int = 50, guidance_scale: float = 7.5, negative_prompt: str = "",
                            latent_hw: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                            renoise_with: str = "exact", background_masks: torch.Tensor | None = None,
                            progress: bool = False) -> torch.Tensor:
    """Stable Diffusion's latents (1, C, m, h, w) of a Text2Video-Zero video: ``settings`` is the checkpoint's
    ``SamplerSettings`` (minivdm.methods.text_to_image), the U-Net ours."""
    from minivdm.methods.text_to_image import encode_prompts

    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one str (a video per prompt), got {type(prompt).__name__}")
    if guidance_scale <= 1:
        raise ValueError(f"guidance_scale must be > 1 (classifier-free guidance), got {guidance_scale}")
    device, dtype = unet.conv_in.weight.device, unet.conv_in.weight.dtype
    condition = encode_prompts(tokenizer, text_encoder, [prompt]).to(dtype)
    null_condition = encode_prompts(tokenizer, text_encoder, [negative_prompt]).to(dtype)
    h, w = latent_hw or (unet.config.sample_size, unet.config.sample_size)

    def unet_in_continuous_time(z, t, context):
        return unet(z, settings.schedule.timestep_from_t(t.double().cpu()).to(device), context)

    model_fn = guided_any_batch(unet_in_continuous_time, condition, null_condition, guidance_scale)
    z_T = torch.randn((1, unet.config.in_channels, h, w), generator=generator, dtype=dtype).to(device)
    times, step_ends = settings.times_and_step_ends(num_steps)
    return text2video_zero(model_fn, z_T, settings.schedule, times, step_ends=step_ends, num_frames=num_frames,
                           shifts=shifts, delta_t=delta_t, start_index=start_index,
                           attention_model=unet if cross_frame else None, prediction_type=settings.prediction_type,
                           renoise_with=renoise_with, background_masks=background_masks, generator=generator,
                           progress=progress)
