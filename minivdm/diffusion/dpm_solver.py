r"""DPM-Solver++(2M) SDE: the sampler CogVideoX 5B ships (diffusers' ``CogVideoXDPMScheduler``).

DPM-Solver++ (Lu, Zhou, Bao, Chen, Li, Zhu, 2022, arXiv:2211.01095) integrates the diffusion ODE or SDE in the
half log-SNR lambda_t = log(alpha_t / sigma_t), where the data prediction x_hat enters linearly. One step from t to
s < t, with h = lambda_s - lambda_t > 0 and fresh noise xi ~ N(0, I) (the SDE form, Sec. 5 / Appendix):

    z_s = (sigma_s / sigma_t) e^{-h} z_t + alpha_s (1 - e^{-2h}) D + sigma_s sqrt(1 - e^{-2h}) xi

With D = x_hat_t this first-order step is exactly DDPM's ancestral step (the posterior q(z_s | z_t, x = x_hat_t)).
The multistep second order ("2M") reuses the previous model evaluation, at time u > t, instead of a new one:

    r = (lambda_t - lambda_u) / h,     D = (1 + 1/(2r)) x_hat_t - (1/(2r)) x_hat_u

CogVideoX's scheduler takes the first-order step on the first step (no x_hat_u yet) and on the last one (onto clean
data, where lambda_s = +inf), and draws the first-order step's noise on every step before it decides, so a
second-order step draws twice and uses the second draw: ``sample_dpm_solver_2m_sde`` draws the same, so one seed
gives diffusers' video.
"""

from __future__ import annotations

from typing import Callable

import torch
from tqdm.auto import tqdm

from minivdm.diffusion.parameterization import check_prediction_type, predictions_to_x0_eps
from minivdm.diffusion.samplers import ModelFn, _check_eps_is_defined, _check_prediction, _check_times
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import check_finite, check_image_or_video


def half_log_snr(alpha: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """lambda = log(alpha / sigma): -inf at pure noise (alpha = 0), +inf on clean data (sigma = 0)."""
    return torch.log(alpha) - torch.log(sigma)


def dpm_solver_2m_sde_step(z_t, x_hat, alpha_t, sigma_t, alpha_s, sigma_s, noise, *, x_hat_previous=None,
                           lambda_previous=None) -> torch.Tensor:
    """One step t -> s; second order when the previous evaluation (x_hat_previous at lambda_previous) is given.

    The scalars are 0-d float64 tensors (the step's coefficients are formed in float64, as diffusers does)."""
    lambda_t, lambda_s = half_log_snr(alpha_t, sigma_t), half_log_snr(alpha_s, sigma_s)
    h = lambda_s - lambda_t
    decay = (sigma_s / sigma_t) * torch.exp(-h)  # 0 when z_t is pure noise (h = inf)
    kept = -torch.expm1(-2 * h)                   # 1 - e^{-2h}
    D = x_hat
    if x_hat_previous is not None:
        r = (lambda_t - lambda_previous) / h        # inf after a pure-noise step: D = x_hat_t
        D = (1 + 1 / (2 * r)) * x_hat - (1 / (2 * r)) * x_hat_previous
    return (decay * z_t + (alpha_s * kept) * D + (sigma_s * kept.sqrt()) * noise).to(z_t.dtype)


def sample_dpm_solver_2m_sde(model_fn: ModelFn, z_start: torch.Tensor, schedule: NoiseSchedule, times: torch.Tensor,
                             step_ends: torch.Tensor, draw_noise: Callable[[], torch.Tensor], *,
                             prediction_type: str = "v", progress: bool = True) -> torch.Tensor:
    """Run DPM-Solver++(2M) SDE from z_start at times[0] to times[-1].

    ``times`` and ``step_ends`` are a DDIM grid (``NoiseSchedule.ddim_times``): step i evaluates the model at times[i]
    and lands on step_ends[i]; its second order reuses the evaluation at times[i - 1], as diffusers' scheduler does.
    ``draw_noise()`` returns a fresh standard normal tensor shaped like z (so a caller can draw it in its own layout).
    """
    check_image_or_video(z_start, "z_start")
    check_finite(z_start, "z_start")
    times = _check_times(times, step_ends)
    check_prediction_type(prediction_type)
    _check_eps_is_defined(schedule, times[:-1], prediction_type)

    def scalars(t):
        alpha, sigma = schedule.alpha_sigma(t.to(torch.float64))
        return alpha.to(torch.float64), sigma.to(torch.float64)

    z, batch = z_start, z_start.shape[0]
    x_hat_previous = lambda_previous = None
    steps = list(zip(times[:-1], step_ends))
    for index, (t, s) in enumerate(tqdm(steps, desc="dpm-solver++(2m) sde", disable=not progress)):
        with torch.no_grad():
            prediction = model_fn(z, t.to(z.dtype).expand(batch).to(z.device))
        _check_prediction(prediction, z, t, index, len(steps))
        (alpha_t, sigma_t), (alpha_s, sigma_s) = scalars(t), scalars(s)
        x_hat, _ = predictions_to_x0_eps(prediction, z, alpha_t.to(z), sigma_t.to(z), prediction_type)
        noise = draw_noise()
        second_order = x_hat_previous is not None and index < len(steps) - 1
        if second_order:
            noise = draw_noise()
        z = dpm_solver_2m_sde_step(z, x_hat, alpha_t, sigma_t, alpha_s, sigma_s, noise,
                                   x_hat_previous=x_hat_previous if second_order else None,
                                   lambda_previous=lambda_previous)
        x_hat_previous, lambda_previous = x_hat, half_log_snr(alpha_t, sigma_t)
    return z
