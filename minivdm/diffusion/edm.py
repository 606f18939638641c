r"""EDM: the preconditioned denoiser, Karras et al.'s sigma schedule and the Euler sampler Stable Video Diffusion uses.

Elucidating the Design Space of Diffusion-Based Generative Models (Karras, Aittala, Aila, Laine, 2022,
arXiv:2206.00364). Data x (standard deviation sigma_data) is noised in the variance-exploding form

    y = x + sigma n,    n ~ N(0, I)

and a network F is wrapped into a denoiser D(y; sigma) ~ E[x | y] by four sigma-dependent scalars (Eq. 7, Table 1):

    D(y; sigma) = c_skip(sigma) y + c_out(sigma) F(c_in(sigma) y; c_noise(sigma))

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4

c_in gives F an input of unit variance; F's training target (x - c_skip y) / c_out (Eq. 8) has unit variance too,
and c_skip is the choice that makes c_out, the factor F's errors are amplified by, as small as it can be (App. B.6).

Stable Video Diffusion (Blattmann et al., 2023, arXiv:2311.15127) trains in this framework with sigma_data = 1 but
predicts Salimans & Ho's velocity: in the variance-preserving latent z = c_in y = alpha x + s n, with
alpha = 1 / sqrt(sigma^2 + 1) and s = sigma / sqrt(sigma^2 + 1), the velocity v = alpha n - s x gives
x = alpha z - s v, that is

    c_skip = 1 / (sigma^2 + 1),   c_out = -sigma / sqrt(sigma^2 + 1),   c_in = 1 / sqrt(sigma^2 + 1),
    c_noise = ln(sigma) / 4

the EDM scalars with c_out's sign flipped: the network's output is v = -F (``parameterization="v"``). These are the
numbers diffusers' ``EulerDiscreteScheduler`` uses in SVD's configuration: ``scale_model_input`` divides by
sqrt(sigma^2 + 1) (c_in), the model's timestep is 0.25 ln sigma, and ``step``'s v_prediction branch forms
x_hat = -sigma / sqrt(sigma^2 + 1) v + y / (sigma^2 + 1).

Sampling integrates the probability-flow ODE dy / dsigma = (y - D(y; sigma)) / sigma (Eq. 1 with sigma(t) = t) over
the schedule of Eq. 5, which spends its steps near small sigma (rho = 7):

    sigma_i = (sigma_max^{1/rho} + i / (N - 1) (sigma_min^{1/rho} - sigma_max^{1/rho}))^rho,  i < N;   sigma_N = 0

with Euler steps (Algorithm 1 without its second-order correction, and no churn):

    y_{i+1} = y_i + (sigma_{i+1} - sigma_i) (y_i - D(y_i; sigma_i)) / sigma_i

A model is any ``model_fn(c_in y, c_noise) -> F`` with c_noise a (B,) tensor, the way SVD's U-Net takes its input
and its continuous timestep.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from minivdm.diffusion.samplers import ModelFn
from minivdm.validation import check_finite, check_image_or_video, check_per_item, check_positive_int

PARAMETERIZATIONS = ("edm", "v")

# Stable Video Diffusion's sampler (its scheduler_config.json for diffusers, and Stability's own sampling options)
SVD_SIGMA_MIN = 0.002
SVD_SIGMA_MAX = 700.0
SVD_NUM_STEPS = 25
KARRAS_RHO = 7.0


class EDMPreconditioning(NamedTuple):
    """The four scalars of D(y; sigma) = c_skip y + c_out F(c_in y; c_noise), each shaped like sigma."""
    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def _check_positive_number(value, name: str, why: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number > 0, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0{why}, got {value}")
    return float(value)


def _check_parameterization(parameterization: str) -> str:
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS} ('edm': F is Karras et al.'s "
                         f"target, 'v': F is the velocity, -1 times it, as in SVD), got {parameterization!r}")
    return parameterization


def edm_preconditioning(sigma, sigma_data: float = 0.5, *, parameterization: str = "edm") -> EDMPreconditioning:
    """c_skip, c_out, c_in, c_noise at noise level ``sigma`` (a number or a tensor of sigmas, all > 0).

    ``sigma_data`` is the data's standard deviation (0.5 in the paper's image experiments, 1 for SVD's latents).
    ``parameterization="v"`` flips c_out's sign (SVD's v-prediction; see the module docstring)."""
    sigma_data = _check_positive_number(sigma_data, "sigma_data")
    _check_parameterization(parameterization)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)):
        raise TypeError(f"sigma must be a number or a tensor of noise levels, got {type(sigma).__name__}")
    sigma = torch.as_tensor(sigma, dtype=None if isinstance(sigma, torch.Tensor) else torch.float64)
    if not sigma.is_floating_point():
        raise TypeError(f"sigma must have a floating dtype, got {sigma.dtype}")
    check_finite(sigma, "sigma")
    if torch.any(sigma <= 0):
        # c_noise = ln(sigma) / 4 is -inf at sigma = 0: a sampler never evaluates the model on clean data
        raise ValueError(f"sigma must be > 0 (c_noise = ln(sigma) / 4), got {sigma[sigma <= 0].flatten()[0].item()}")
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    if parameterization == "v":
        c_out = -c_out
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return EDMPreconditioning(c_skip, c_out, c_in, c_noise)


def edm_denoiser(model_fn: ModelFn, x: torch.Tensor, sigma, *, sigma_data: float = 0.5,
                 parameterization: str = "edm") -> torch.Tensor:
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), with F = ``model_fn``.

    ``x`` is a noisy batch (B, C, H, W) or (B, C, T, H, W) in the variance-exploding form x = data + sigma n.
    ``sigma`` is a number > 0, a 0-d tensor, or one sigma per item shaped (B, 1, ..., 1); the model receives
    c_noise as a (B,) tensor."""
    check_image_or_video(x, "x")
    check_finite(x, "x")
    check_per_item(sigma, "sigma", x, "x")
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma, sigma_data, parameterization=parameterization)
    batch = x.shape[0]
    F = model_fn(c_in * x, c_noise.reshape(-1).expand(batch))
    if not isinstance(F, torch.Tensor) or F.shape != x.shape:
        shape = tuple(F.shape) if isinstance(F, torch.Tensor) else type(F).__name__
        raise ValueError(f"model_fn must return F shaped like x {tuple(x.shape)}, got {shape}")
    return c_skip * x + c_out * F


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = KARRAS_RHO, *,
                  append_zero: bool = True) -> torch.Tensor:
    """Karras et al.'s Eq. 5: ``num_steps`` sigmas from sigma_max down to sigma_min, evenly spaced in sigma^{1/rho},
    then a final 0 (clean data; diffusers' ``final_sigmas_type="zero"``) unless ``append_zero`` is False.

    Returns a float64 tensor of num_steps + 1 (or num_steps) entries. One step gives [sigma_max, 0]."""
    check_positive_int(num_steps, "num_steps")
    sigma_min = _check_positive_number(sigma_min, "sigma_min")
    sigma_max = _check_positive_number(sigma_max, "sigma_max")
    rho = _check_positive_number(rho, "rho")
    if sigma_max <= sigma_min:
        raise ValueError(f"sigma_max must be > sigma_min, got sigma_max = {sigma_max} and sigma_min = {sigma_min}")
    ramp = torch.linspace(0, 1, num_steps, dtype=torch.float64)
    max_root, min_root = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_root + ramp * (min_root - max_root)) ** rho
    if append_zero:
        sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
    return sigmas


