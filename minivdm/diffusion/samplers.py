r"""Samplers: DDPM (ancestral), DDIM (deterministic or with eta noise) and DDIM inversion.

Each step goes from time t to an earlier time s < t. In the alpha/sigma form (DDIM, Song et al.,
2020, arXiv:2010.02502), with x_hat and eps_hat read off the model's prediction:

    z_s = alpha_s x_hat + sqrt(sigma_s^2 - sigma_eta^2) eps_hat + sigma_eta xi,
    sigma_eta^2 = eta^2 (sigma_s^2 / sigma_t^2) (1 - alpha_t^2 / alpha_s^2)

eta = 0 is deterministic DDIM; eta = 1 matches DDPM's posterior variance. In the angular form
(Salimans & Ho, 2022) a deterministic DDIM step is a rotation by phi_t - phi_s along the circle:

    z_{phi_s} = cos(phi_t - phi_s) z_{phi_t} - sin(phi_t - phi_s) v_hat

DDPM's ancestral step samples the posterior q(z_s | z_t, x = x_hat) (Kingma et al., 2021):

    alpha_{t|s} = alpha_t / alpha_s,   sigma_{t|s}^2 = sigma_t^2 - alpha_{t|s}^2 sigma_s^2
    mean = (alpha_s sigma_{t|s}^2 / sigma_t^2) x_hat + (alpha_{t|s} sigma_s^2 / sigma_t^2) z_t
    var  = sigma_{t|s}^2 sigma_s^2 / sigma_t^2

DDIM inversion runs the deterministic update the other way (s -> t), encoding data into noise.

A model is any ``model_fn(z_t, t) -> prediction`` with t a (B,) tensor of continuous times; a
model that wants integer timesteps wraps itself with ``schedule.timestep_from_t``.

The step functions take alpha, sigma (phi) as numbers, 0-d tensors or (B, 1, 1, 1[, 1]) tensors,
never (B,) (see ``parameterization``). ``sample`` and ``ddim_invert`` refuse non-finite inputs and
times, and stop at the first step whose model prediction holds a NaN or inf, naming the step.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from minivdm.diffusion.parameterization import (
    check_prediction_type,
    eps_from_x0,
    predictions_to_x0_eps,
    v_from_x0_eps,
)
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import (
    check_finite,
    check_image_or_video,
    check_in_range,
    check_per_item,
    check_same_shape,
    check_tensor,
)

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def denoised_estimates(prediction, z_t, alpha_t, sigma_t, prediction_type: str, clip_x0: bool = False):
    """(x_hat, eps_hat) from a prediction; with ``clip_x0`` x_hat is clamped to the data range [-1, 1]
    and eps_hat recomputed to agree with it (as guided-diffusion's DDIM does)."""
    x_hat, eps_hat = predictions_to_x0_eps(prediction, z_t, alpha_t, sigma_t, prediction_type)
    if clip_x0:
        x_hat = x_hat.clamp(-1, 1)
        eps_hat = eps_from_x0(z_t, x_hat, alpha_t, sigma_t)
    return x_hat, eps_hat


def ddim_step(z_t, prediction, alpha_t, sigma_t, alpha_s, sigma_s, prediction_type: str = "v",
              eta: float = 0.0, noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One DDIM step t -> s in the alpha/sigma form (eta > 0 needs ``noise``)."""
    x_hat, eps_hat = denoised_estimates(prediction, z_t, alpha_t, sigma_t, prediction_type, clip_x0)
    _check_target_and_noise(z_t, alpha_s, sigma_s, noise)
    check_in_range(eta, "eta", 0.0, 1.0)
    sigma_eta_sq = eta**2 * (sigma_s**2 / sigma_t**2) * (1 - alpha_t**2 / alpha_s**2)
    z_s = alpha_s * x_hat + (sigma_s**2 - sigma_eta_sq).clamp(min=0).sqrt() * eps_hat
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise shaped like z_t")
        z_s = z_s + sigma_eta_sq.sqrt() * noise
    return z_s


def ddim_step_angular(z_t, v_hat, phi_t, phi_s) -> torch.Tensor:
    """One deterministic DDIM step as a rotation: z_s = cos(phi_t - phi_s) z_t - sin(phi_t - phi_s) v_hat."""
    check_tensor(z_t, "z_t", floating=True)
    check_tensor(v_hat, "v_hat", floating=True)
    check_same_shape(z_t, v_hat, "z_t", "v_hat")
    check_per_item(phi_t, "phi_t", z_t, "z_t")
    check_per_item(phi_s, "phi_s", z_t, "z_t")
    delta = phi_t - phi_s
    return torch.cos(delta) * z_t - torch.sin(delta) * v_hat


def ddpm_step(z_t, prediction, alpha_t, sigma_t, alpha_s, sigma_s, prediction_type: str = "eps",
              noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step: a sample of q(z_s | z_t, x = x_hat). No noise is added when s is clean."""
    x_hat, _ = denoised_estimates(prediction, z_t, alpha_t, sigma_t, prediction_type, clip_x0)
    _check_target_and_noise(z_t, alpha_s, sigma_s, noise)
    alpha_ts = alpha_t / alpha_s
    sigma_ts_sq = sigma_t**2 - alpha_ts**2 * sigma_s**2
    mean = (alpha_s * sigma_ts_sq / sigma_t**2) * x_hat + (alpha_ts * sigma_s**2 / sigma_t**2) * z_t
    variance = (sigma_ts_sq * sigma_s**2 / sigma_t**2).clamp(min=1e-20)
    if noise is None or torch.all(sigma_s == 0):
        return mean
    return mean + variance.sqrt() * noise


def _check_target_and_noise(z_t, alpha_s, sigma_s, noise) -> None:
    check_per_item(alpha_s, "alpha_s", z_t, "z_t")
    check_per_item(sigma_s, "sigma_s", z_t, "z_t")
    if noise is not None:
        check_tensor(noise, "noise", floating=True)
        check_same_shape(z_t, noise, "z_t", "noise")


def _check_times(times, step_ends=None) -> torch.Tensor:
    check_tensor(times, "times", ndim=1, layout="(n_steps + 1,)", floating=True)
    check_finite(times, "times")
    if step_ends is None:
        if times.numel() < 2 or not torch.all(times[1:] < times[:-1]):
            raise ValueError(f"times must be strictly decreasing with at least 2 entries (t_0 > ... > t_n), got {times.tolist()}")
        return times
    # the model's times t_0 > ... > t_{n-1}; step i lands on step_ends[i] <= t_i, the last on t_n
    n = times.numel() - 1
    check_tensor(step_ends, "step_ends", ndim=1, layout=f"(n_steps,) = ({n},)", floating=True)
    check_finite(step_ends, "step_ends")
    if n < 1 or step_ends.numel() != n:
        raise ValueError(f"step_ends must have one entry per step: {n} steps (len(times) - 1), got {step_ends.numel()}")
    if not torch.all(times[1:-1] < times[:-2]) or not torch.all(step_ends <= times[:-1].to(step_ends)):
        raise ValueError(f"times[:-1] must be strictly decreasing and each step_ends[i] <= times[i], got times "
                         f"{times.tolist()} and step_ends {step_ends.tolist()}")
    if step_ends[-1] != times[-1]:
        raise ValueError(f"the last step must land on times[-1] = {times[-1].item()}, got step_ends[-1] = {step_ends[-1].item()}")
    return times


def _check_eps_is_defined(schedule: NoiseSchedule, model_times: torch.Tensor, prediction_type: str) -> None:
    """Refuse before the first model call what x = (z - sigma eps) / alpha would turn into NaN at alpha = 0."""
    alpha, _ = schedule.alpha_sigma(model_times)
    if prediction_type == "eps" and torch.any(alpha == 0):
        t = model_times[alpha == 0][0].item()
        raise ValueError(f"prediction_type='eps' at t = {t:.4g}, where alpha_t = 0 (zero terminal SNR, Lin et al. 2023): "
                         "x = (z_t - sigma_t eps) / alpha_t is undefined there, as pure noise says nothing about x. "
                         "Sample such a schedule with a v-prediction model, or start below the last timestep "
                         "(e.g. timestep_spacing='leading')")


def _check_prediction(prediction, z, t, index: int, steps: int) -> None:
    if not isinstance(prediction, torch.Tensor) or prediction.shape != z.shape:
        shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
        raise ValueError(f"model_fn must return a prediction shaped like z {tuple(z.shape)}, got {shape}")
    # a NaN here (fp16 overflow, a diverged model) would otherwise come out as a black or NaN sample
    check_finite(prediction, f"model_fn's prediction at t = {float(t):.4g} (step {index + 1} of {steps})")


def _scalars(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor):
    alpha, sigma = schedule.alpha_sigma(t)
    return alpha.to(like), sigma.to(like)


def sample(model_fn: ModelFn, z_start: torch.Tensor, schedule: NoiseSchedule, times: torch.Tensor, *,
           sampler: str = "ddim", prediction_type: str = "v", eta: float = 0.0,
           clip_x0: bool = False, generator: torch.Generator | None = None, progress: bool = True,
           trajectory: list | None = None, step_ends: torch.Tensor | None = None,
           step_callback: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Run a sampler from z_start at times[0] down to times[-1] (usually pure noise at 1 to data at 0).

    ``sampler`` is "ddim" (alpha/sigma form, any eta), "ddim_angular" (rotation form, eta = 0) or
    "ddpm". ``clip_x0`` clamps each x_hat to [-1, 1]. If ``trajectory`` is a list, every
    intermediate z is appended to it. Step i goes from times[i] to times[i + 1], or to
    ``step_ends[i]`` when given (diffusers' DDIMScheduler: see ``NoiseSchedule.ddim_times``).
    ``step_callback(i, z)``, when given, returns the z that step i + 1 starts from (a method that edits
    the latents between steps, e.g. Text2Video-Zero's background smoothing).
    """
    check_image_or_video(z_start, "z_start")
    check_finite(z_start, "z_start")
    times = _check_times(times, step_ends)
    ends = times[1:] if step_ends is None else step_ends
    check_prediction_type(prediction_type)
    check_in_range(eta, "eta", 0.0, 1.0)
    if sampler not in ("ddim", "ddim_angular", "ddpm"):
        raise ValueError(f"sampler must be 'ddim', 'ddim_angular' or 'ddpm', got {sampler!r}")
    if sampler == "ddim_angular" and eta != 0:
        raise ValueError("the angular DDIM form is the deterministic sampler: use eta=0 (or sampler='ddim')")
    _check_eps_is_defined(schedule, times[:-1], prediction_type)

    z = z_start
    batch = z.shape[0]
    steps = list(zip(times[:-1], ends))
    for index, (t, s) in enumerate(tqdm(steps, desc=sampler, disable=not progress)):
        t_batch = t.to(z.dtype).expand(batch).to(z.device)
        with torch.no_grad():
            prediction = model_fn(z, t_batch)
        _check_prediction(prediction, z, t, index, len(steps))
        alpha_t, sigma_t = _scalars(schedule, t, z)
        alpha_s, sigma_s = _scalars(schedule, s, z)
        needs_noise = sampler == "ddpm" or eta > 0
        noise = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device) if needs_noise else None
        if sampler == "ddim":
            z = ddim_step(z, prediction, alpha_t, sigma_t, alpha_s, sigma_s, prediction_type, eta, noise, clip_x0)
        elif sampler == "ddim_angular":
            x_hat, eps_hat = denoised_estimates(prediction, z, alpha_t, sigma_t, prediction_type, clip_x0)
            v_hat = v_from_x0_eps(x_hat, eps_hat, alpha_t, sigma_t)
            z = ddim_step_angular(z, v_hat, schedule.phi(t).to(z), schedule.phi(s).to(z))
        else:
            z = ddpm_step(z, prediction, alpha_t, sigma_t, alpha_s, sigma_s, prediction_type, noise, clip_x0)
        if step_callback is not None:
            z = step_callback(index, z)
        if trajectory is not None:
            trajectory.append(z)
    return z


def ddim_invert(model_fn: ModelFn, x: torch.Tensor, schedule: NoiseSchedule, times: torch.Tensor, *,
                prediction_type: str = "v", progress: bool = True) -> torch.Tensor:
    """Deterministic DDIM run backwards: clean x at times[-1] to a latent at times[0].

    Each step predicts (x_hat, eps_hat) at the current, less noisy time s and re-noises to t:
    z_t = alpha_t x_hat + sigma_t eps_hat. Sampling with the same times then reconstructs x, exactly
    in the limit of many steps. The first evaluation is at times[-1]; with an "x0" model that time
    must be > 0 (eps = (z - alpha x) / sigma needs sigma > 0).
    """
    check_image_or_video(x, "x")
    check_finite(x, "x")
    times = _check_times(times)
    check_prediction_type(prediction_type)
    z = x
    batch = z.shape[0]
    ascending = times.flip(0)
    steps = list(zip(ascending[:-1], ascending[1:]))
    for index, (s, t) in enumerate(tqdm(steps, desc="ddim inversion", disable=not progress)):
        with torch.no_grad():
            prediction = model_fn(z, s.to(z.dtype).expand(batch).to(z.device))
        _check_prediction(prediction, z, s, index, len(steps))
        alpha_s, sigma_s = _scalars(schedule, s, z)
        alpha_t, sigma_t = _scalars(schedule, t, z)
        x_hat, eps_hat = predictions_to_x0_eps(prediction, z, alpha_s, sigma_s, prediction_type)
        z = alpha_t * x_hat + sigma_t * eps_hat
    return z
