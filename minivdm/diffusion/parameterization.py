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

``alpha`` and ``sigma`` broadcast against the data: pass them shaped (B, 1, 1, 1[, 1]) or as scalars.
"""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("eps", "x0", "v")


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    return prediction_type


def x0_from_eps(z_t, eps, alpha, sigma):
    return (z_t - sigma * eps) / alpha


def eps_from_x0(z_t, x0, alpha, sigma):
    return (z_t - alpha * x0) / sigma


def v_from_x0_eps(x0, eps, alpha, sigma):
    return alpha * eps - sigma * x0


def x0_from_v(z_t, v, alpha, sigma):
    return alpha * z_t - sigma * v


def eps_from_v(z_t, v, alpha, sigma):
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
    if prediction_type == "eps":
        return eps
    if prediction_type == "x0":
        return x0
    return v_from_x0_eps(x0, eps, alpha, sigma)
