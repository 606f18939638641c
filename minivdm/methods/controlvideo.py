r"""ControlVideo (Zhang, Wei, Jiang, Zhang, Zuo, Tian, 2023, "ControlVideo: Training-free Controllable
Text-to-Video Generation", arXiv:2305.13077).

A text-to-image model with a ControlNet (``minivdm.models.controlnet``) draws each frame where its control
(an edge or depth map c^i of a motion sequence) says. Run frame by frame it flickers: each frame invents its
own appearance. ControlVideo makes the video consistent with no training, by three changes to sampling
(survey 002, the ControlVideo section):

**ControlNet per frame.** Frame i's latent z_t^i gets the residuals of the ControlNet on (z_t^i, t, prompt, c^i).

**Fully cross-frame attention** (``minivdm.nn.cross_frame_attention``, ``keys_from="all"``): every
self-attention layer of the U-Net and of the ControlNet attends over the tokens of all N frames,

    Attn(Q^i, K, V) = softmax(Q^i K^T / sqrt(d)) V,   Q^i = W_Q z^i,  K = W_K [z^1, ..., z^N],  V = W_V [z^1, ..., z^N]

(Text2Video-Zero's first-frame attention, ``keys_from="first"``, is the baseline).

**Interleaved-frame smoother.** At a chosen step t, the clean video is predicted from z_t,
x^_{t->0} = (z_t - sigma_t eps^) / alpha_t; every other frame of it is replaced by the interpolation of its two
neighbours (frames 2, 4, ... at the first chosen step, frames 3, 5, ... at the next, counting from 1, so
each three-frame clip is smoothed once), x~_{t->0}^i = I(x^_{t->0}^{i-1}, x^_{t->0}^{i+1}); the DDIM step then goes on from it with the
predicted noise unchanged:

    z_{t-1} = alpha_{t-1} x~_{t->0} + sigma_{t-1} eps^_theta(z_t)

The paper interpolates RGB frames with a video interpolation network (RIFE); ``interpolate_midpoint`` is our
own, flow based (``minivdm.curation.optical_flow``): the middle frame is each neighbour warped half way along
the flow between them, averaged. ``"linear"`` (the plain average) is there for comparison: it blurs a moving
edge into two half-bright copies. Latent models go to pixels and back around it (``to_pixels`` / ``from_pixels``).

**Hierarchical sampler** (long videos, memory bounded by one clip). The N frames are split into clips of
N_c + 1 frames that share their ends, the key frames 1, N_c + 1, 2 N_c + 1, ... At every step the key frames
are denoised together with fully cross-frame attention (long-range coherence), then each clip's inner frames
with keys and values from the clip's two key frames (``keys_from="ends"``). When there are more key frames than
one clip holds, the key frames are themselves sampled the same way (keys of keys), so no call sees more than
N_c + 1 frames, at any length.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from einops import rearrange
from tqdm.auto import tqdm

from minivdm.diffusion.samplers import denoised_estimates
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.nn.cross_frame_attention import cross_frame_attention

ATTENTION = ("frame", "first", "all")  # per frame (the image model's own); Text2Video-Zero's; ControlVideo's
INTERPOLATION = ("flow", "linear")

# model_fn(z, t, frames): the image model (ControlNet and guidance inside) on the frames ``frames`` (f,) of
# each video, their latents z ((B f), C, H, W) at times t ((B f),) -> its prediction for them
VideoModelFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def interpolate_midpoint(before: torch.Tensor, after: torch.Tensor, method: str = "flow") -> torch.Tensor:
    """The frame half way between ``before`` and ``after`` (N, C, H, W) in [-1, 1].

    "flow": with w the optical flow from before to after (after(x + w(x)) ~ before(x)), content at x in the
    middle frame sits at x - w/2 in ``before`` and at x + w/2 in ``after``: the average of the two warped
    frames. "linear": (before + after) / 2.
    """
    from minivdm.curation.optical_flow import optical_flow, warp

    if method not in INTERPOLATION:
        raise ValueError(f"interpolation must be one of {INTERPOLATION}, got {method!r}")
    if before.shape != after.shape or before.ndim != 4:
        raise ValueError(f"frames to interpolate must be two (N, C, H, W) of one shape, got {tuple(before.shape)} "
                         f"and {tuple(after.shape)}")
    if method == "linear":
        return (before + after) / 2
    channels = before.shape[1]
    flow = optical_flow(before.float().clamp(-1, 1), after.float().clamp(-1, 1)).to(before.dtype)
    half = flow.repeat_interleave(channels, dim=0) / 2  # one flow per channel image

    def warped(frames: torch.Tensor, along: torch.Tensor) -> torch.Tensor:
        return warp(frames.reshape(-1, 1, *frames.shape[-2:]), along)[0].reshape(frames.shape)

    return (warped(before, -half) + warped(after, half)) / 2


def smooth_interleaved(x0: torch.Tensor, parity: int, method: str = "flow") -> torch.Tensor:
    """The interleaved-frame smoother on a predicted clean video x0 (B, C, N, H, W): frames i = parity,
    parity + 2, ... (0-based) that have two neighbours become ``interpolate_midpoint`` of frames i - 1 and i + 1."""
    if x0.ndim != 5:
        raise ValueError(f"the predicted video must be (B, C, N, H, W), got {tuple(x0.shape)}")
    if parity not in (0, 1):
        raise ValueError(f"parity must be 0 (even frames) or 1 (odd frames), got {parity!r}")
    frames = x0.shape[2]
    middle = [i for i in range(parity, frames, 2) if 0 < i < frames - 1]
    if not middle:
        return x0
    before = rearrange(x0[:, :, [i - 1 for i in middle]], "b c f h w -> (b f) c h w")
    after = rearrange(x0[:, :, [i + 1 for i in middle]], "b c f h w -> (b f) c h w")
    smoothed = x0.clone()
    smoothed[:, :, middle] = rearrange(interpolate_midpoint(before, after, method), "(b f) c h w -> b c f h w",
                                       b=x0.shape[0])
    return smoothed


def key_frames(num_frames: int, clip_length: int) -> list[int]:
    """0-based indices of the key frames: every ``clip_length``-th frame, and the last."""
    keys = list(range(0, num_frames, clip_length))
    return keys if keys[-1] == num_frames - 1 else keys + [num_frames - 1]


def predict_video(model_fn: VideoModelFn, z: torch.Tensor, t: torch.Tensor, *, attention: str,
                  attention_model: torch.nn.Module | None, clip_length: int | None) -> torch.Tensor:
    """The model's prediction for every frame of z (B, C, N, H, W) at time t (scalar): all frames in one call
    (``clip_length`` None), or hierarchically, no call holding more than ``clip_length`` (>= 2) + 1 frames."""
    if clip_length is not None and clip_length < 2:
        raise ValueError(f"clip_length must be >= 2 (with 1 every frame is a key frame), got {clip_length}")
    videos, frames = z.shape[0], z.shape[2]

    def run(indices: list[int], keys_from: str | None) -> torch.Tensor:
        chunk = rearrange(z[:, :, indices], "b c f h w -> (b f) c h w")
        mode = cross_frame_attention(attention_model, len(indices), keys_from) \
            if keys_from is not None and attention_model is not None else contextlib.nullcontext()
        with mode:
            out = model_fn(chunk, t.to(z).expand(chunk.shape[0]), torch.tensor(indices))
        return rearrange(out, "(b f) c h w -> b c f h w", b=videos)

    together = None if attention == "frame" else attention
    if clip_length is None:
        return run(list(range(frames)), together)

    prediction = torch.empty_like(z)

    def hierarchical(indices: list[int]) -> None:
        if len(indices) <= clip_length + 1:
            prediction[:, :, indices] = run(indices, together)
            return
        keys = [indices[i] for i in key_frames(len(indices), clip_length)]
        hierarchical(keys)  # key frames first: together, or (too many) keys of keys
        for first, last in zip(keys[:-1], keys[1:]):
            clip = indices[indices.index(first):indices.index(last) + 1]
            if len(clip) > 2:  # the inner frames, attending to their clip's two key frames
                prediction[:, :, clip[1:-1]] = run(clip, "ends" if together is not None else None)[:, :, 1:-1]

    hierarchical(list(range(frames)))
    return prediction


@torch.no_grad()
def controlvideo(model_fn: VideoModelFn, z_T: torch.Tensor, schedule: NoiseSchedule, times: torch.Tensor, *,
                 attention: str = "all", attention_model: torch.nn.Module | None = None,
                 smoother_steps: tuple[int, ...] = (), interpolation: str = "flow", clip_length: int | None = None,
                 step_ends: torch.Tensor | None = None, prediction_type: str = "eps",
                 to_pixels: Callable | None = None, from_pixels: Callable | None = None,
                 progress: bool = False) -> torch.Tensor:
    """Videos (B, C, N, H, W) denoised by DDIM from z_T (B, C, N, H, W) at times[0] (one code per frame).

    ``model_fn(z, t, frames)``: see ``VideoModelFn`` (each frame's control picked by ``frames``).
    ``attention``: "frame" (per-frame ControlNet), "first" (Text2Video-Zero + ControlNet) or "all" (fully
    cross-frame); ``attention_model`` holds the self-attention layers to change (U-Net and ControlNet).
    ``smoother_steps``: indices of the sampler steps where the interleaved-frame smoother runs (the k-th chosen
    step smooths odd frames for even k, even frames for odd k; 1-based frame counting as in the paper: frames
    2, 4, ... first). ``clip_length``: N_c of the hierarchical sampler (None: every frame in one call).
    ``to_pixels`` / ``from_pixels``: the smoother interpolates pixels (a latent model decodes and encodes).
    """
    if z_T.ndim != 5:
        raise ValueError(f"z_T must be (B, C, N, H, W), one code per frame, got {tuple(z_T.shape)}")
    if attention not in ATTENTION:
        raise ValueError(f"attention must be one of {ATTENTION}, got {attention!r}")
    if attention != "frame" and attention_model is None:
        raise ValueError(f"attention={attention!r} changes the self-attention of a model: pass attention_model")
    if interpolation not in INTERPOLATION:
        raise ValueError(f"interpolation must be one of {INTERPOLATION}, got {interpolation!r}")
    steps = times.numel() - 1
    if any(not isinstance(s, int) or not 0 <= s < steps for s in smoother_steps) or \
            len(set(smoother_steps)) != len(smoother_steps):
        raise ValueError(f"smoother_steps must be distinct step indices in [0, {steps - 1}] (the sampler has {steps} "
                         f"steps), got {smoother_steps!r}")
    if clip_length is not None and (isinstance(clip_length, bool) or not isinstance(clip_length, int)
                                    or clip_length < 2):  # 1: every frame a key frame, no clip between two
        raise ValueError(f"clip_length must be an int >= 2 (frames from one key frame to the next) or None, "
                         f"got {clip_length!r}")
    if (to_pixels is None) != (from_pixels is None):
        raise ValueError("give both to_pixels and from_pixels (a latent model's decoder and encoder) or neither")
    ends = times[1:] if step_ends is None else step_ends
    order = sorted(smoother_steps)

    z = z_T
    for index in tqdm(range(steps), desc="controlvideo", disable=not progress):
        t, s = times[index], ends[index]
        prediction = predict_video(model_fn, z, t, attention=attention, attention_model=attention_model,
                                   clip_length=clip_length)
        alpha_t, sigma_t = (value.to(z) for value in schedule.alpha_sigma(t))
        alpha_s, sigma_s = (value.to(z) for value in schedule.alpha_sigma(s))
        x0, eps = denoised_estimates(prediction, z, alpha_t, sigma_t, prediction_type)
        if index in order:
            parity = 1 if order.index(index) % 2 == 0 else 0  # 0-based odd = the paper's even frames 2, 4, ...
            pixels = to_pixels(x0) if to_pixels is not None else x0
            pixels = smooth_interleaved(pixels, parity, interpolation)
            x0 = from_pixels(pixels) if from_pixels is not None else pixels
        z = alpha_s * x0 + sigma_s * eps  # DDIM (eta = 0) from the (smoothed) clean estimate
    return z


@torch.no_grad()
def controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, prompt: str, control: torch.Tensor,
                         *, attention: str = "all", smoother_steps: tuple[int, ...] = (), interpolation: str = "flow",
                         clip_length: int | None = None, conditioning_scale: float = 1.0, num_steps: int = 50,
                         guidance_scale: float = 7.5, negative_prompt: str = "",
                         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Stable Diffusion's latents (1, C, N, h, w) of a ControlVideo video following ``control`` (1, C_c, N, H, W)
    in [0, 1] (one control image per frame, at the output size): our U-Net and ControlNet, diffusers' VAE (which
    takes the smoother's frames to pixels and back), ``settings`` the checkpoint's ``SamplerSettings``."""
    from minivdm.methods.controlnet_sampling import ControlledUNet
    from minivdm.methods.text_to_image import encode_prompts, latent_size

    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one str (a video per prompt), got {type(prompt).__name__}")
    if control.ndim != 5 or control.shape[0] != 1:
        raise ValueError(f"control must be (1, C, N, H, W): one control image per frame, got {tuple(control.shape)}")
    if control.min() < 0 or control.max() > 1:
        raise ValueError("control images must lie in [0, 1] (as diffusers' ControlNet pipelines feed them)")
    if controlnet.config.conditioning_channels != control.shape[1]:
        raise ValueError(f"this ControlNet reads {controlnet.config.conditioning_channels}-channel control images, "
                         f"got {control.shape[1]} channels")
    if not conditioning_scale >= 0:
        raise ValueError(f"conditioning_scale must be >= 0, got {conditioning_scale}")
    if guidance_scale <= 1:
        raise ValueError(f"guidance_scale must be > 1 (classifier-free guidance), got {guidance_scale}")
    device, dtype = unet.conv_in.weight.device, unet.conv_in.weight.dtype
    h, w = latent_size(unet, vae, control.shape[-2], control.shape[-1])
    frames = control.shape[2]
    condition = encode_prompts(tokenizer, text_encoder, [prompt]).to(dtype)
    null_condition = encode_prompts(tokenizer, text_encoder, [negative_prompt]).to(dtype)
    control = control.to(device=device, dtype=dtype)
    ControlledUNet(unet, controlnet, control[:, :, 0], conditioning_scale)  # refuses a ControlNet of another U-Net

    def model_fn(z: torch.Tensor, t: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        per_frame = rearrange(control[:, :, indices.to(device)], "b c f h w -> (b f) c h w")
        controlled = ControlledUNet(unet, controlnet, per_frame, conditioning_scale)
        context = torch.cat([null_condition.repeat_interleave(len(indices), 0),
                             condition.repeat_interleave(len(indices), 0)])
        timesteps = settings.schedule.timestep_from_t(t.double().cpu()).to(device)
        unconditional, conditional = controlled(torch.cat([z, z]), torch.cat([timesteps, timesteps]), context).chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    scale = vae.config.scaling_factor

    def to_pixels(latents: torch.Tensor) -> torch.Tensor:
        flat = rearrange(latents, "b c f h w -> (b f) c h w") / scale
        pixels = torch.cat([vae.decode(chunk.to(vae.dtype)).sample for chunk in flat.split(8)])
        return rearrange(pixels.float().clamp(-1, 1), "(b f) c h w -> b c f h w", f=frames)

    def from_pixels(pixels: torch.Tensor) -> torch.Tensor:
        flat = rearrange(pixels, "b c f h w -> (b f) c h w")
        latents = torch.cat([vae.encode(chunk.to(vae.dtype)).latent_dist.mean for chunk in flat.split(8)]) * scale
        return rearrange(latents.to(dtype), "(b f) c h w -> b c f h w", f=frames)

    z_T = torch.randn((1, unet.config.in_channels, frames, h, w), generator=generator, dtype=dtype).to(device)
    times, step_ends = settings.times_and_step_ends(num_steps)
    return controlvideo(model_fn, z_T, settings.schedule, times, step_ends=step_ends, attention=attention,
                        attention_model=torch.nn.ModuleList([unet, controlnet]), smoother_steps=smoother_steps,
                        interpolation=interpolation, clip_length=clip_length, prediction_type=settings.prediction_type,
                        to_pixels=to_pixels if smoother_steps else None,
                        from_pixels=from_pixels if smoother_steps else None, progress=progress)
