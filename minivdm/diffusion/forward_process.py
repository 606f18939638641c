r"""The forward (noising) process q(z_t | x) = N(alpha_t x, sigma_t^2 I).

    z_t = alpha_t x + sigma_t eps,    eps ~ N(0, I)

Works for images (B, C, H, W) and videos (B, C, T, H, W): one time per batch item, the same noise
level for every frame, as in VDM (Ho, Salimans et al., 2022, arXiv:2204.03458). Per-item values
(B,) are reshaped to (B, 1, 1, 1[, 1]) on purpose (``broadcast_per_item``): left as (B,) they would
broadcast along the last axis, W. x, noise and t must be finite (a NaN time reads the schedule nowhere).
"""

from __future__ import annotations

import torch

from minivdm.diffusion.schedules import NoiseSchedule
from minivdm.validation import check_finite, check_image_or_video, check_same_shape, check_tensor


def broadcast_per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) per-item scalars -> (B, 1, 1, 1[, 1]) so they multiply a (B, C, [T,] H, W) batch."""
    check_tensor(like, "like", floating=True)
    check_tensor(values, "values", ndim=1, layout=f"(B,) = ({like.shape[0]},)", floating=True)
    if values.shape[0] != like.shape[0]:
        raise ValueError(f"values must have one entry per batch item: got {values.shape[0]}, the batch has {like.shape[0]}")
    return values.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def alpha_sigma_for(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor):
    """alpha_t, sigma_t for per-item times t (B,), shaped to broadcast against ``like``."""
    check_tensor(like, "x", floating=True)
    check_tensor(t, "t", ndim=1, layout=f"(B,) = ({like.shape[0]},), one time per batch item", floating=True)
    check_finite(t, "t")
    if t.shape[0] != like.shape[0]:
        raise ValueError(f"t must have one time per batch item: t has {t.shape[0]}, the batch has {like.shape[0]}")
    alpha, sigma = schedule.alpha_sigma(t)
    return broadcast_per_item(alpha, like).to(like.device), broadcast_per_item(sigma, like).to(like.device)


def add_noise(x: torch.Tensor, t: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample z_t ~ q(z_t | x). Returns (z_t, eps) so the caller can build any training target."""
    check_image_or_video(x, "x")
    check_finite(x, "x")
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    check_tensor(noise, "noise", floating=True)
    check_same_shape(x, noise, "x", "noise")
    check_finite(noise, "noise")
    alpha, sigma = alpha_sigma_for(schedule, t, x)
    return alpha * x + sigma * noise, noise
