r"""What the denoiser predicts: noise eps, clean data x, or velocity v - and exact conversions.

Progressive Distillation for Fast Sampling of Diffusion Models (Salimans & Ho, 2022,
arXiv:2202.00512), Appendix D. With z_t = alpha_t x + sigma_t eps and phi_t = arctan(sigma_t/alpha_t),
so that z_phi = cos(phi) x + sin(phi) eps, the velocity is the rate of change of z along the circle:

    v_phi = d z_phi / d phi = cos(phi) eps - sin(phi) x = alpha_t eps - sigma_t x

and any one of (eps, x, v) together with z_t gives the other two:

    x   = (z_t - sigma_t eps) / alpha_t          eps = (z_t - alpha_t x) / sigma_t
    x   = alpha_t z_t - sigma_t v                eps = sigma_t z_t + alpha_t v

Predicting eps and dividing by alpha_t (near 0 at high noise) amplifies the model's error: this
is the colour shift v-prediction avoids in video models (Ho et al., Imagen Video, 2022).

``alpha`` and ``sigma`` broadcast against the data: pass them as numbers, 0-d tensors, or shaped
(B, 1, 1, 1[, 1]) (``forward_process.alpha_sigma_for`` makes that shape). A (B,) tensor is refused:
against (B, C, T, H, W) it would line up with W, not with the batch. The two data tensors must have
the same shape, a floating dtype, and alpha (sigma) must not be 0 where the formula divides by it.
"""

from __future__ import annotations

import torch

from minivdm.validation import check_per_item, check_same_shape, check_tensor

PREDICTION_TYPES = ("eps", "x0", "v")


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return prediction_type


def check_conversion_inputs(a, b, alpha, sigma, name_a: str, name_b: str) -> None:
    """Two float tensors of one shape, and alpha, sigma that broadcast per batch item against them."""
    check_tensor(a, name_a, floating=True)
    check_tensor(b, name_b, floating=True)
    check_same_shape(a, b, name_a, name_b)
    check_per_item(alpha, "alpha", a, name_a)
    check_per_item(sigma, "sigma", a, name_a)


def _check_nonzero(value, name: str, formula: str, cure: str) -> None:
    if (value == 0).any() if isinstance(value, torch.Tensor) else value == 0:
        raise ValueError(f"{formula} divides by {name} = 0 (at a time with {name} = 0): {cure}")


def x0_from_eps(z_t, eps, alpha, sigma):
    check_conversion_inputs(z_t, eps, alpha, sigma, "z_t", "eps")
    # zero terminal SNR (Lin et al., 2023) makes alpha_T = 0: z_T is pure noise and eps says nothing about x
    _check_nonzero(alpha, "alpha", "x = (z_t - sigma eps) / alpha",
                   "an eps-prediction model cannot be sampled from pure noise (zero terminal SNR); use a "
                   "v-prediction model (as Lin et al. 2023 do), or times that avoid the last timestep")
    return (z_t - sigma * eps) / alpha


def eps_from_x0(z_t, x0, alpha, sigma):
    check_conversion_inputs(z_t, x0, alpha, sigma, "z_t", "x0")
    _check_nonzero(sigma, "sigma", "eps = (z_t - alpha x) / sigma",
                   "at t = 0 z_t is the data itself and holds no noise to recover; evaluate at t > 0")
    return (z_t - alpha * x0) / sigma


def v_from_x0_eps(x0, eps, alpha, sigma):
    check_conversion_inputs(x0, eps, alpha, sigma, "x0", "eps")
    return alpha * eps - sigma * x0


def x0_from_v(z_t, v, alpha, sigma):
    check_conversion_inputs(z_t, v, alpha, sigma, "z_t", "v")
    return alpha * z_t - sigma * v


def eps_from_v(z_t, v, alpha, sigma):
    check_conversion_inputs(z_t, v, alpha, sigma, "z_t", "v")
    return sigma * z_t + alpha * v


def predictions_to_x0_eps(prediction, z_t, alpha, sigma, prediction_type: str):
    """Turn a model output of any parameterization into the pair (x0_hat, eps_hat)."""
    check_prediction_type(prediction_type)
    if prediction_type == "eps":
        return x0_from_eps(z_t, prediction, alpha, sigma), prediction
    if prediction_type == "x0":
        return prediction, eps_from_x0(z_t, prediction, alpha, sigma)
    return x0_from_v(z_t, prediction, alpha, sigma), eps_from_v(z_t, prediction, alpha, sigma)


def training_target(x0, eps, alpha, sigma, prediction_type: str):
    """What the network is regressed onto: eps, x0, or v = alpha eps - sigma x0."""
    check_prediction_type(prediction_type)
    check_conversion_inputs(x0, eps, alpha, sigma, "x0", "eps")
    if prediction_type == "eps":
        return eps
    if prediction_type == "x0":
        return x0
    return v_from_x0_eps(x0, eps, alpha, sigma)