def sample_euler_edm(model_fn: ModelFn, noise: torch.Tensor, *, num_steps: int = SVD_NUM_STEPS,
                     sigma_min: float = SVD_SIGMA_MIN, sigma_max: float = SVD_SIGMA_MAX, rho: float = KARRAS_RHO,
                     sigma_data: float = 1.0, parameterization: str = "v", init_noise_sigma: float | None = None,
                     progress: bool = True, trajectory: list | None = None) -> torch.Tensor:
    """Deterministic Euler sampling of the EDM ODE from ``noise`` (standard normal) to data, over ``karras_sigmas``.

    The defaults are Stable Video Diffusion's: 25 steps, sigma_min = 0.002, sigma_max = 700, rho = 7, sigma_data = 1
    and v-prediction, i.e. diffusers' ``EulerDiscreteScheduler`` with use_karras_sigmas=True,
    timestep_type="continuous", prediction_type="v_prediction", final_sigmas_type="zero", stepped with s_churn = 0.
    (In that configuration the scheduler's betas, timestep spacing, steps_offset and interpolation_type only
    build a sigma table that the explicit sigma_min and sigma_max replace.)

    The start is y_0 = init_noise_sigma * noise. ``None`` gives diffusers' ``init_noise_sigma`` for SVD's
    timestep_spacing="leading", sqrt(sigma_max^2 + 1), the standard deviation of x + sigma_max n for unit-variance
    data (Stability's own sampler starts there too); EDM's Algorithm 1 (and diffusers with "linspace" or
    "trailing") starts at ``sigma_max``.

    Each step runs in float32 at least (as diffusers' ``step`` upcasts); the result has ``noise``'s dtype.
    If ``trajectory`` is a list, y after every step is appended to it.
    """
    check_image_or_video(noise, "noise")
    check_finite(noise, "noise")
    sigma_data = _check_positive_number(sigma_data, "sigma_data")
    _check_parameterization(parameterization)
    sigmas = karras_sigmas(num_steps, sigma_min, sigma_max, rho)
    if init_noise_sigma is None:
        init_noise_sigma = math.sqrt(sigma_max**2 + 1)
    init_noise_sigma = _check_positive_number(init_noise_sigma, "init_noise_sigma")

    work_dtype = torch.promote_types(noise.dtype, torch.float32)
    # the sigmas are rounded to the working precision once, so every formula below sees the same sigma_i
    sigmas = sigmas.to(dtype=work_dtype, device=noise.device)
    y = noise.to(work_dtype) * init_noise_sigma
    steps = list(zip(sigmas[:-1], sigmas[1:]))
    for index, (sigma, sigma_next) in enumerate(tqdm(steps, desc="euler (edm)", disable=not progress)):
        with torch.no_grad():
            D = edm_denoiser(model_fn, y, sigma, sigma_data=sigma_data, parameterization=parameterization)
        # a NaN here (fp16 overflow, a diverged model) would otherwise come out as a NaN video
        check_finite(D, f"the denoised estimate D at sigma = {float(sigma):.4g} (step {index + 1} of {len(steps)})")
        derivative = (y - D) / sigma
        y = y + (sigma_next - sigma) * derivative
        if trajectory is not None:
            trajectory.append(y.to(noise.dtype))
    return y.to(noise.dtype)

