r"""The denoising training loss for each parameterization.

    t ~ U(0, 1),  eps ~ N(0, I),  z_t = alpha_t x + sigma_t eps
    L = || f_theta(z_t, t) - target ||^2,   target = eps | x | v = alpha_t eps - sigma_t x

All three regress the same posterior mean, but weight the noise levels differently in x-space:
eps-loss = x-loss * alpha^2/sigma^2 (SNR weighting), v-loss = x-loss / sigma^2 (SNR + 1).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from minivdm.diffusion.forward_process import add_noise, alpha_sigma_for
from minivdm.diffusion.parameterization import check_prediction_type, training_target
from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import check_image_or_video, check_same_shape, check_tensor


def diffusion_loss(model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
                   schedule: NoiseSchedule, prediction_type: str = "v", *, t: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean squared error between the model's prediction and the target of ``prediction_type``."""
    check_image_or_video(x, "x")
    check_prediction_type(prediction_type)
    if t is None:
        t = torch.rand(x.shape[0], generator=generator, dtype=torch.float32).to(x.device)
    check_tensor(t, "t", ndim=1, layout=f"(B,) = ({x.shape[0]},), one time per batch item", floating=True)
    z_t, eps = add_noise(x, t, schedule, noise=noise, generator=generator)
    alpha, sigma = alpha_sigma_for(schedule, t, x)
    prediction = model_fn(z_t, t)
    # F.mse_loss would broadcast a (B, 1, ...) prediction against the target with only a warning
    check_tensor(prediction, "model_fn's prediction", floating=True)
    check_same_shape(prediction, x, "model_fn's prediction", "x")
    return F.mse_loss(prediction, training_target(x, eps, alpha, sigma, prediction_type))
