r"""Reconstruction guidance: sampling one video conditioned on another with an unconditional model.

Video Diffusion Models (Ho, Salimans, Gritsenko, Chan, Norouzi, Fleet, 2022, arXiv:2204.03458),
Sec. 3.1. A model trained on whole videos x = [x^a, x^b] denoises z_t = [z_t^a, z_t^b] jointly. To
sample x^b given known x^a (the first frames, for extending a video), the *replacement* method
overwrites z_t^a at every step with a fresh sample of q(z_t^a | x^a) and keeps the model's
x_hat^b(z_t) = E_q[x^b | z_t]. That estimate ignores x^a except through the noisy z_t^a. The
conditional one is

    E_q[x^b | z_t, x^a] = E_q[x^b | z_t] + (sigma_t^2 / alpha_t) grad_{z_t^b} log q(x^a | z_t)

and with q(x^a | z_t) ~= N(x_hat^a(z_t), (sigma_t^2 / alpha_t^2) I) it becomes

    x_tilde^b(z_t) = x_hat^b(z_t) - (w_r alpha_t / 2) grad_{z_t^b} || x^a - x_hat^a(z_t) ||_2^2

where w_r > 1 strengthens the guidance (the paper reports better samples). The sampler then uses
x_tilde^b in place of x_hat^b. For the known frames we keep the replacement (z_t^a ~ q(z_t^a | x^a))
and use x^a itself as their estimate, so the two methods differ only by the guidance term and w_r = 0
is exactly replacement.

The same correction conditions a high-resolution model on a low-resolution video x^a (spatial
super-resolution): x_hat^a(z_t) is the model's high-resolution x_hat(z_t) downsampled, the gradient
flows back through the downsampling, and every pixel is corrected:

    x_tilde(z_t) = x_hat(z_t) - (w_r alpha_t / 2) grad_{z_t} || x^a - down(x_hat(z_t)) ||_2^2

An observation ``observe(x) -> x^a`` says which part of a video is known: ``observe_first_frames`` for
extension, ``observe_downsampled`` for super-resolution. The model wrappers return a ``model_fn``
that ``samplers.sample`` accepts: the corrected estimate re-expressed in the model's own
parameterization (eps, x0 or v). Videos are (B, C, T, H, W); the model must treat batch items
independently (the guidance sums the error over the batch before differentiating).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
from minivdm.diffusion.parameterization import (
    check_prediction_type,
    eps_from_x0,
    predictions_to_x0_eps,
    training_target,
)
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import VIDEO_LAYOUT, check_positive_int, check_tensor, check_video

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Observation = Callable[[torch.Tensor], torch.Tensor]

DOWNSAMPLING_MODES = ("avg", "bilinear")


def observe_first_frames(num_frames: int) -> Observation:
    """x -> x^a = the first ``num_frames`` frames of a (B, C, T, H, W) video (temporal extension)."""
    check_positive_int(num_frames, "num_frames")

    def observe(x: torch.Tensor) -> torch.Tensor:
        check_video(x, "x")
        if x.shape[2] <= num_frames:
            raise ValueError(f"observing the first {num_frames} frames needs a video {VIDEO_LAYOUT} with "
                             f"T > {num_frames} (some frames left to sample), got shape {tuple(x.shape)}")
        return x[:, :, :num_frames]

    return observe


def observe_downsampled(factor: int, mode: str = "avg") -> Observation:
    """x -> x^a = each frame of x downsampled by ``factor`` in H and W (spatial super-resolution).

    ``mode`` "avg" averages factor x factor blocks; "bilinear" is the paper's example. Both are
    differentiable, which is all reconstruction guidance needs.
    """
    check_positive_int(factor, "factor")
    if mode not in DOWNSAMPLING_MODES:
        raise ValueError(f"mode must be one of {DOWNSAMPLING_MODES}, got {mode!r}")

    def observe(x: torch.Tensor) -> torch.Tensor:
        check_video(x, "x")
        height, width = x.shape[-2:]
        if height % factor or width % factor:
            raise ValueError(f"downsampling by {factor} needs H and W of the video {VIDEO_LAYOUT} divisible by "
                             f"{factor}, got shape {tuple(x.shape)}")
        if mode == "avg":
            return F.avg_pool3d(x, kernel_size=(1, factor, factor))
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        small = F.interpolate(frames, size=(height // factor, width // factor), mode="bilinear", align_corners=False)
        return rearrange(small, "(b t) c h w -> b c t h w", b=x.shape[0])

    return observe


def _check_w_r(w_r) -> float:
    if isinstance(w_r, bool) or not isinstance(w_r, (int, float)):
        raise TypeError(f"w_r must be a number >= 0, got {type(w_r).__name__}")
    if not w_r >= 0:
        raise ValueError(f"w_r must be >= 0 (0 switches the guidance off), got {w_r}")
    return float(w_r)


def _check_guidance_inputs(z_t, t, x_a, w_r, observe) -> None:
    check_video(z_t, "z_t")
    check_video(x_a, "x_a")
    check_tensor(t, "t", ndim=1, layout="(B,)", floating=True)
    if x_a.shape[0] != z_t.shape[0] or x_a.shape[1] != z_t.shape[1]:
        raise ValueError(f"x_a {VIDEO_LAYOUT} needs the batch size and channels of z_t, got x_a "
                         f"{tuple(x_a.shape)} and z_t {tuple(z_t.shape)}")
    _check_w_r(w_r)
    if not callable(observe):
        raise TypeError(f"observe must be a function x -> x^a (e.g. observe_first_frames(n)), got {type(observe).__name__}")


def reconstruction_guided_x0(model_fn: ModelFn, z_t: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule,
                             prediction_type: str, observe: Observation, x_a: torch.Tensor,
                             w_r: float) -> torch.Tensor:
    """x_tilde(z_t) = x_hat(z_t) - (w_r alpha_t / 2) grad_{z_t} || x^a - observe(x_hat(z_t)) ||^2.

    Returns x_tilde shaped like z_t. The part of the gradient on z_t^b is the paper's
    grad_{z_t^b}; callers that know x^a exactly (extension) overwrite x_tilde^a with x^a.
    """
    _check_guidance_inputs(z_t, t, x_a, w_r, observe)
    check_prediction_type(prediction_type)
    alpha_t, sigma_t = alpha_sigma_for(schedule, t, z_t)
    # samplers run the model under no_grad; the correction needs d x_hat / d z_t
    with torch.enable_grad():
        z_t = z_t.detach().requires_grad_(True)
        x_hat, _ = predictions_to_x0_eps(model_fn(z_t, t), z_t, alpha_t, sigma_t, prediction_type)
        x_hat_a = observe(x_hat)
        if x_hat_a.shape != x_a.shape:
            raise ValueError(f"observe(x_hat) gives {tuple(x_hat_a.shape)} but x_a is {tuple(x_a.shape)}: "
                             f"x_a must be the observed part of a {VIDEO_LAYOUT} video shaped like z_t {tuple(z_t.shape)}")
        # one sum over the batch: items are independent, so its gradient is each item's own gradient
        reconstruction_error = (x_a - x_hat_a).pow(2).sum()
        (grad,) = torch.autograd.grad(reconstruction_error, z_t)
    return x_hat.detach() - (w_r * alpha_t / 2) * grad


def _prediction_from_x0(x0: torch.Tensor, z_t: torch.Tensor, alpha_t, sigma_t, prediction_type: str) -> torch.Tensor:
    """The prediction (eps, x0 or v) a sampler turns back into exactly this x0 at this z_t."""
    return training_target(x0, eps_from_x0(z_t, x0, alpha_t, sigma_t), alpha_t, sigma_t, prediction_type)


def _replace_known_frames(z_t, t, schedule, x_a, generator) -> torch.Tensor:
    """[z_t^a, z_t^b] -> [fresh sample of q(z_t^a | x^a), z_t^b]."""
    z_t_a, _ = add_noise(x_a, t, schedule, generator=generator)
    return torch.cat([z_t_a, z_t[:, :, x_a.shape[2]:]], dim=2)


def _check_known_frames(z_t: torch.Tensor, x_a: torch.Tensor) -> None:
    check_video(z_t, "z_t")
    check_video(x_a, "x_a")
    batch, channels, frames, height, width = z_t.shape
    if (x_a.shape[0], x_a.shape[1], x_a.shape[3], x_a.shape[4]) != (batch, channels, height, width) or x_a.shape[2] >= frames:
        raise ValueError(f"x_a must be the first frames of the video, (B, C, T_a, H, W) = ({batch}, {channels}, "
                         f"T_a < {frames}, {height}, {width}) for z_t {tuple(z_t.shape)}, got {tuple(x_a.shape)}")


def replacement_model(model_fn: ModelFn, schedule: NoiseSchedule, x_a: torch.Tensor, *, prediction_type: str,
                      generator: torch.Generator | None = None) -> ModelFn:
    """The replacement method: sample frames x^b after known first frames x^a.

    At each call z_t^a is replaced by a fresh alpha_t x^a + sigma_t eps; x_hat^b comes from the model
    as is and the known frames' estimate is x^a.
    """
    check_video(x_a, "x_a")
    check_prediction_type(prediction_type)

    def model_fn_replaced(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_known_frames(z_t, x_a)
        alpha_t, sigma_t = alpha_sigma_for(schedule, t, z_t)
        z_t_replaced = _replace_known_frames(z_t, t, schedule, x_a, generator)
        x_hat, _ = predictions_to_x0_eps(model_fn(z_t_replaced, t), z_t_replaced, alpha_t, sigma_t, prediction_type)
        x_hat = torch.cat([x_a, x_hat[:, :, x_a.shape[2]:]], dim=2)
        # in terms of the sampler's own z_t, so its update lands on alpha_s x_hat + sigma_s eps_hat
        return _prediction_from_x0(x_hat, z_t, alpha_t, sigma_t, prediction_type)

    return model_fn_replaced


def reconstruction_guided_extension_model(model_fn: ModelFn, schedule: NoiseSchedule, x_a: torch.Tensor, w_r: float, *,
                                          prediction_type: str, generator: torch.Generator | None = None) -> ModelFn:
    """Reconstruction guidance for temporal extension: sample x^b after known first frames x^a.

    As ``replacement_model`` (z_t^a ~ q(z_t^a | x^a), estimate x^a for the known frames), but x^b's
    estimate is x_tilde^b = x_hat^b - (w_r alpha_t / 2) grad_{z_t^b} || x^a - x_hat^a(z_t) ||^2.
    """
    check_video(x_a, "x_a")
    check_prediction_type(prediction_type)
    _check_w_r(w_r)
    observe = observe_first_frames(x_a.shape[2])

    def model_fn_guided(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        _check_known_frames(z_t, x_a)
        alpha_t, sigma_t = alpha_sigma_for(schedule, t, z_t)
        z_t_replaced = _replace_known_frames(z_t, t, schedule, x_a, generator)
        x_tilde = reconstruction_guided_x0(model_fn, z_t_replaced, t, schedule, prediction_type, observe, x_a, w_r)
        x_tilde = torch.cat([x_a, x_tilde[:, :, x_a.shape[2]:]], dim=2)
        return _prediction_from_x0(x_tilde, z_t, alpha_t, sigma_t, prediction_type)

    return model_fn_guided


def reconstruction_guided_model(model_fn: ModelFn, schedule: NoiseSchedule, observe: Observation,
                                x_a: torch.Tensor, w_r: float, *, prediction_type: str) -> ModelFn:
    """Reconstruction guidance on the whole video: x_tilde(z_t) replaces x_hat(z_t) everywhere.

    For observations that are not a slice of z_t, e.g. super-resolution with
    ``observe_downsampled(factor)`` and a low-resolution x^a.
    """
    check_video(x_a, "x_a")
    check_prediction_type(prediction_type)
    _check_w_r(w_r)
    if not callable(observe):
        raise TypeError(f"observe must be a function x -> x^a (e.g. observe_downsampled(2)), got {type(observe).__name__}")

    def model_fn_guided(z_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_tilde = reconstruction_guided_x0(model_fn, z_t, t, schedule, prediction_type, observe, x_a, w_r)
        alpha_t, sigma_t = alpha_sigma_for(schedule, t, z_t)
        return _prediction_from_x0(x_tilde, z_t, alpha_t, sigma_t, prediction_type)

    return model_fn_guided
