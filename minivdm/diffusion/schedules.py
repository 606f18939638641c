r"""Noise schedules: how much signal and how much noise a diffusion latent holds at time t.

Variational Diffusion Models (Kingma, Salimans, Poole, Ho, 2021, arXiv:2107.00630) and
Progressive Distillation (Salimans & Ho, 2022, arXiv:2202.00512) write the forward process as

    z_t = alpha_t x + sigma_t eps,        eps ~ N(0, I),        alpha_t^2 + sigma_t^2 = 1

with continuous t in [0, 1]. A schedule is fully described by alpha_bar_t = alpha_t^2 (DDPM's
"cumulative alpha"); everything else follows from it:

    log-SNR  lambda_t = log(alpha_t^2 / sigma_t^2)
    angle    phi_t    = arctan(sigma_t / alpha_t),   so  alpha_t = cos(phi_t), sigma_t = sin(phi_t)

Two schedules share this interface:

* ``CosineSchedule`` - continuous; the angle grows linearly in t, phi_t = a t + b, between the angles
  of a maximum and a minimum log-SNR (lambda = -2 log tan(a t + b), as in VDM and Imagen Video).
* ``ScaledLinearSchedule`` - Stable Diffusion's discrete "scaled_linear" betas over 1000 integer
  timesteps, exactly as diffusers computes them, so published checkpoints see the alphas they were
  trained with.

Integer timesteps k = 0..N-1 (what published checkpoints take) and continuous t meet at
t = (k + 1) / N; t = 0 is clean data.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from minivdm.validation import check_positive_int


def _as_time_tensor(t) -> torch.Tensor:
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        t = torch.tensor(float(t))
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a float or a tensor of times in [0, 1], got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(
            f"t must be continuous time in [0, 1] (a floating tensor), got dtype {t.dtype}; "
            "for integer timesteps use schedule.t_from_timestep(k)"
        )
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"t must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


class NoiseSchedule(ABC):
    """alpha_bar_t for continuous t in [0, 1]; alpha, sigma, log-SNR and angle derive from it."""

    def __init__(self, num_train_timesteps: int = 1000):
        self.num_train_timesteps = check_positive_int(num_train_timesteps, "num_train_timesteps")

    @abstractmethod
    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t^2 at continuous times t (already validated)."""

    def alpha_bar(self, t) -> torch.Tensor:
        return self._alpha_bar(_as_time_tensor(t))

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_t, sigma_t) with alpha_t^2 + sigma_t^2 = 1."""
        alpha_bar = self.alpha_bar(t)
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    def log_snr(self, t) -> torch.Tensor:
        """lambda_t = log(alpha_t^2 / sigma_t^2); +inf at t = 0 for schedules that start clean."""
        alpha_bar = self.alpha_bar(t)
        return torch.log(alpha_bar) - torch.log1p(-alpha_bar)

    def phi(self, t) -> torch.Tensor:
        """The angle phi_t = arctan(sigma_t / alpha_t) in [0, pi/2]."""
        alpha, sigma = self.alpha_sigma(t)
        return torch.atan2(sigma, alpha)

    # --- integer timesteps, as published checkpoints and diffusers use them -------------------
    def t_from_timestep(self, timestep) -> torch.Tensor:
        timestep = torch.as_tensor(timestep)
        if timestep.is_floating_point():
            raise TypeError(f"timestep must be integer (0..{self.num_train_timesteps - 1}), got dtype {timestep.dtype}")
        if timestep.numel() and (timestep.min() < -1 or timestep.max() >= self.num_train_timesteps):
            raise ValueError(f"timestep must be in [-1, {self.num_train_timesteps - 1}], got {timestep.tolist()}")
        return (timestep.to(torch.float64) + 1) / self.num_train_timesteps

    def timestep_from_t(self, t) -> torch.Tensor:
        t = _as_time_tensor(t)
        return torch.round(t.to(torch.float64) * self.num_train_timesteps - 1).long()

    def inference_timesteps(self, num_steps: int, steps_offset: int = 0) -> torch.Tensor:
        """Integer timesteps for a sampler, high to low, with diffusers' "leading" spacing.

        For 50 steps over 1000: 980, 960, ..., 20, 0 (+ steps_offset; Stable Diffusion uses 1).
        """
        check_positive_int(num_steps, "num_steps")
        if num_steps > self.num_train_timesteps:
            raise ValueError(f"num_steps must be <= num_train_timesteps ({self.num_train_timesteps}), got {num_steps}")
        step_ratio = self.num_train_timesteps // num_steps
        return (torch.arange(num_steps) * step_ratio).flip(0) + steps_offset

    def uniform_times(self, num_steps: int) -> torch.Tensor:
        """Times 1 = t_0 > t_1 > ... > t_n = 0 for a from-scratch sampler: n steps need n + 1 times."""
        check_positive_int(num_steps, "num_steps")
        return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)

    def leading_times(self, num_steps: int, steps_offset: int = 0, set_alpha_to_one: bool = True) -> torch.Tensor:
        """The continuous times of ``inference_timesteps``, then the final time the last step lands on.

        As in diffusers' DDIMScheduler: the last step goes to clean data (t = 0) when
        ``set_alpha_to_one``, otherwise to timestep 0 (t = 1/N), as Stable Diffusion's config asks.
        """
        times = self.t_from_timestep(self.inference_timesteps(num_steps, steps_offset))
        final = 0.0 if set_alpha_to_one else 1.0 / self.num_train_timesteps
        return torch.cat([times, torch.tensor([final], dtype=times.dtype)])


class CosineSchedule(NoiseSchedule):
    """phi_t = a t + b between log-SNR lambda_max (t = 0) and lambda_min (t = 1).

    lambda_t = -2 log tan(phi_t): with the defaults (+20, -20) z_0 is almost clean and z_1 almost
    pure noise, but alpha_1 is not exactly 0, so x = (z - sigma eps) / alpha stays finite.
    """

    def __init__(self, logsnr_max: float = 20.0, logsnr_min: float = -20.0, num_train_timesteps: int = 1000):
        super().__init__(num_train_timesteps)
        if not logsnr_max > logsnr_min:
            raise ValueError(f"logsnr_max must be > logsnr_min, got {logsnr_max} and {logsnr_min}")
        self.logsnr_max, self.logsnr_min = float(logsnr_max), float(logsnr_min)
        self.phi_min = math.atan(math.exp(-0.5 * self.logsnr_max))  # b
        self.phi_max = math.atan(math.exp(-0.5 * self.logsnr_min))  # a + b

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        phi = self.phi_min + (self.phi_max - self.phi_min) * t
        return torch.cos(phi) ** 2

    def phi(self, t) -> torch.Tensor:
        t = _as_time_tensor(t)
        return self.phi_min + (self.phi_max - self.phi_min) * t

    # straight from the angle: going through alpha_bar = cos^2 would round sigma_t to 0 near t = 0
    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.phi(t)
        return torch.cos(phi), torch.sin(phi)

    def log_snr(self, t) -> torch.Tensor:
        return -2 * torch.log(torch.tan(self.phi(t)))

    def __repr__(self) -> str:
        return f"CosineSchedule(logsnr_max={self.logsnr_max}, logsnr_min={self.logsnr_min})"


class ScaledLinearSchedule(NoiseSchedule):
    """Stable Diffusion's schedule: beta_k = (linspace(sqrt(beta_start), sqrt(beta_end), N)_k)^2.

    alpha_bar_k = prod_{i<=k} (1 - beta_i). Between grid points alpha_bar is interpolated linearly in
    k, with alpha_bar = 1 at k = -1 (t = 0).
    """

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.012, num_train_timesteps: int = 1000):
        super().__init__(num_train_timesteps)
        if not 0 < beta_start < beta_end < 1:
            raise ValueError(f"need 0 < beta_start < beta_end < 1, got {beta_start} and {beta_end}")
        self.beta_start, self.beta_end = beta_start, beta_end
        # float32 and this exact order of operations, as in diffusers, so that the alphas match bit for bit
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)

    def _alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        grid = torch.cat([torch.ones(1), self.alphas_cumprod])  # index 0 is k = -1
        position = t.to(torch.float64) * self.num_train_timesteps  # k + 1
        # snap t = (k+1)/N back onto the grid so integer timesteps read the table exactly
        position = torch.where((position - position.round()).abs() < 1e-6, position.round(), position)
        low = position.floor().long().clamp(max=self.num_train_timesteps)
        high = (low + 1).clamp(max=self.num_train_timesteps)
        weight = (position - low).to(torch.float32)
        return (grid[low] * (1 - weight) + grid[high] * weight).to(t.dtype)

    def __repr__(self) -> str:
        return f"ScaledLinearSchedule(beta_start={self.beta_start}, beta_end={self.beta_end}, N={self.num_train_timesteps})"
