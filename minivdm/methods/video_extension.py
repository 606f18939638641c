r"""Extending a video in time, one window at a time: memory set by the window, not the video's length.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458),
Sec. 3.1. A model trained on clips of ``window`` frames makes longer videos autoregressively: the
last ``overlap`` frames generated so far are the known x^a of a new window x = [x^a, x^b], and
the window's other ``window - overlap`` frames x^b are sampled conditioned on them, with
reconstruction guidance (``minivdm.diffusion.reconstruction_guidance``):

    x_tilde^b(z_t) = x_hat^b(z_t) - (w_r alpha_t / 2) grad_{z_t^b} || x^a - x_hat^a(z_t) ||_2^2

or with the replacement baseline (z_t^a ~ q(z_t^a | x^a), x^b's estimate x_hat^b(z_t) as is; this
is w_r = 0). Then x^b is appended and the window slides by ``window - overlap`` frames:

    video = first_clip                                        (B, C, T0, H, W)
    while T < total_frames:
        x^a = video[:, :, T - overlap : T]
        x   = sample z_1 (B, C, window, H, W) -> x_0 with DDIM, conditioned on x^a
        video = [video, x[:, :, overlap:]]                    (cut to total_frames at the end)

Why this bounds memory: the network only ever sees z_t of shape (B, C, window, H, W). Its
activations (and, for reconstruction guidance, the backward pass through it) scale with the window,
whatever the final length; only the output video itself, one small tensor of pixels, grows with
``total_frames``. Sampling all frames in one window would instead cost activations (and temporal
attention, quadratic in T) for every frame at once. The price: frames further apart than the window
never see each other, so long-range consistency rests on the ``overlap`` frames alone.

``model_fn(z_t, t)`` is any model over (B, C, window, H, W) clips that treats batch items
independently (the guidance sums its error over the batch). A text-conditioned model with
classifier-free guidance is wrapped as in ``minivdm.toy.vdm.sample_toy_videos``::

    model_fn = guided_model(model, input_ids, null_ids, guidance_scale)   # minivdm.diffusion
    video = extend_video(model_fn, first_clip, 32, TOY_VDM_SCHEDULE, window=8, overlap=4, w_r=2.0, num_steps=30)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tqdm.auto import tqdm

from minivdm.diffusion.parameterization import check_prediction_type
from minivdm.diffusion.reconstruction_guidance import reconstruction_guided_extension_model, replacement_model
from minivdm.diffusion.samplers import sample
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import VIDEO_LAYOUT, check_positive_int, check_video

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

EXTENSION_METHODS = ("reconstruction", "replacement")


def _check_extension_inputs(first_clip, total_frames, window, overlap, method, w_r) -> None:
    check_video(first_clip, "first_clip")
    check_positive_int(window, "window")
    check_positive_int(overlap, "overlap")
    check_positive_int(total_frames, "total_frames")
    if not window > overlap:
        raise ValueError(f"need window > overlap > 0 (each window adds window - overlap new frames), "
                         f"got window={window}, overlap={overlap}")
    first_frames = first_clip.shape[2]
    if first_frames < overlap:
        raise ValueError(f"first_clip {VIDEO_LAYOUT} needs T >= overlap = {overlap} known frames for the first "
                         f"window, got shape {tuple(first_clip.shape)}")
    if total_frames < first_frames:
        raise ValueError(f"total_frames must be >= the T = {first_frames} frames of first_clip {VIDEO_LAYOUT}, "
                         f"got total_frames={total_frames}")
    if method not in EXTENSION_METHODS:
        raise ValueError(f"method must be one of {EXTENSION_METHODS}, got {method!r}")
    if method == "reconstruction":
        if w_r is None:
            raise ValueError("method='reconstruction' needs the guidance weight w_r >= 0 (the paper finds w_r > 1 "
                             "better; w_r = 0 is replacement)")
        if isinstance(w_r, bool) or not isinstance(w_r, (int, float)):
            raise TypeError(f"w_r must be a number >= 0, got {type(w_r).__name__}")
        if not w_r >= 0:
            raise ValueError(f"w_r must be >= 0 (0 is replacement), got {w_r}")
    if method == "replacement" and w_r not in (None, 0):
        raise ValueError(f"method='replacement' has no guidance weight, got w_r={w_r!r}: "
                         f"use method='reconstruction' for w_r > 0")


def extend_video(model_fn: ModelFn, first_clip: torch.Tensor, total_frames: int, schedule: NoiseSchedule, *,
                 window: int, overlap: int, method: str = "reconstruction", w_r: float | None = None,
                 num_steps: int, prediction_type: str = "v", generator: torch.Generator | None = None,
                 progress: bool = False) -> torch.Tensor:
    """first_clip (B, C, T0, H, W) -> video (B, C, total_frames, H, W) whose first T0 frames are first_clip.

    Each window of ``window`` frames takes the last ``overlap`` frames so far as known frames x^a
    and samples the rest with ``num_steps`` deterministic DDIM steps (``schedule.uniform_times``),
    guided by ``method``: "reconstruction" (weight ``w_r``, required) or "replacement". The
    window's noise z_1 and the replacement noise come from ``generator``, which must live on
    first_clip's device. The last window is sampled whole, at the length the model knows, and cut.
    """
    _check_extension_inputs(first_clip, total_frames, window, overlap, method, w_r)
    check_positive_int(num_steps, "num_steps")
    check_prediction_type(prediction_type)
    batch, channels, first_frames, height, width = first_clip.shape
    new_per_window = window - overlap
    num_windows = math.ceil((total_frames - first_frames) / new_per_window)

    # only this pixel buffer grows with total_frames; the network sees one window at a time
    video = first_clip.new_empty(batch, channels, total_frames, height, width)
    video[:, :, :first_frames] = first_clip
    produced = first_frames
    times = schedule.uniform_times(num_steps)
    for _ in tqdm(range(num_windows), desc=f"extend ({method})", disable=not progress):
        x_a = video[:, :, produced - overlap:produced]
        if method == "reconstruction":
            window_model = reconstruction_guided_extension_model(model_fn, schedule, x_a, w_r,
                                                                 prediction_type=prediction_type, generator=generator)
        else:
            window_model = replacement_model(model_fn, schedule, x_a, prediction_type=prediction_type,
                                             generator=generator)
        z_1 = torch.randn(batch, channels, window, height, width, generator=generator, dtype=first_clip.dtype,
                          device=first_clip.device)
        x = sample(window_model, z_1, schedule, times, sampler="ddim", prediction_type=prediction_type, progress=False)
        new_frames = min(new_per_window, total_frames - produced)
        video[:, :, produced:produced + new_frames] = x[:, :, overlap:overlap + new_frames]
        produced += new_frames
    return video
